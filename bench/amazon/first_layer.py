"""A sparse first layer on Amazon-670K-shaped data (bench/data/amazon): 135,909 words -> 1,024 ReLU -> 670,091
labels at 0.5%, the hidden layer dense or LSH-sparse on the sparse input, trained epoch by epoch with the same
seed, rate and rows; test P@1 and the seconds of `fit` summed after each epoch, then where the time went.

    python -m bench.amazon.first_layer [--train-rows 100000] [--test-rows 5000] [--epochs 3] [--rate 0.001]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import boltc
from boltc import ops
from boltc.data import read_xmc, take_rows

DATA = Path(__file__).resolve().parents[1] / "data" / "amazon"
SPEC = """model first_layer {{
    input  words:  sparse[135909]
    target labels: multilabel[670091]
    hidden = dense(words, {width}, activation=relu{sparsity})
    scores = dense(hidden, 670091, activation=softmax, sparsity=0.005)
    loss      cross_entropy(scores, labels)
    optimizer adam(learning_rate={rate})
    train     {{ batch_size = 256, seed = 7 }}
    metrics   precision@1
}}
"""
VARIANTS = {"dense hidden": "", "sparse hidden 5%": ", sparsity=0.05"}


def run(name: str, spec: Path, train, test, epochs: int) -> list[tuple[int, float, float]]:
    model = boltc.load(spec, tune=False)
    layer = model.plan.layers[0]
    print(f"{name}: {layer.kernel} - {ops.of_plan(layer).describe(model.plan, layer)[1] or 'dense'}", flush=True)
    seconds, rows = 0.0, []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.fit(train, epochs=1, validation=False, progress=False)
        seconds += time.perf_counter() - started
        p_at_1 = model.evaluate(test, metrics=["precision@1"], progress=False)["precision@1"]
        rows.append((epoch, p_at_1, seconds))
        print(f"  epoch {epoch}: test P@1 {p_at_1:.4f} at {seconds:.1f} s", flush=True)
    for layer, profile in model.kernel_profile().items():
        print(f"  layer {layer}: " + ", ".join(f"{field} {value:.2f}" for field, value in profile.items() if value))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--test-rows", type=int, default=5_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.001)
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()
    train = read_xmc(DATA / "train.txt", 135909, 670091)
    test = read_xmc(DATA / "test.txt", 135909, 670091)
    train = take_rows(train, np.arange(min(args.train_rows, train.n_rows)))
    test = take_rows(test, np.arange(min(args.test_rows, test.n_rows)))
    with tempfile.TemporaryDirectory() as folder:
        table = {}
        for name, sparsity in VARIANTS.items():
            spec = Path(folder) / f"{name.split()[0]}.bolt"
            spec.write_text(SPEC.format(width=args.width, sparsity=sparsity, rate=args.rate))
            table[name] = run(name, spec, train, test, args.epochs)
    print("\n| first layer | " + " | ".join(f"epoch {e}" for e in range(1, args.epochs + 1)) + " |")
    print("| --- |" + " --- |" * args.epochs)
    for name, rows in table.items():
        print(f"| {name} | " + " | ".join(f"{p:.4f} at {s:.1f} s" for _, p, s in rows) + " |")


if __name__ == "__main__":
    main()
