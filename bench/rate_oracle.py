#!/usr/bin/env python3
"""What a spec that chooses for itself (no learning rate, epochs = auto) reaches, beside an oracle that was told.

The oracle trains the same network at each of --rates for --max-epochs epochs on the training rows epochs=auto
keeps, and takes the rate and epoch of the best metric on the rows epochs=auto holds out; its test metric and its
training seconds to that epoch are what the spec's own choices are held to. Then the spec trains as a user's run
would (one fit(): the learning-rate race, epochs until the held-out metric stops improving, the best epoch kept),
and its test metric is measured with dense inference and, where the output layer is LSH-sparse, sparse inference
(with each one's rows/s). Training seconds exclude the sparse layers' autotuning, timed apart, for both.

    python bench/rate_oracle.py --spec specs/amazon670k.bolt --train T.txt --test E.txt [--eval-rows 2000]
        [--rates 0.0005,0.001,0.002,0.005,0.01] [--max-epochs 10] [--threads 2] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boltc  # noqa: E402
from boltc.data import take_rows  # noqa: E402


def _metric(model) -> str:
    """The metric epochs=auto chooses on: the spec's first."""
    return model.plan.metrics[0] if model.plan.metrics else "loss"


def _better(metric: str, value: float, than: float | None) -> bool:
    return than is None or (value < than if metric == "loss" else value > than)


def oracle(args: argparse.Namespace, rates: list[float]) -> dict:
    """Every rate for --max-epochs epochs on the kept rows; the best (rate, epoch) by the held-out metric."""
    curves, best = [], None
    for rate in rates:
        model = boltc.load(args.spec)
        model.threads = args.threads
        train = model.prepare_data(args.train, labelled=True, learn_labels=True)
        kept, held, _ = model._split_validation(train, None, auto=True)  # the rows epochs=auto would hold out
        kept_set = take_rows(train, kept)
        test = take_rows(model.prepare_data(args.test, labelled=True), np.arange(args.eval_rows))
        metric, seconds, points = _metric(model), 0.0, []
        for epoch in range(1, args.max_epochs + 1):
            history = model.fit(kept_set, epochs=1, validation=False, learning_rate=rate, progress=False,
                                final_rebuild=False)
            seconds += history.wall_seconds
            if not np.isfinite(history.epochs[-1].loss):
                break
            point = {"epoch": epoch, "train_seconds": seconds,
                     "validation": model.evaluate(held, [metric], progress=False)[metric],
                     "test": model.evaluate(test, [metric], progress=False)[metric]}
            points.append(point)
            print(f"rate {rate:g} epoch {epoch}: {seconds:.1f}s, validation {metric} {point['validation']:.4f}, "
                  f"test {point['test']:.4f}", file=sys.stderr, flush=True)
            if best is None or _better(metric, point["validation"], best["validation"]):
                best = {"learning_rate": rate, **point}
        curves.append({"learning_rate": rate, "points": points})
    return {"metric": metric, "best": best, "curves": curves}


def chosen(args: argparse.Namespace) -> dict:
    """The spec's own run: one fit() that races its rate and chooses its epochs."""
    model = boltc.load(args.spec)
    model.threads = args.threads
    train = model.prepare_data(args.train, labelled=True, learn_labels=True)
    history = model.fit(train, progress=False)
    metric = _metric(model)
    test = take_rows(model.prepare_data(args.test, labelled=True), np.arange(args.eval_rows))
    race = model.rate_choice
    result = {
        "learning_rate": history.learning_rate,
        "race_seconds": race.seconds if race is not None and not race.cached else 0.0,
        "race_cached": race is not None and race.cached,
        "race": race.to_json() if race is not None else None,
        "tune_seconds": model.tuning.seconds if model.tuning is not None else 0.0,
        "train_seconds": history.wall_seconds,
        "epochs_run": len(history.epochs), "best_epoch": history.best_epoch,
        "validation": [record.validation.get(metric) for record in history.epochs],
        "sparse_check": model.sparse_check,
    }
    for sparse in (False, True) if model.sparse_layers else (False,):
        seconds = []
        for _ in range(2):  # the faster of two: the first also pays for touching the buffers
            found = model.evaluate(test, [metric], progress=False, sparse=sparse)[metric]
            seconds.append(model.last_eval_seconds)
        mode = "sparse" if sparse else "dense"
        result["test_sparse" if sparse else "test"] = found
        result[f"{mode}_rows_per_second"] = test.n_rows / min(seconds)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--eval-rows", type=int, default=2000, help="test rows measured (the first N)")
    parser.add_argument("--rates", default="0.0005,0.001,0.002,0.005,0.01")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-oracle", action="store_true", help="only the spec's own run")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON record here too")
    args = parser.parse_args()
    started = time.perf_counter()
    record = {"spec": args.spec, "train": args.train, "test": args.test, "eval_rows": args.eval_rows,
              "threads": args.threads, "auto": chosen(args)}
    auto = record["auto"]
    print(f"auto: rate {auto['learning_rate']:g} ({auto['race_seconds']:.1f}s race), {auto['epochs_run']} epochs, "
          f"epoch {auto['best_epoch']} kept, {auto['train_seconds']:.1f}s: test {auto['test']:.4f} dense"
          + (f", {auto['test_sparse']:.4f} sparse ({auto['sparse_rows_per_second']:.0f} against "
             f"{auto['dense_rows_per_second']:.0f} rows/s)" if "test_sparse" in auto else ""), file=sys.stderr)
    if not args.skip_oracle:
        record["oracle"] = oracle(args, [float(r) for r in args.rates.split(",")])
        best = record["oracle"]["best"]
        spent = auto["race_seconds"] + auto["train_seconds"]
        record["gap"] = {"test": auto["test"] - best["test"], "time_ratio": spent / best["train_seconds"]}
        print(f"oracle: rate {best['learning_rate']:g}, epoch {best['epoch']}, {best['train_seconds']:.1f}s: test "
              f"{best['test']:.4f}; auto - oracle {record['gap']['test']:+.4f} test, "
              f"{record['gap']['time_ratio']:.2f}x its time", file=sys.stderr)
    record["seconds"] = time.perf_counter() - started
    text = json.dumps(record)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
