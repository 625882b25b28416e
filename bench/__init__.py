"""boltc's benchmark harness and its peers: ``python -m bench WORKLOAD`` (see bench/README.md)."""
