"""What the peer scripts of this folder (fasttext_peer.py, tree_peer.py) share: the command-line contract the
benchmark harness relies on, thread setup, timing, precision@k and recall@k from top-k label ids, and the JSON
record.

The contract: ``--train PATH --test PATH --threads N [--time-budget S] [--eval-rows N] [--seed S] --json``;
logs go to stderr; with --json the last stdout line is one JSON object (see ``print_record``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence, TextIO

import numpy as np

PEERS = Path(__file__).resolve().parent
sys.path.insert(0, str(PEERS.parent))
sys.path.insert(0, str(PEERS))
from common import log  # noqa: E402  (bench/common.py; re-exported for the peer scripts)
# The XC text reader and recall of the PyTorch peer; that module imports torch only inside main(), so this stays
# light.
from torch_xmc import XCData, parse_recall_ks, read_xc_text, recall_from_hits  # noqa: E402

__all__ = ["NO_LABEL", "TOP_K", "XCData", "add_contract_arguments", "check_contract_arguments",
           "claim_stdout_for_record", "curve_point", "distribution_version", "log", "parse_recall_ks", "peak_rss_mb",
           "precision_at_k", "print_record", "recall_at_k", "read_xc_text", "set_thread_environment", "timed", "top_k_ids"]

TOP_K = 5
NO_LABEL = -1          # pads a top-k row when the library returned fewer than k labels; never a hit


def add_contract_arguments(parser: argparse.ArgumentParser, *, data_required: bool = True) -> None:
    """The options every peer script takes (see the module docstring)."""
    parser.add_argument("--train", type=Path, required=data_required, help="training set (XC text format)")
    parser.add_argument("--test", type=Path, required=data_required, help="test set (XC text format)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds of pure training time (default: no limit)")
    parser.add_argument("--eval-rows", type=int, default=2000, help="evaluate on the first N test rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print a JSON record as the last stdout line")


def check_contract_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.threads < 1 or args.eval_rows < 1:
        parser.error("--threads and --eval-rows must be >= 1")
    if args.time_budget is not None and args.time_budget <= 0:
        parser.error("--time-budget must be > 0")


def set_thread_environment(threads: int) -> None:
    """Native thread pools (OpenMP, Rayon) are sized when the library loads: call before importing it."""
    for name in ("OMP_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ[name] = str(threads)


def claim_stdout_for_record() -> TextIO:
    """A stream on the real stdout, for the JSON record alone; file descriptor 1 then points at stderr.

    Native libraries write progress to descriptor 1 (omikuji's logger does, always), which would break
    'the last stdout line is the JSON record'; pointing it at stderr keeps their output in the log."""
    sys.stdout.flush()
    record_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return record_stream


def distribution_version(*names: str) -> str:
    """Installed version of the first of these package distributions found (a library's PyPI name can vary,
    e.g. fasttext / fasttext-wheel); the libraries themselves carry no __version__ attribute."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def timed(function: Callable, *args, **kwargs):
    """(function's result, wall seconds, process CPU seconds). CPU / wall shows how many threads really worked."""
    cpu_before = time.process_time()
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started, time.process_time() - cpu_before


def top_k_ids(predictions: Iterable[Sequence[int]], k: int = TOP_K) -> np.ndarray:
    """int64 [rows, k] from each row's predicted label ids, best first, padded with NO_LABEL."""
    rows = [list(row)[:k] for row in predictions]
    top = np.full((len(rows), k), NO_LABEL, dtype=np.int64)
    for i, row in enumerate(rows):
        top[i, :len(row)] = row
    return top


def label_hits(top: np.ndarray, label_indptr: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """bool [rows, k]: whether each prediction of ``top`` is one of its row's labels (the first rows of the CSR
    label lists ``label_indptr``/``labels``); NO_LABEL never is."""
    n_rows = top.shape[0]
    true_labels = labels[:label_indptr[n_rows]]
    key_base = np.int64(max(int(true_labels.max(initial=0)), int(top.max(initial=0))) + 1)
    true_rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(label_indptr[:n_rows + 1]))
    true_keys = true_rows * key_base + true_labels
    predicted_keys = np.arange(n_rows, dtype=np.int64)[:, None] * key_base + top
    return np.isin(predicted_keys, true_keys) & (top != NO_LABEL)


def precision_at_k(top: np.ndarray, label_indptr: np.ndarray, labels: np.ndarray,
                   ks: Sequence[int] = (1, TOP_K)) -> dict:
    """precision@k = |top-k ∩ the row's labels| / k, averaged over the rows of ``top``. A row without labels
    scores 0, as in boltc."""
    hit = label_hits(top, label_indptr, labels)
    return {f"precision@{k}": float(hit[:, :k].sum(axis=1).mean() / k) for k in ks}


def recall_at_k(top: np.ndarray, label_indptr: np.ndarray, labels: np.ndarray, ks: Sequence[int]) -> dict:
    """recall@k over the rows of ``top`` that have labels, as boltc computes it (torch_xmc.recall_from_hits)."""
    n_rows = top.shape[0]
    return recall_from_hits(label_hits(top, label_indptr, labels), np.diff(label_indptr[:n_rows + 1]), ks)


def curve_point(train_seconds: float, samples: int, precision: dict) -> dict:
    return {"train_seconds": train_seconds, "samples": samples, **precision}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def print_record(record: dict, stream: TextIO) -> None:
    """The contract's record: system, version, train_seconds (training only), samples_seen (rows x passes),
    samples_per_second, curve, final, inference_rows_per_second, threads, config, load_seconds, n_train,
    n_eval; extra keys are allowed."""
    print(json.dumps(record), file=stream, flush=True)
