#!/usr/bin/env python3
"""Extreme-classification rows from a random teacher network: a second generator beside bench/amazon/generate.py.

Each row draws 20-79 distinct features from a Zipf-like law (exponent 0.9); a fixed random teacher (sparse input ->
32 ReLU units -> one score per label, plus a Zipf-like label prior in a random order) scores every label, Gumbel
noise (--noise) is added, and the row's 1-5 labels are the best of those scores, best first. The amazon generator
builds rows around labels; here labels follow from rows, through a network unlike the one boltc trains.

    python bench/teacher/generate.py --train-rows 60000 --test-rows 4000 --features 50000 --labels 20000 --seed 6
        --noise 0.3 --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TEACHER_UNITS = 32
CHUNK_ROWS = 2000
MOST_LABELS = 5


def write_rows(path: Path, rows: int, teacher: dict[str, np.ndarray], noise: float, rng: np.random.Generator) -> None:
    n_features, n_labels = teacher["input"].shape[0], teacher["output"].shape[1]
    with path.open("w") as out:
        out.write(f"{rows} {n_features} {n_labels}\n")
        for start in range(0, rows, CHUNK_ROWS):
            count = min(CHUNK_ROWS, rows - start)
            features = [np.unique(rng.choice(n_features, size=rng.integers(20, 80), p=teacher["feature_law"]))
                        for _ in range(count)]
            hidden = np.stack([np.maximum(teacher["input"][f].sum(0) / np.sqrt(len(f)), 0) for f in features])
            scores = hidden @ teacher["output"] + teacher["prior"] + noise * rng.gumbel(size=(count, n_labels))
            best = np.argpartition(-scores, MOST_LABELS, axis=1)[:, :MOST_LABELS]
            label_counts = rng.integers(1, MOST_LABELS + 1, size=count)
            for row in range(count):
                ranked = best[row][np.argsort(-scores[row, best[row]])][: label_counts[row]]
                out.write(",".join(map(str, ranked)) + " " + " ".join(f"{j}:1" for j in features[row]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=60000)
    parser.add_argument("--test-rows", type=int, default=4000)
    parser.add_argument("--features", type=int, default=50000)
    parser.add_argument("--labels", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.3, help="Gumbel noise scale on the teacher's scores")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    feature_law = 1.0 / np.arange(1, args.features + 1) ** 0.9
    teacher = {
        "input": rng.normal(0, 1, (args.features, TEACHER_UNITS)).astype(np.float32),
        "output": rng.normal(0, 1, (TEACHER_UNITS, args.labels)).astype(np.float32),
        "prior": (2 * np.log(1.0 / np.arange(1, args.labels + 1) ** 0.8)).astype(np.float32)[
            rng.permutation(args.labels)],
        "feature_law": feature_law / feature_law.sum(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", args.train_rows), ("test", args.test_rows)):
        write_rows(args.out / f"{name}.txt", rows, teacher, args.noise, rng)
        print(f"generate: {args.out / f'{name}.txt'}: {rows:,} rows")


if __name__ == "__main__":
    main()
