#!/usr/bin/env python3
"""CSV files featurized by a boltc spec's typed columns, written as extreme-classification text files: so that the
peers reading that format (peers/torch_xmc.py) train on exactly the features boltc trains on.

The spec's model reads --train first (its label names and the history inputs' per-key state come from it, as in
training), then --test (its rows see the training history; labels training never saw are left out, so such a row
is written without labels). Each input is its own range of feature ids; the output puts them side by side, input
by input in the spec's order (the first input's ids first), so a row's features are the union of its inputs'.
Values are boltc's (counts of each hashed id, or a neighbours' mean). Labels are boltc's label ids.

Written: the header ``N_ROWS N_FEATURES N_LABELS`` (N_LABELS: the spec's output size), then ``l1,l2 f:v f:v ...``
per row, feature ids ascending. Re-made on every run: it takes seconds, and the features depend on boltc's
featurizers as well as on the spec and the files.

Usage (from the repository root)::

    python bench/export_features.py --spec specs/debian_section.bolt --train bench/data/debian/train.csv \
        --test bench/data/debian/test.csv --out-train bench/data/debian/train.xmc.txt \
        --out-test bench/data/debian/test.xmc.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import log, write_atomic  # noqa: E402


def side_by_side(dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(indptr, feature ids, values, total width) of all of a Dataset's sparse inputs, input i's ids shifted by the
    widths of the inputs before it."""
    if any(matrix.dense is not None for matrix in dataset.features):
        raise SystemExit("export: error: a dense input; this exporter is for typed columns (sparse inputs)")
    offsets = np.cumsum([0] + [matrix.dim for matrix in dataset.features])
    n_rows = dataset.n_rows
    per_row = sum(np.diff(matrix.indptr) for matrix in dataset.features)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(per_row, out=indptr[1:])
    # entry e of input i in row r goes after the row's entries of inputs 0..i-1 and its own earlier entries
    indices = np.empty(indptr[-1], dtype=np.int64)
    values = np.empty(indptr[-1], dtype=np.float32)
    filled = indptr[:-1].copy()
    for offset, matrix in zip(offsets, dataset.features):
        counts = np.diff(matrix.indptr)
        within = np.arange(matrix.indptr[-1], dtype=np.int64) - np.repeat(matrix.indptr[:-1], counts)
        places = np.repeat(filled, counts) + within
        indices[places] = matrix.indices.astype(np.int64) + offset
        values[places] = matrix.values
        filled += counts
    return indptr, indices, values, int(offsets[-1])


def xc_text(dataset, n_labels: int) -> str:
    indptr, indices, values, width = side_by_side(dataset)
    # 9 significant digits give back the same float32 (a neighbours' mean is a fraction); a count is written whole
    entries = [f"{i}:{v:.9g}" for i, v in zip(indices.tolist(), values.tolist())]
    lines = [f"{dataset.n_rows} {width} {n_labels}"]
    for row in range(dataset.n_rows):
        labels = dataset.label_ids[dataset.label_indptr[row]:dataset.label_indptr[row + 1]].tolist()
        lines.append(",".join(map(str, sorted(labels))) + " " + " ".join(entries[indptr[row]:indptr[row + 1]]))
    return "\n".join(lines) + "\n"


def export(spec: Path, train: Path, test: Path, out_train: Path, out_test: Path) -> dict:
    import boltc  # after argument parsing: compiling the spec takes seconds

    started = time.perf_counter()
    model = boltc.load(spec, tune=False)
    train_rows = model.prepare_data(train, labelled=True, learn_labels=True)
    test_rows = model.prepare_data(test, labelled=True)
    n_labels = model.plan.output.out_dim
    for rows, path in ((train_rows, out_train), (test_rows, out_test)):
        write_atomic(path, xc_text(rows, n_labels))
    facts = {"train_rows": train_rows.n_rows, "test_rows": test_rows.n_rows, "labels": n_labels,
             "label_names": len(model.label_names), "features": sum(m.dim for m in train_rows.features),
             "mean_nnz_per_train_row": float(np.mean(sum(np.diff(m.indptr) for m in train_rows.features)))}
    log(f"export: wrote {out_train} and {out_test} in {time.perf_counter() - started:.1f} s: {facts}")
    return facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True, help="the training CSV/TSV file")
    parser.add_argument("--test", type=Path, required=True, help="the test CSV/TSV file")
    parser.add_argument("--out-train", type=Path, required=True)
    parser.add_argument("--out-test", type=Path, required=True)
    args = parser.parse_args(argv)
    export(args.spec, args.train, args.test, args.out_train, args.out_test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
