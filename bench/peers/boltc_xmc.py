#!/usr/bin/env python3
"""boltc as a bench system: train a spec on an XC text file through the Python API, following the peers' contract
(xc_eval.py): P@k on the first --eval-rows test rows after every --evals-per-epoch share of an epoch, then
inference throughput, batch-1 latency and the sparse layers' kernel profile (for the roofline report).

With an LSH-sparse output layer, both inference modes are measured at every point; the curve's precision@k is
sparse inference's (the mode a sparse model serves in), dense inference's is kept beside it; --inference dense
reports dense inference's instead (where scoring every label is cheap, e.g. thousands of labels), sparse beside it. Training seconds count
fit()'s wall time (the rebuilds included), not evaluation; what the first fit measures before training (the sparse
layers' tuning unless --tune off, and the learning-rate race of a spec without a rate, --tune off or not) is timed
apart as tune_seconds.
With --time-budget, training stops once both together reach it. A spec of epochs=auto (and no --epochs) trains
in one fit() that chooses its epochs on rows it holds out: one point, at its end, and what it chose.
--recall-at K adds recall@K to every point. boltc_csv.py runs the same loop on CSV/TSV files of typed columns.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

import numpy as np

from xc_eval import (add_contract_arguments, check_contract_arguments, claim_stdout_for_record, curve_point, log,
                     parse_recall_ks, peak_rss_mb, print_record, set_thread_environment)

LATENCY_WARMUP, LATENCY_CALLS = 3, 30

# (model, args) -> (training rows, test rows, facts about the data for the record), both as boltc Datasets
Prepare = Callable[[object, argparse.Namespace], tuple[object, object, dict]]


def parser_for(description: str) -> argparse.ArgumentParser:
    """The options of a boltc system: the peers' contract and boltc's own."""
    parser = argparse.ArgumentParser(description=description)
    add_contract_arguments(parser)
    parser.add_argument("--spec", required=True, help="the .bolt spec")
    parser.add_argument("--epochs", type=int, default=None, help="default: the spec's")
    parser.add_argument("--evals-per-epoch", type=int, default=1)
    parser.add_argument("--tune", choices=("on", "off"), default="on",
                        help="the sparse layers' measured autotuning at the first fit (off: BOLT's formulas); a "
                             "spec without a learning rate races it either way, as a user's run does")
    parser.add_argument("--tune-budget", type=float, default=None, help="seconds (default: boltc's)")
    parser.add_argument("--name", default=None, help="the system's name in the record (default: boltc, or "
                                                     "boltc-formula with --tune off)")
    parser.add_argument("--recall-at", default=None, help="also recall@k for these comma-separated k")
    parser.add_argument("--inference", choices=("sparse", "dense"), default="sparse",
                        help="which inference mode gives the reported metrics of a model with an LSH-sparse layer "
                             "(default sparse; both are measured)")
    return parser


def prepare_xc_files(model, args: argparse.Namespace) -> tuple[object, object, dict]:
    train = model.prepare_data(args.train, labelled=True, learn_labels=True)  # a label count of auto: learned here
    return train, model.prepare_data(args.test, labelled=True), {}


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__.splitlines()[0])
    return run(parser, parser.parse_args(argv), prepare_xc_files)


def choosing_seconds(model) -> float:
    """What the first fit() spent before training, not taken from a cache: the sparse layers' measured tuning and
    the learning-rate race."""
    return sum(choice.seconds for choice in (model.tuning, model.rate_choice)
               if choice is not None and not choice.cached)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace, prepare: Prepare) -> int:
    """Train and measure as the module docstring says, on the Datasets that ``prepare`` makes of --train and
    --test; print the record."""
    check_contract_arguments(parser, args)
    try:
        recall_ks = parse_recall_ks(args.recall_at)
    except ValueError as error:
        parser.error(str(error))
    set_thread_environment(args.threads)
    record_stream = claim_stdout_for_record()

    import boltc
    from boltc.data import take_rows
    from boltc.tune import FIT_BUDGET_SECONDS

    started = time.perf_counter()
    model = boltc.load(args.spec, tune=args.tune == "on", tune_budget=args.tune_budget or FIT_BUDGET_SECONDS)
    model.measure_learning_rate = True
    compile_seconds = time.perf_counter() - started
    model.threads = args.threads
    loaded = time.perf_counter()
    train, test_all, data_facts = prepare(model, args)
    test = take_rows(test_all, np.arange(min(args.eval_rows, test_all.n_rows)))
    load_seconds = time.perf_counter() - loaded
    epochs = args.epochs or model.plan.epochs
    sparse = bool(model.sparse_layers)
    report_sparse = sparse and args.inference == "sparse"
    metrics = ["precision@1", "precision@5", *(f"recall@{k}" for k in recall_ks)]
    log(f"boltc {boltc.__version__}: {train.n_rows:,} training rows, {test.n_rows:,} evaluated, {epochs or 'auto'} epochs, "
        f"{args.threads} threads, sparse output: {sparse}")

    def evaluate() -> tuple[dict, dict | None, float, float | None]:
        dense = model.evaluate(test, metrics, progress=False)
        dense_seconds = model.last_eval_seconds
        if not sparse:
            return dense, None, dense_seconds, None
        found = model.evaluate(test, metrics, progress=False, sparse=True)
        return dense, found, dense_seconds, model.last_eval_seconds

    curve: list[dict] = []
    train_seconds, samples, tune_seconds = 0.0, 0, 0.0

    def within_budget() -> bool:
        """Checked before each piece, so the last one may overrun --time-budget a little, as the peers' batches do."""
        return args.time_budget is None or train_seconds + tune_seconds < args.time_budget

    chosen = {}
    if epochs is None:  # epochs=auto: one fit() that chooses its epochs on rows it holds out; one point at its end
        history = model.fit(train, epochs="auto", progress=False)
        tune_seconds = choosing_seconds(model)
        train_seconds, samples = history.wall_seconds, sum(e.samples for e in history.epochs)
        chosen = {"learning_rate": history.learning_rate, "epochs_run": len(history.epochs),
                  "best_epoch": history.best_epoch, "restored_epoch": history.restored_epoch,
                  "validation_rows": history.validation_rows, "sparse_check": model.sparse_check}
        dense, found, _, _ = evaluate()
        curve.append({**curve_point(train_seconds, samples, found if report_sparse else dense), "dense": dense,
                      **({"sparse": found} if found else {})})
        log(f"epochs=auto: {len(history.epochs)} run, epoch {history.best_epoch} kept, learning rate "
            f"{history.learning_rate:g}; {train_seconds:.1f}s: P@1 {curve[-1]['precision@1']:.4f}")
    for epoch in range(epochs or 0):
        order = np.random.default_rng([args.seed, epoch]).permutation(train.n_rows)
        for piece in np.array_split(order, args.evals_per_epoch):
            if not within_budget():
                break
            history = model.fit(take_rows(train, piece), epochs=1, progress=False)
            if not curve:
                tune_seconds = choosing_seconds(model)
            train_seconds += history.wall_seconds  # fit() starts its clock after tuning
            samples += len(piece)
            dense, found, dense_seconds, sparse_seconds = evaluate()
            point = curve_point(train_seconds, samples, found if report_sparse else dense)
            point["dense"] = dense
            if found:
                point["sparse"] = found
            curve.append(point)
            other, other_name = (dense, "dense") if report_sparse else (found, "sparse")
            log(f"{train_seconds:.1f}s, {samples:,} samples: P@1 {point['precision@1']:.4f} "
                + "".join(f"R@{k} {point[f'recall@{k}']:.4f} " for k in recall_ks)
                + (f"({other_name} {other['precision@1']:.4f})" if found else ""))
    dense, found, dense_seconds, sparse_seconds = evaluate()

    latency = {}
    one = take_rows(test, np.array([0]))
    for mode in (False, True) if sparse else (False,):
        timings = []
        for call in range(LATENCY_WARMUP + LATENCY_CALLS):
            before = time.perf_counter()
            model.predict(one, top_k=5, sparse=mode)
            if call >= LATENCY_WARMUP:
                timings.append(time.perf_counter() - before)
        latency["sparse" if mode else "dense"] = 1000 * float(np.median(timings))
    reported_seconds = sparse_seconds if report_sparse else dense_seconds

    record = {
        "system": args.name or ("boltc" if args.tune == "on" or not sparse else "boltc-formula"),
        "version": boltc.__version__,
        "train_seconds": train_seconds,
        "tune_seconds": tune_seconds,
        "samples_seen": samples,
        "samples_per_second": samples / train_seconds if train_seconds else 0.0,
        "curve": curve,
        "final": found if report_sparse else dense,
        "final_dense": dense,
        "final_sparse": found,
        "inference": "sparse" if report_sparse else "dense",
        "sparse_scores_all": model.sparse_scores_all,  # "sparse" figures of every output: the candidates missed
        "inference_rows_per_second": test.n_rows / reported_seconds,
        "inference_rows_per_second_dense": test.n_rows / dense_seconds,
        # the harness's table takes the "sparse" entry where there is one: here only the reported mode's, both below
        "latency_ms_batch1": latency if report_sparse else {"dense": latency["dense"]},
        "latency_ms_batch1_both": latency,
        "threads": args.threads,
        "config": {"spec": args.spec, "epochs": epochs or "auto", "tune": args.tune, "recall_at": list(recall_ks),
                   "inference": args.inference},
        # what epochs=auto and learning_rate=auto chose (the rate the model trained at, raced or the spec's, always)
        "chosen": {"learning_rate": model.learning_rate,
                   "rate_race": model.rate_choice.to_json() if model.rate_choice is not None else None, **chosen},
        "plan": {layer.name: {"lsh": layer.lsh and {k: getattr(layer.lsh, k) for k in (
            "family", "hashes", "tables", "bucket_cap", "active", "active_sets", "update_parts", "prefetch_rows",
            "origin")}}
            for layer in model.plan.layers if layer.lsh is not None},
        "tuning": model.tuning.to_json() if model.tuning is not None else None,
        "kernel_profile": model.kernel_profile(),
        "layer_shapes": {layer.name: [layer.in_dim, layer.out_dim] for layer in model.plan.layers
                         if layer.lsh is not None},
        "compile_seconds": compile_seconds,
        "load_seconds": load_seconds,
        "n_train": train.n_rows,
        "n_eval": test.n_rows,
        **data_facts,
        "peak_rss_mb": peak_rss_mb(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    print_record(record, record_stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
