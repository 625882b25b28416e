#!/usr/bin/env python3
"""Batch-1 latency of a saved boltc model: ``model.predict`` on one row, dense and LSH-sparse.

The row is the first data row of --data, as a 1 x N_FEATURES float32 scipy CSR matrix. Each mode
gets 3 warm-up calls, then --calls timed calls of ``model.predict(row, top_k=5, sparse=...)``; the
median is reported. The same is also timed with the row pre-converted to a ``boltc.data.Dataset``
(``*_prepared``): that leaves out the per-call conversion and checks of the scipy input, like the
PyTorch peer's latency, which starts from ready tensors. The last stdout line is one JSON object.

Usage (from the repository root)::

    python bench/amazon/boltc_latency.py --model bench/results/amazon/boltc_model.boltm \
        --data bench/data/amazon/test.txt [--calls 50]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

TOP_K = 5
WARMUP = 3


def first_row(path: Path):
    """(feature ids, values, n_features) of the first data row of an XC text file."""
    with open(path, "r", encoding="ascii") as fh:
        header = fh.readline().split()
        line = fh.readline().rstrip("\n")
    if len(header) != 3 or not line:
        raise SystemExit(f"{path}: expected a 'N_ROWS N_FEATURES N_LABELS' header and at least one row")
    head, _, rest = line.partition(" ")
    if ":" in head:                       # no labels on this row
        rest = line
    pairs = [tok.split(":") for tok in rest.split()]
    ids = np.array([int(f) for f, _ in pairs], dtype=np.int32)
    values = np.array([float(v) for _, v in pairs], dtype=np.float32)
    return ids, values, int(header[1])


def median_ms(call, calls: int) -> float:
    for _ in range(WARMUP):
        call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000.0 * float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="batch-1 predict latency of a saved boltc model")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="XC text file; its first row is used")
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args(argv)
    if args.calls < 1:
        parser.error("--calls must be >= 1")

    import scipy.sparse as sp

    import boltc
    from boltc.data import from_arrays

    ids, values, n_features = first_row(args.data)
    row = sp.csr_matrix((values, ids, np.array([0, ids.size])), shape=(1, n_features), dtype=np.float32)
    started = time.perf_counter()
    model = boltc.load_model(str(args.model))
    load_seconds = time.perf_counter() - started
    prepared = from_arrays(row, n_features=n_features, n_labels=model.plan.target_dim)

    result: dict = {"calls": args.calls, "top_k": TOP_K, "row_nnz": int(ids.size), "load_seconds": load_seconds}
    for mode, sparse in (("dense", False), ("sparse", True)):
        try:
            result[f"latency_ms_batch1_{mode}"] = median_ms(
                lambda: model.predict(row, top_k=TOP_K, sparse=sparse), args.calls)
            result[f"latency_ms_batch1_{mode}_prepared"] = median_ms(
                lambda: model.predict(prepared, top_k=TOP_K, sparse=sparse), args.calls)
        except Exception as exc:  # noqa: BLE001  (recorded, the other mode still runs)
            result[f"error_{mode}"] = f"{type(exc).__name__}: {exc}"
            print(f"boltc_latency: {mode}: {result[f'error_{mode}']}", file=sys.stderr)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(result), flush=True)
    return 0 if "latency_ms_batch1_dense" in result or "latency_ms_batch1_sparse" in result else 1


if __name__ == "__main__":
    sys.exit(main())
