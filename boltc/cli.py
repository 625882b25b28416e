"""The ``boltc`` command: compile, explain, tune, train, evaluate, predict, demo.

Errors a user can act on (``BoltError``) print as compiler-style messages and exit 2 (spec errors) or 1; anything
else is a bug in boltc and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from boltc import __version__
from boltc.diagnostics import BoltError, UsageError


def _print_json(data: dict) -> None:
    print(json.dumps(data, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


def cmd_explain(args) -> int:
    from boltc.explain import plan_json, render_plan
    from boltc.checkpoint import is_model_file
    from boltc.pipeline import build_info, cached_measurements, plan_spec, saved_plan

    if is_model_file(args.spec):
        the_plan = saved_plan(args.spec)
    else:
        measured = cached_measurements(args.spec, args.data) if args.data else None
        the_plan = plan_spec(args.spec, measured=measured)
    info = build_info(the_plan)
    if args.json:
        _print_json(plan_json(the_plan, info))
    else:
        print(render_plan(the_plan, info))
    return 0


def cmd_tune(args) -> int:
    from boltc.pipeline import tune_spec
    from boltc.tune import TOP_NEURONS

    found = tune_spec(args.spec, args.data, budget=args.budget, force=args.force,
                      progress=None if not args.json else False)
    if args.json:
        _print_json(found.to_json() | {"cached": found.cached})
        return 0
    if not found.measured:
        print(f"{args.spec}: no LSH-sparse layer, nothing to measure")
        return 0
    where = "from the cache" if found.cached else f"measured in {found.seconds:.1f} s on {found.sample_rows:,} rows"
    print(f"{args.spec}: {where}; recall = share of each row's {TOP_NEURONS} best-scoring neurons that its LSH "
          "candidates hold, labels = the same for its labels (both leave out the heavy rows, which sparse inference "
          "scores whatever the hashing); ms/batch = the layer's kernels per training batch")
    print(f"  {'layer':>5}  {'candidate':<22} {'family':<6} {'K':>3} {'L':>4} {'cap':>5} {'parts':>5} "
          f"{'recall':>7} {'labels':>7} {'ms/batch':>9} {'rebuild ms':>10} {'cost ms':>8}")
    for trial in found.trials:
        c = trial.config
        print(f"  {trial.layer:>5}  {trial.label:<22} {c.family:<6} {c.hashes:>3} {c.tables:>4} {c.bucket_cap:>5} "
              f"{c.update_parts:>5} {trial.recall:>7.3f} {trial.label_recall:>7.3f} {trial.batch_ms:>9.1f} "
              f"{trial.rebuild_ms:>10.0f} "
              f"{trial.cost_ms:>8.1f}")
    for index, chosen in sorted(found.measured.items()):
        print(f"  layer {index}: {chosen.family} K={chosen.hashes} L={chosen.tables} bucket cap {chosen.bucket_cap}, "
              f"{chosen.update_parts} update parts ({chosen.note})")
    return 0


def cmd_compile(args) -> int:
    from boltc.pipeline import compile_spec

    compiled = compile_spec(args.spec)
    library = compiled.library
    result = {"module": library.module_name, "key": library.key, "library": str(library.so_path),
              "c_source": str(library.c_path), "compiled": library.compiled,
              "compile_seconds": round(library.compile_seconds, 3), "seconds": round(compiled.seconds, 3)}
    if args.emit_c:
        out = Path(args.emit_c)
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{compiled.source.slug}.c"
        target.write_text(compiled.source.c_text)
        from boltc.resources import runtime_dir

        for header in sorted(runtime_dir().glob("*.h")):
            shutil.copyfile(header, out / header.name)
        result["emitted_c"] = str(target)
    if args.json:
        _print_json(result)
        return 0
    state = f"compiled in {library.compile_seconds:.2f} s" if library.compiled else "found in the cache"
    print(f"{args.spec}: {state}")
    print(f"  library   {library.so_path}")
    print(f"  C source  {library.c_path}")
    if args.emit_c:
        print(f"  emitted   {result['emitted_c']} (with the runtime headers beside it)")
    return 0


def peak_rss_mb() -> float:
    """This process's peak resident memory (ru_maxrss is KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _train_report(model, history, compile_seconds: float, test_metrics: dict, metrics_on: str,
                  skipped_rows: dict[str, int]) -> dict:
    choice = model.rate_choice
    return {
        "model": model.plan.model_name,
        "metrics": test_metrics,
        "metrics_on": metrics_on,
        "train_seconds": history.train_seconds,
        "samples_per_second": history.samples_per_second,
        "epochs": len(history.epochs),
        "epoch_seconds": [e.seconds for e in history.epochs],
        "epoch_loss": [e.loss for e in history.epochs],
        "epoch_metrics": [e.test for e in history.epochs],
        "validation": {"rows": history.validation_rows, "source": history.validation_source,
                       "metric": history.monitor, "epoch_metrics": [e.validation for e in history.epochs],
                       "best_epoch": history.best_epoch,
                       "best_metric": history.best_metric if history.best_epoch else None,
                       "stopped_early": history.stopped_early, "restored_epoch": history.restored_epoch,
                       "returns_to_best": history.returns_to_best,
                       "seconds": history.validation_seconds},
        "learning_rate": {"value": history.learning_rate,
                          "origin": "spec or command line" if choice is None and model.plan.learning_rate is not None
                          else ("measured" if choice is not None else "unmeasured default (tuning off)"),
                          **({"raced": choice.to_json(), "cached": choice.cached,
                              "seconds": 0.0 if choice.cached else choice.seconds} if choice is not None else {})},
        "sparse_check": model.sparse_check,
        "compile_seconds": compile_seconds,
        "tune_seconds": model.tuning.seconds if model.tuning is not None and not model.tuning.cached else 0.0,
        "threads": model.plan.threads,
        "peak_rss_mb": peak_rss_mb(),
        "skipped_rows": skipped_rows,
        **({"distributed": _distributed_report(history)} if hasattr(history, "exchanges") else {}),
    }


def _distributed_report(history) -> dict:
    return {"workers": history.workers, "threads_per_worker": history.threads_per_worker,
            "restarts": history.restarts,
            "exchanges": [{**dataclasses.asdict(record), "communication_share": record.communication_share}
                          for record in history.exchanges]}


def run_training(spec: str, train, test, *, epochs: int | str | None, batch_size: int | None,
                 learning_rate: float | None, save: str | None, as_json: bool, show_plan: bool = False,
                 skip_bad_rows: bool = False, validation: str | float | None = None, checkpoint: str | None = None,
                 resume: bool = False, distributed=None) -> dict:
    from boltc.data import Dataset
    from boltc.explain import render_plan
    from boltc.pipeline import load
    from boltc.streaming import Stream

    for path in (save, checkpoint):
        if path:
            _check_writable(path)
    started = time.perf_counter()
    model = _resumed(spec, checkpoint) if resume else load(spec)
    if distributed is not None:
        distributed = _distributed_settings(distributed, model, epochs, validation, checkpoint, batch_size)
    elif model.epochs_trained:
        epochs = _epochs_left(model, epochs)
        print(f"resuming from {checkpoint}: {model.epochs_trained} epochs trained, {epochs} to go",
              file=sys.stderr if as_json else sys.stdout)
    model.skip_bad_rows = skip_bad_rows
    compile_seconds = time.perf_counter() - started
    if show_plan and not as_json:
        print(render_plan(model.plan))
        print()
    log = sys.stderr if as_json else sys.stdout
    state = f"compiled in {model.library.compile_seconds:.2f} s" if model.library.compiled else "cached library"
    print(f"model '{model.plan.model_name}': {state}; {model.plan.threads} threads", file=log)
    loaded = time.perf_counter()
    train, test = (train if distributed else model.data_source(train)), model.data_source(test) if test else None
    train_set = train if isinstance(train, Stream) or distributed else \
        model.prepare_data(train, labelled=True, learn_labels=True, scaled=False)
    test_set = test if isinstance(test, Stream) or not test else model.prepare_data(test, labelled=True, scaled=False)
    print("data: " + ", ".join(f"{_rows_of(rows)} {what} rows" for rows, what in ((train_set, "training"),
                                                                                   (test_set, "test")) if rows)
          + f" read in {time.perf_counter() - loaded:.2f} s", file=log)
    if distributed is not None:
        model, history = _train_distributed(model, train, distributed, learning_rate, log)
    else:
        history = model.fit(train_set, epochs=epochs, validation=validation, batch_size=batch_size,
                            learning_rate=learning_rate, test=test_set, checkpoint=checkpoint)
    if test_set is not None and distributed is not None:
        for record in history.epochs[-1:]:  # the workers evaluated validation rows; the driver the test rows
            record.test = model.evaluate(test_set, progress=False)
    if model.tuning is not None:
        spent = "from the cache" if model.tuning.cached else f"measured in {model.tuning.seconds:.1f} s"
        for index, values in sorted(model.plan.measured.items()):
            print(f"layer {index} values {spent}: {values.note}", file=log)
    if model.rate_choice is not None:
        print(model.rate_choice.describe(), file=log)
    if history.validation_rows:
        print(f"validation: {history.validation_source}; {history.validation_rows:,} rows", file=log)
    for record in history.epochs:
        checked = "".join(f", validation {k} {v:.4f}" for k, v in record.validation.items())
        tested = "".join(f", test {k} {v:.4f}" for k, v in record.test.items())
        print(f"epoch {record.epoch}: loss {record.loss:.4f}, {record.seconds:.2f} s, "
              f"{record.samples / record.seconds if record.seconds else 0:,.0f} samples/s{checked}{tested}", file=log)
    if history.best_epoch:
        kept = f"; the model ends with epoch {history.restored_epoch}'s parameters" if history.restored_epoch else ""
        print(f"best epoch {history.best_epoch} (validation {history.monitor} {history.best_metric:.4f}) of "
              f"{len(history.epochs)} run" + (", stopped early" if history.stopped_early else "") + kept, file=log)
    check = model.sparse_check
    if check:
        taken = int(check.get("lsh_candidates", -1))
        candidates = "every LSH candidate there is room for" if taken < 0 else \
            f"{taken:,} LSH candidates besides the heavy rows"
        scored = f", {history.monitor} {check['sparse_metric']:.4f} against dense's {check['dense_metric']:.4f}" \
            if "sparse_metric" in check else ""
        too_few = "; too few: --sparse scores every output, at dense speed" if check.get("scores_all") else ""
        print(f"sparse inference: dense inference's top-1 among its candidates for {check['dense_top1_recall']:.1%} "
              f"of {int(check['rows']):,} validation rows, {check['mean_candidates']:,.0f} per row ({candidates})"
              f"{scored}{too_few}", file=log)
    final = next((e for e in history.epochs if e.epoch == history.restored_epoch), history.epochs[-1]) \
        if history.epochs else None
    if test_set is not None and final is not None:
        results, metrics_on = final.test, "test"
    else:
        evaluated, metrics_on = (test_set, "test") if test_set is not None else (train_set, "train")
        results = model.evaluate(evaluated)
    print(f"{metrics_on} metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()), file=log)
    if save:
        model.save(save)
        print(f"saved {save}", file=log)
    skipped = {what: rows.skipped_rows for rows, what in ((train_set, "train"), (test_set, "test"))
               if isinstance(rows, Dataset)}
    report = _train_report(model, history, compile_seconds, results, metrics_on, skipped)
    if as_json:
        _print_json(report)
    return report


def _rows_of(data) -> str:
    """How many rows a data set holds, for the log (a stream's are counted as they are read)."""
    from boltc.streaming import Stream

    if isinstance(data, Stream):
        return f"streamed ({data.chunk_bytes >> 20} MB chunks)"
    if isinstance(data, (str, Path)):
        return "sharded (each worker reads its own)"
    return f"{data.n_rows:,}"


def _distributed_settings(args, model, epochs, validation, checkpoint: str | None, batch_size: int | None):
    """--workers and its options as the settings of a distributed run, refusing what it does not do."""
    from boltc import distributed
    from boltc.diagnostics import UsageError

    wanted = model.plan.epochs if epochs is None else epochs
    if wanted is None or wanted == "auto":
        raise UsageError("--workers trains a given number of epochs: give --epochs N (epochs=auto is not "
                         "distributed yet)")
    if validation is not None and not isinstance(validation, (str, Path)):
        raise UsageError("--workers evaluates a validation file after every epoch: give --validation FILE, not a "
                         "fraction")
    return distributed.Settings(workers=args.workers, epochs=int(wanted), threads_per_worker=args.threads_per_worker,
                                address=args.address, wire=args.wire, validation=validation, checkpoint=checkpoint,
                                batch_size=batch_size, batches_per_step=args.exchange_every)


def _train_distributed(model, train, settings, learning_rate: float | None, log):
    from boltc import distributed

    if learning_rate is not None:
        model.learning_rate = learning_rate
    where = settings.address or "a local Ray instance"
    print(f"training on {settings.workers} workers of {settings.threads_per_worker} threads ({where})", file=log)
    trained, history = distributed.train(model, train, settings)
    for record in history.exchanges:
        print(f"epoch {record.epoch} exchange: {record.bytes_sent / 1e6:.2f} MB sent per worker and step, "
              f"{record.touched_bytes / 1e6:.2f} MB of touched rows applied; "
              f"{record.communication_share:.0%} of a step communicating", file=log)
    if history.restarts:
        print(f"{history.restarts} restart(s) from a checkpoint after a worker died", file=log)
    return trained, history


def _check_writable(path: str) -> None:
    """Refuse an unwritable --save target before training, not after it."""
    folder = Path(path).resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"cannot save the model to {path}: {folder} is not a writable folder")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _epochs(text: str) -> int | str:
    return "auto" if text == "auto" else _positive(text)


def _validation(text: str) -> str | float:
    try:
        share = float(text)
    except ValueError:
        return text
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(f"a fraction must be between 0 and 1, got {share}")
    return share


def _text_file(args, path: str | None):
    """`path` with the command line's --delimiter / --quoting, where given, or as a stream (--stream)."""
    if path is not None and getattr(args, "stream", False):
        from boltc.streaming import Stream

        return Stream(path, chunk_bytes=args.chunk_mb << 20)
    if path is None or (args.delimiter is None and args.quoting is None):
        return path
    from boltc.columns import TextFile

    return TextFile(path, delimiter=args.delimiter, quoting=args.quoting)


def _resumed(spec: str, checkpoint: str | None):
    """The model of a stopped job's checkpoint (the spec's own, untrained, where the job wrote none yet)."""
    from boltc.diagnostics import UsageError
    from boltc.pipeline import load, load_model

    if not checkpoint:
        raise UsageError("--resume continues from the model file --checkpoint names: give --checkpoint PATH")
    if not Path(checkpoint).exists():
        return load(spec)
    model = load_model(checkpoint)
    if model.plan.spec_source != Path(spec).read_text(encoding="utf-8"):
        raise UsageError(f"{checkpoint} was trained from another version of {spec}: resume with the spec it was "
                         "trained from, or start afresh without --resume")
    return model


def _epochs_left(model, epochs: int | str | None) -> int | str:
    """The epochs a resumed job has left of its count (epochs=auto starts its patience afresh: it is not exact)."""
    wanted = model.plan.epochs if epochs is None else epochs
    if wanted is None or wanted == "auto":
        return "auto"
    return max(0, int(wanted) - model.epochs_trained)


def cmd_train(args) -> int:
    distributed = args if args.workers or args.address else None
    if distributed is not None:
        args.workers = args.workers or 1
    run_training(args.spec, args.train if distributed else _text_file(args, args.train), _text_file(args, args.test),
                 epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, save=args.save,
                 as_json=args.json, skip_bad_rows=args.skip_bad_rows, checkpoint=args.checkpoint, resume=args.resume,
                 validation=_text_file(args, args.validation) if isinstance(args.validation, str) else args.validation,
                 distributed=distributed)
    return 0


def cmd_evaluate(args) -> int:
    from boltc.pipeline import load_model

    model = load_model(args.model)
    model.skip_bad_rows = args.skip_bad_rows
    wanted = tuple(args.metrics.split(",")) if args.metrics else None
    results = model.evaluate(_text_file(args, args.data), wanted, sparse=args.sparse)
    rows, skipped = model.last_eval_rows
    if args.json:
        _print_json({"metrics": results, "eval_seconds": model.last_eval_seconds,
                     "samples_per_second": rows / model.last_eval_seconds if model.last_eval_seconds
                     else 0.0, "rows": rows, "skipped_rows": skipped, "sparse": args.sparse,
                     # measured after training on its validation rows: how often sparse inference scores dense
                     # inference's best output
                     "sparse_check": model.sparse_check,
                     "peak_rss_mb": peak_rss_mb()})
    else:
        for name, value in results.items():
            print(f"{name}\t{value:.6f}")
    return 0


def cmd_predict(args) -> int:
    from boltc.pipeline import load_model

    model = load_model(args.model)
    out = sys.stdout
    names = model.label_names
    for ids, scores in model.predict_chunks(_text_file(args, args.data), top_k=args.top_k, sparse=args.sparse):
        for row_ids, row_scores in zip(ids.tolist(), scores.tolist()):
            if names is None:
                out.write(" ".join(f"{i}:{s:.6g}" for i, s in zip(row_ids, row_scores)) + "\n")
            else:  # label names may hold blanks: tabs between them, and outputs no training row had left out
                out.write("\t".join(f"{names[i]}:{s:.6g}" for i, s in zip(row_ids, row_scores)
                                     if i < len(names)) + "\n")
    return 0


def cmd_serve(args) -> int:
    from boltc.serve import ServeOptions, serve

    options = ServeOptions(host=args.host, port=args.port, sparse=args.sparse, max_batch=args.max_batch,
                           max_wait_ms=args.max_wait_ms, allow_history_updates=args.allow_history_updates,
                           threads=args.threads)
    print(f"serving {args.model} on http://{args.host}:{args.port} (POST /predict; GET /health, /metadata, "
          "/metrics); Ctrl-C stops", file=sys.stderr)
    serve(args.model, options)
    return 0


def cmd_export(args) -> int:
    from boltc.pipeline import load_model

    model = load_model(args.model)
    if args.inference_only:
        model.save(args.out, inference_only=True)
        print(f"{args.out}: model '{model.plan.model_name}' for inference only "
              f"({os.path.getsize(args.out) / 1e6:,.1f} MB; {os.path.getsize(args.model) / 1e6:,.1f} MB with "
              "its optimizer state)")
        return 0
    from boltc.export import export_library

    written = export_library(model, args.out)
    print(f"{args.out}: C inference library of model '{model.plan.model_name}' ({', '.join(written)}); build it "
          f"with `make -C {args.out}`")
    return 0


# not offered by predict: its output has a line per input row, and a left-out row would shift every later one
SKIP_HELP = ("leave out the rows of a data file that break its format (CSV/TSV: records with a bad field or broken "
             "quoting), count them and warn, instead of stopping at the first")


def _delimiter(text: str) -> str:
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
    return named.get(text, text)


def _add_streaming(p) -> None:
    p.add_argument("--stream", action="store_true",
                   help="XMC text files: read the data in chunks rather than whole (what happens anyway where it "
                        "exceeds the memory budget, BOLTC_MEMORY_BUDGET or half the machine's memory)")
    p.add_argument("--chunk-mb", type=int, default=64, metavar="MB",
                   help="with --stream: megabytes of text per chunk (default: %(default)s)")


def _add_text_format(p) -> None:
    p.add_argument("--delimiter", type=_delimiter, metavar="CHAR",
                   help="CSV/TSV files: the character between fields (tab, comma, ';', '|', ...); default: a tab for "
                        ".tsv files, otherwise the one the header line holds most")
    p.add_argument("--quoting", choices=("csv", "tsv"),
                   help="CSV/TSV files: csv = RFC 4180 double quotes; tsv = none, quotes are ordinary characters and "
                        "\\t \\n \\r \\\\ are escapes; default: tsv for tab-separated files, otherwise csv")

SPARSE_HELP = "score only the heavy rows and LSH candidates of sparse layers"


def cmd_demo(args) -> int:
    from boltc.demo import write_demo_files

    with tempfile.TemporaryDirectory(prefix="boltc-demo-") as tmp:
        spec, train, test = write_demo_files(Path(tmp))
        run_training(str(spec), str(train), str(test), epochs=args.epochs, batch_size=None, learning_rate=None,
                     save=None, as_json=args.json, show_plan=True)
    return 0


def _command(commands, name: str, run, description: str) -> argparse.ArgumentParser:
    """A subcommand, to add its arguments to; main runs `run` on them."""
    command = commands.add_parser(name, help=description)
    command.set_defaults(run=run)
    return command


def _parser() -> argparse.ArgumentParser:
    from boltc.tune import DEFAULT_BUDGET_SECONDS

    parser = argparse.ArgumentParser(prog="boltc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"boltc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(commands, "compile", cmd_compile, "compile a spec (or find it in the cache) and say where it went")
    p.add_argument("spec")
    p.add_argument("--emit-c", metavar="DIR", help="also write the generated C and the runtime headers to DIR")
    p.add_argument("--json", action="store_true")

    p = _command(commands, "explain", cmd_explain, "print the plan: shapes, sizes, FLOPs, threads, kernels")
    p.add_argument("spec", help="a .bolt spec, or a saved model (its plan with what it learned from its data)")
    p.add_argument("--data", metavar="FILE", help="show the values boltc tune measured on this data (if cached)")
    p.add_argument("--json", action="store_true")

    p = _command(commands, "tune", cmd_tune, "measure the sparse layers' hashing and kernel values on a data file")
    p.add_argument("spec")
    p.add_argument("--data", required=True, metavar="FILE", help="labelled training data (a sample is used)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_SECONDS, metavar="SECONDS",
                   help="seconds for candidates after the formula's (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="measure again even when a result is cached")
    p.add_argument("--json", action="store_true")

    p = _command(commands, "train", cmd_train, "train a spec on a data file")
    p.add_argument("spec")
    p.add_argument("--train", required=True, metavar="FILE")
    p.add_argument("--test", metavar="FILE")
    p.add_argument("--validation", type=_validation, metavar="FILE|FRACTION",
                   help="the rows training chooses on (best epoch, early stopping): a file, or a fraction of the "
                        "training rows to hold out (default: the spec's; epochs=auto holds out 5%%)")
    p.add_argument("--epochs", type=_epochs, help="a count, or auto (default: the spec's)")
    p.add_argument("--batch-size", type=_positive)
    p.add_argument("--learning-rate", type=float, help="default: the spec's, or raced on the data (auto)")
    p.add_argument("--save", metavar="PATH", help="write the trained model here")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="write the model here after every epoch (atomically), for --resume")
    p.add_argument("--resume", action="store_true",
                   help="go on from the --checkpoint a stopped job left: the epochs it had left, as it would have")
    p.add_argument("--json", action="store_true", help="end with one JSON line of metrics and timings")
    p.add_argument("--skip-bad-rows", action="store_true", help=SKIP_HELP)
    p.add_argument("--workers", type=_positive, metavar="N",
                   help="train data-parallel on N workers on Ray (pip install 'boltc[distributed]'), each reading its "
                        "share of --train and exchanging only the rows a step touched")
    p.add_argument("--address", metavar="auto|ray://HOST:PORT",
                   help="the Ray cluster to run the workers on (default: a local instance started for the job)")
    p.add_argument("--threads-per-worker", type=_positive, default=1, metavar="T")
    p.add_argument("--wire", choices=("fp32", "bf16"), default="fp32",
                   help="gradient rows on the wire between workers: fp32, or bf16 (half the bytes, rounded)")
    p.add_argument("--exchange-every", type=_positive, default=1, metavar="K",
                   help="with --workers: accumulate the gradients of K batches per exchange and update once for "
                        "them (K times fewer exchanges; an update of K batches' rows)")
    _add_text_format(p)
    _add_streaming(p)

    p = _command(commands, "evaluate", cmd_evaluate, "metrics of a saved model on a data file")
    p.add_argument("model")
    p.add_argument("--data", required=True, metavar="FILE")
    p.add_argument("--metrics", help="comma-separated, e.g. accuracy,precision@5 (default: the spec's)")
    p.add_argument("--skip-bad-rows", action="store_true", help=SKIP_HELP)
    p.add_argument("--sparse", action="store_true", help=SPARSE_HELP)
    p.add_argument("--json", action="store_true")
    _add_text_format(p)
    _add_streaming(p)

    p = _command(commands, "predict", cmd_predict, "top-k output ids of a saved model for each row of a data file")
    p.add_argument("model")
    p.add_argument("--data", required=True, metavar="FILE")
    p.add_argument("--top-k", type=_positive, default=1)
    p.add_argument("--sparse", action="store_true", help=SPARSE_HELP)
    _add_text_format(p)
    _add_streaming(p)

    p = _command(commands, "serve", cmd_serve, "serve a saved model over HTTP: POST /predict, GET /health, "
                 "/metadata, /metrics (pip install 'boltc[serve]')")
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    inference = p.add_mutually_exclusive_group()
    inference.add_argument("--sparse", dest="sparse", action="store_true", default=None,
                           help=SPARSE_HELP + " (the default where the model has an LSH-sparse output)")
    inference.add_argument("--dense", dest="sparse", action="store_false", help="score every output")
    p.add_argument("--max-batch", type=_positive, default=256, metavar="ROWS",
                   help="rows of concurrent requests scored in one call, at most (default: %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=2.0, metavar="MS",
                   help="how long a request waits for others to join its batch, at most (default: %(default)s)")
    p.add_argument("--allow-history-updates", action="store_true",
                   help="let requests add their rows to history inputs' per-key state (\"update_history\": true)")
    p.add_argument("--threads", type=_positive, help="threads per batch call (default: the model's)")

    p = _command(commands, "export", cmd_export, "a saved model for deployment: a C inference library that needs "
                 "only a C compiler, or (--inference-only) a model file without optimizer state")
    p.add_argument("model")
    p.add_argument("--out", required=True, metavar="DIR|FILE", help="the library's directory, or the model file")
    p.add_argument("--inference-only", action="store_true",
                   help="write a model file without optimizer state and with its LSH tables, which load_model, "
                        "predict and serve map instead of reading (it cannot be trained)")

    p = _command(commands, "demo", cmd_demo, "compile, train and evaluate the bundled example in under a minute")
    p.add_argument("--epochs", type=_positive)
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except BoltError as error:
        print(error.render(color=sys.stderr.isatty()), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output went away (boltc predict ... | head): nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
        return 0


if __name__ == "__main__":
    sys.exit(main())
