#!/usr/bin/env python3
"""Bins learned from the data: specs/debian_sizes.bolt (a package's Section from two skewed sizes and three small
categorical fields) with its numerical columns' quantile bins against equal-width bins over the same learned range
(binning=equal), over several seeds, on the Debian workload's test rows; beside scikit-learn's HistGradientBoosting
and logistic regression (on the sizes' logarithms and one-hot categories) where scikit-learn is installed.

Usage (from the repository root, after ``python bench/debian/prepare.py``)::

    python bench/binning.py [--seeds 0 1 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))
from common import log, machine_info  # noqa: E402

SPEC = REPO_ROOT / "specs" / "debian_sizes.bolt"
DATA = REPO_ROOT / "bench" / "data" / "debian"
NUMBERS = ("installed_size", "size")
CATEGORIES = ("architecture", "multi_arch", "priority")


def boltc_accuracy(binning: str, seed: int, threads: int, folder: Path) -> tuple[float, float]:
    import boltc

    source = SPEC.read_text().replace("numerical(bins=64,", f"numerical(bins=64, binning={binning},")
    source = source.replace("train     { batch_size = 128,", f"train     {{ seed = {seed}, batch_size = 128,")
    spec = folder / f"debian_sizes_{binning}.bolt"
    spec.write_text(source)
    model = boltc.load(spec)
    model.threads = threads
    started = time.perf_counter()
    model.fit(DATA / "train.csv", progress=False)
    seconds = time.perf_counter() - started
    return model.evaluate(DATA / "test.csv", metrics=["accuracy"])["accuracy"], seconds


def table(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The sizes' logarithms (0 where empty), the categories one-hot, and the sections."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    numbers = np.array([[np.log1p(float(row[c] or 0)) for c in NUMBERS] for row in rows])
    return numbers, np.array([[row[c] for c in CATEGORIES] for row in rows]), [row["section"] for row in rows]


def sklearn_accuracies(seed: int) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    train_numbers, train_categories, train_labels = table(DATA / "train.csv")
    test_numbers, test_categories, test_labels = table(DATA / "test.csv")
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(train_categories)
    scaler = StandardScaler().fit(train_numbers)

    def features(numbers, categories):
        return np.hstack([scaler.transform(numbers), encoder.transform(categories)])

    found = {}
    for name, estimator in (("HistGradientBoosting", HistGradientBoostingClassifier(random_state=seed)),
                            ("logistic regression", LogisticRegression(max_iter=2000))):
        estimator.fit(features(train_numbers, train_categories), train_labels)
        predicted = estimator.predict(features(test_numbers, test_categories))
        found[name] = float(np.mean(predicted == np.array(test_labels)))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "binning")
    args = parser.parse_args(argv)
    if not (DATA / "train.csv").exists():
        raise SystemExit("binning: error: no Debian CSV files; run python bench/debian/prepare.py first")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_info(args.threads), "boltc": {}, "peers": {}}
    for binning in ("quantile", "equal"):
        runs = [boltc_accuracy(binning, seed, args.threads, args.out) for seed in args.seeds]
        results["boltc"][binning] = {"accuracy": [a for a, _ in runs], "seconds": [s for _, s in runs]}
        log(f"boltc {binning}: test accuracy {', '.join(f'{a:.4f}' for a, _ in runs)}")
    try:
        results["peers"] = sklearn_accuracies(args.seeds[0])
        log("scikit-learn: " + ", ".join(f"{name} {value:.4f}" for name, value in results["peers"].items()))
    except ImportError:
        log("scikit-learn is not installed: no peers")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
