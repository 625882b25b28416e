#!/usr/bin/env python3
"""Label-tree peer: a tree-based extreme classifier trained on the XC data (feature values as given,
e.g. tf-idf), with each library's recommended defaults.

--library napkinxc (default): napkinXC's PLT, a probabilistic label tree: hierarchical balanced 2-means
  over the labels, at most 100 labels per leaf node, a LIBLINEAR logistic-regression classifier at every
  node (C 10, eps 0.1, weights below 0.1 pruned), rows normalized to unit length; exact top-k search.
  Fed the data in memory as scipy CSR features and a CSR label matrix. Its tree spans every label id of
  the header, seen in training or not: on a subsample of a large label space most leaves are empty labels,
  and they still cost clustering time (Amazon-670K-shaped, 5,000 rows: about 60 s, omikuji 5 s).
--library omikuji: Omikuji's defaults, which are Parabel's: 3 trees of balanced 2-means down to 100 labels
  per leaf, hinge-loss linear classifiers (C 1, eps 0.1, weights below 0.1 pruned), beam search of 10.
  Omikuji reads its training set only from a file in the XMC repository format, whose header and
  rows are those of our XC text format, so it reads --train directly.

Each library trains in one call (no epochs), so the curve has a single point; --time-budget cannot stop
the call and is only recorded. samples_seen is the row count (one training over the data; the linear
solvers' iterations inside it are not passes one could stop after). train_seconds is the training call
alone (for napkinXC it includes writing the model to its scratch folder, which fit always does); omikuji's
own file loading and napkinXC's model loading for prediction are in load_seconds.
Precision@1/@5 of the top 5 on the first --eval-rows test rows; inference rows/s times the predictions of
those rows: one batch call for napkinXC (threaded), one call per row for omikuji (its Python API predicts
one row per call).

Progress goes to stderr; with --json the last stdout line is one JSON object (bench/peers/xc_eval.py).

Usage (from the repository root)::

    python bench/peers/tree_peer.py --library napkinxc --train bench/data/debtags/train.txt \
        --test bench/data/debtags/test.txt --threads 2 --json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xc_eval import (TOP_K, XCData, add_contract_arguments, check_contract_arguments,  # noqa: E402
                     claim_stdout_for_record, curve_point, distribution_version, log, peak_rss_mb,
                     precision_at_k, print_record, read_xc_text, set_thread_environment, timed, top_k_ids)

OMIKUJI_BEAM = 10       # omikuji's (and Parabel's) default beam width


def features_csr(data: XCData) -> sp.csr_matrix:
    return sp.csr_matrix((data.values, data.indices, data.indptr), shape=(data.n_rows, data.n_features))


def label_matrix_csr(data: XCData) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(data.labels.size, dtype=np.float32), data.labels, data.label_indptr),
                         shape=(data.n_rows, data.n_labels))


def train_napkinxc(args: argparse.Namespace, test: XCData, scratch: Path) -> dict:
    from napkinxc.models import PLT

    train, load_seconds, _ = timed(read_xc_text, args.train)
    X, Y = features_csr(train), label_matrix_csr(train)
    # napkinXC's fit writes the trained model into its output folder; prediction runs on a copy loaded from there.
    model = PLT(str(scratch / "plt"), threads=args.threads, seed=args.seed, verbose=0)
    _, train_seconds, cpu_seconds = timed(model.fit, X, Y)
    _, model_load_seconds, _ = timed(model.load)
    X_test = features_csr(test)
    predicted, predict_seconds, _ = timed(model.predict, X_test, top_k=TOP_K)
    config = {name: value for name, value in model.get_params().items() if name != "output"}  # a scratch path
    return {"train_seconds": train_seconds, "cpu_seconds": cpu_seconds, "n_train": train.n_rows,
            "load_seconds": load_seconds + model_load_seconds, "top": top_k_ids(predicted),
            "predict_seconds": predict_seconds, "config": config}


@contextlib.contextmanager
def omikuji_progress_bars_dropped(scratch: Path):
    """omikuji redraws a progress bar on stderr for every example, label and tree node (hundreds of bytes
    each: megabytes per 10,000 rows) and cannot be told not to. Its stderr goes to a file meanwhile; what
    is not a bar redraw (warnings, a panic message) is passed on afterwards."""
    bars = re.compile(r"\[[=>\-]*\]\s+[\d.]+ %")
    capture_path = scratch / "omikuji.stderr"
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with open(capture_path, "wb") as capture:
        os.dup2(capture.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        text = capture_path.read_text(encoding="utf-8", errors="replace")
        for piece in re.split(r"[\r\n]+", text):
            if piece.strip() and not bars.search(piece):
                log(piece)


def train_omikuji(args: argparse.Namespace, test: XCData, scratch: Path) -> dict:
    import omikuji
    # Model.train_on_data loads the file and trains in one call; the same two library calls, made here one by
    # one, keep the file loading out of train_seconds.
    from omikuji import _ThreadPoolHandle, lib

    with open(args.train, encoding="ascii") as fh:
        n_train = int(fh.readline().split()[0])
    hyper_param = omikuji.Model.default_hyper_param()
    thread_pool = _ThreadPoolHandle(args.threads, initialize=True)
    with omikuji_progress_bars_dropped(scratch):
        dataset, load_seconds, _ = timed(
            lib.load_omikuji_data_set, str(args.train).encode(), thread_pool.ptr)
        if dataset == omikuji.ffi.NULL:
            raise SystemExit(f"omikuji could not load {args.train}")
        model_pointer, train_seconds, cpu_seconds = timed(
            lib.train_omikuji_model, dataset, hyper_param, thread_pool.ptr)
        lib.free_omikuji_data_set(dataset)
        if model_pointer == omikuji.ffi.NULL:
            raise SystemExit("omikuji failed to train")
    model = omikuji.Model(model_pointer, thread_pool)
    rows = [list(zip(test.indices[test.indptr[r]:test.indptr[r + 1]].tolist(),
                     test.values[test.indptr[r]:test.indptr[r + 1]].tolist())) for r in range(test.n_rows)]
    predicted, predict_seconds, _ = timed(
        lambda: [[label for label, _ in model.predict(row, beam_size=OMIKUJI_BEAM, top_k=TOP_K)] for row in rows])
    # The hyper-parameters are float32 in omikuji: 6 significant digits show them as they were set.
    config = {name: getattr(hyper_param, name) for name in dir(hyper_param)}
    config = {name: float(f"{value:.6g}") if isinstance(value, float) else value for name, value in config.items()}
    config["linear_loss_type"] = omikuji.LossType(config["linear_loss_type"]).name.lower()
    return {"train_seconds": train_seconds, "cpu_seconds": cpu_seconds, "n_train": n_train,
            "load_seconds": load_seconds, "top": top_k_ids(predicted), "predict_seconds": predict_seconds,
            "config": {"model": "omikuji (Parabel-like defaults)", "beam_size": OMIKUJI_BEAM, **config}}


TRAINERS = {"napkinxc": ("napkinxc-plt", "napkinxc", train_napkinxc),
            "omikuji": ("omikuji", "omikuji", train_omikuji)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Label-tree (napkinXC PLT / omikuji) peer for extreme "
                                                 "classification")
    add_contract_arguments(parser)
    parser.add_argument("--library", choices=sorted(TRAINERS), default="napkinxc")
    args = parser.parse_args(argv)
    check_contract_arguments(parser, args)
    system, distribution, train = TRAINERS[args.library]

    record_stream = claim_stdout_for_record()
    set_thread_environment(args.threads)
    test, test_load_seconds, _ = timed(read_xc_text, args.test, max_rows=args.eval_rows)
    with tempfile.TemporaryDirectory(prefix="tree_peer_") as scratch:
        result = train(args, test, Path(scratch))
    if args.time_budget is not None and result["train_seconds"] > args.time_budget:
        log(f"note: training took {result['train_seconds']:.1f}s, past the {args.time_budget:g}s budget "
            f"(one call, it cannot be stopped)")
    n_train, n_eval = result["n_train"], test.n_rows
    precision = precision_at_k(result["top"], test.label_indptr, test.labels)
    train_seconds = result["train_seconds"]
    record = {
        "system": system,
        "version": distribution_version(distribution),
        "train_seconds": train_seconds,
        "samples_seen": n_train,
        "samples_per_second": n_train / train_seconds,
        "curve": [curve_point(train_seconds, n_train, precision)],
        "final": precision,
        "inference_rows_per_second": n_eval / result["predict_seconds"],
        "threads": args.threads,
        "config": {**result["config"], "time_budget": args.time_budget},
        "load_seconds": result["load_seconds"] + test_load_seconds,
        "n_train": n_train,
        "n_eval": n_eval,
        "train_cpu_seconds": result["cpu_seconds"],
        "peak_rss_mb": peak_rss_mb(),
    }
    log(f"{system}: trained {n_train:,} rows in {train_seconds:.2f}s ({result['cpu_seconds'] / train_seconds:.2f} "
        f"cores busy, {record['samples_per_second']:,.0f} samples/s); P@1 {precision['precision@1']:.4f}, "
        f"P@5 {precision['precision@5']:.4f} on {n_eval:,} rows; inference "
        f"{record['inference_rows_per_second']:,.0f} rows/s; peak RSS {record['peak_rss_mb']:,.0f} MB")
    if args.json:
        print_record(record, record_stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
