#!/usr/bin/env python3
"""boltc as a bench system on CSV/TSV files of typed columns (a spec with text(...), categorical(...), history(...)
inputs and a string target): the training and measuring loop of boltc_xmc.py, the same options and JSON record.

What CSV files change is how the two files become rows. The training file is read first: its label names become
the model's (in order of first appearance), and its rows join the history inputs' per-key state, so each test row
sees its key's training rows as its history (for a user, the movies rated before the test one). The test file is
read after, with those names: a test label that training never saw is left out (boltc warns), so that row counts
as a miss in precision@k and is left out of recall@k; the record says how many such rows there were
(``test_rows_without_known_label``) and how many label names training gave (``label_names``).

Usage (from the repository root)::

    python bench/peers/boltc_csv.py --spec specs/movielens_next.bolt --train bench/data/movielens/train.csv \
        --test bench/data/movielens/test.csv --recall-at 10 --threads 2 --json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from boltc_xmc import parser_for, run  # noqa: E402


def prepare_csv_files(model, args: argparse.Namespace) -> tuple[object, object, dict]:
    """The training file first (label names and history state come from it), then the test file."""
    train = model.prepare_data(args.train, labelled=True, learn_labels=True)
    test = model.prepare_data(args.test, labelled=True)
    without_label = int(np.count_nonzero(np.diff(test.label_indptr) == 0))
    return train, test, {"label_names": len(model.label_names), "test_rows_without_known_label": without_label}


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__.splitlines()[0])
    return run(parser, parser.parse_args(argv), prepare_csv_files)


if __name__ == "__main__":
    sys.exit(main())
