"""How much the hashing of a spec's LSH-sparse output layer finds as training goes on, measured the way the tuner
judges it (``boltc.tune``): after each epoch, the share of held-out rows' labels, and of their best-scoring
neurons, outside the heavy rows that the LSH candidates hold, beside the share as many neurons drawn at random from
the rest of the layer would hold (chance). The tuner can only afford to look early in training; this shows whether
what it sees then holds later.

    python bench/roofline/hash_lift.py SPEC TRAIN TEST [--epochs 10] [--rows 1024] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP_NEURONS = 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/roofline/hash_lift.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("train")
    parser.add_argument("test", help="held-out rows, labelled: the first --rows of them are judged")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, str(HERE.parent.parent))  # this checkout's boltc
    import numpy as np

    import boltc
    from boltc.abi import buffer_name
    from boltc.data import take_rows
    from boltc.tune import _hashing_recall

    model = boltc.load(args.spec, tune=False)  # the formula's values: what the tuner compares against
    model.threads = args.threads
    train = model.prepare_data(args.train, labelled=True, learn_labels=True)  # a spec's auto sizes learned here
    test = model.prepare_data(args.test, labelled=True)
    layer = model.plan.output
    if layer.lsh is None:
        parser.error(f"{args.spec}: the output layer is not LSH-sparse")
    judged = take_rows(test, np.arange(min(args.rows, test.n_rows)))
    labels = [judged.labels_of(row) for row in range(judged.n_rows)]
    print(f"{args.spec}: {layer.lsh.family}, {layer.lsh.tables} tables of {layer.lsh.hashes} hashes; "
          f"{judged.n_rows:,} held-out rows\n")
    print("| epoch | train s | P@1 | label recall | best-neuron recall | chance | label lift |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for epoch in range(1, args.epochs + 1):
        started = time.perf_counter()
        model.fit(train, epochs=1, progress=False)
        seconds = time.perf_counter() - started
        best, _ = model.predict(judged, top_k=TOP_NEURONS)
        ids, counts = model.candidate_sets(judged)
        heavy = model.arrays[buffer_name(layer.index, "heavy_ids")]
        label_recall = _hashing_recall(ids, counts, heavy, labels)
        best_recall = _hashing_recall(ids, counts, heavy, list(best))
        chance = float(counts.mean() - len(heavy)) / max(1, layer.out_dim - len(heavy))
        p_at_1 = model.evaluate(judged, metrics=["precision@1"], progress=False)["precision@1"]
        print(f"| {epoch} | {seconds:.1f} | {p_at_1:.4f} | {label_recall:.4f} | {best_recall:.4f} | {chance:.4f} "
              f"| {label_recall / chance if chance else float('nan'):.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
