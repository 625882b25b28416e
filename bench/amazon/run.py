#!/usr/bin/env python3
"""Amazon-670K-shaped synthetic benchmark: boltc (LSH-sparse softmax) vs PyTorch (full softmax), CPU.

One run, one system at a time, each step a subprocess with OMP_NUM_THREADS = --threads:

1. data: ``generate.py`` (skipped when up to date); the first --eval-rows test rows are copied to
   ``test_first<N>.txt`` so that every precision and inference number is measured on the same rows;
2. boltc: ``boltc train specs/amazon670k.bolt --train T --test E --save MODEL --json``;
3. boltc inference: ``boltc evaluate MODEL --data E --json`` and the same with ``--sparse``;
4. boltc batch-1 latency: ``boltc_latency.py`` (``model.predict`` on one scipy CSR row, dense and sparse);
5. PyTorch: ``bench/peers/torch_xmc.py`` (full softmax) with ``--time-budget`` = boltc's train_seconds (the
   same training time; --torch-budget overrides, and applies when boltc failed), the same threads and batch
   size, evaluated at boltc's epoch lengths.

Peak RSS of every step is taken from the kernel (``os.wait4`` rusage of that child, ru_maxrss).
A failing step is recorded with its error and the rest still runs. Writes results.json,
results.md and one <step>.log per step into --out. boltc's model file (about 1.2 GB with its
Adam state) is deleted at the end unless --keep-model.

Usage (from the repository root)::

    python bench/amazon/run.py [--train-rows 100000] [--test-rows 20000] [--threads 2] [--epochs N] \
        [--eval-rows 5000] [--out bench/results/amazon]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import generate  # noqa: E402  (sibling script)
from common import find_boltc, machine_info, tail  # noqa: E402

SPEC = REPO_ROOT / "specs" / "amazon670k.bolt"
TORCH_PEER = REPO_ROOT / "bench" / "peers" / "torch_xmc.py"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "amazon"
FALLBACK_BUDGET = 600.0

# Used only when specs/amazon670k.bolt does not exist (yet).
FALLBACK_SPEC = """\
# Temporary copy written by bench/amazon/run.py: specs/amazon670k.bolt was missing.
model amazon670k {
    input  words:  sparse[135909]
    target labels: multilabel[670091]

    hidden = dense(words, 128, activation=relu)
    scores = dense(hidden, 670091, activation=softmax, sparsity=0.005)

    loss      cross_entropy(scores, labels)
    optimizer adam(learning_rate=0.0001)
    train     { batch_size = 256, epochs = 2 }
    metrics   precision@1, precision@5
}
"""


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def run_step(name: str, cmd: list[str] | None, threads: int, out_dir: Path, timeout: float,
             missing_msg: str = "") -> dict:
    """Run one command as a child; return a record with its last-line JSON (under "result"), its exit status,
    wall time and peak RSS (this child's own rusage, via os.wait4)."""
    record: dict = {"step": name, "ok": False, "command": cmd}
    if cmd is None:
        record["error"] = missing_msg or f"{name}: command not found"
        print(f"[{name}] skipped: {record['error']}", flush=True)
        return record

    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    record["loadavg_before"] = list(os.getloadavg())
    print(f"[{name}] $ {shlex.join(cmd)}  (OMP_NUM_THREADS={threads})", flush=True)
    out_path, err_path = out_dir / f".{name}.stdout", out_dir / f".{name}.stderr"
    started = time.perf_counter()
    with open(out_path, "w", encoding="utf-8") as out_fh, open(err_path, "w", encoding="utf-8") as err_fh:
        try:
            proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out_fh, stderr=err_fh)
        except OSError as exc:
            record["error"] = f"cannot start: {exc}"
            print(f"[{name}] failed: {record['error']}", flush=True)
            return record
        lock = threading.Lock()
        state = {"reaped": False, "killed": False}

        def kill() -> None:
            with lock:
                if not state["reaped"]:
                    state["killed"] = True
                    os.kill(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            # Reap the child ourselves: wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the
            # maximum over every child so far).
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except ChildProcessError:
                status, usage = None, None
        except BaseException:
            kill()
            raise
        finally:
            with lock:
                state["reaped"] = True
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else -1
    record["wall_seconds"] = time.perf_counter() - started
    record["returncode"] = proc.returncode
    if usage is not None:
        record["peak_rss_mb"] = usage.ru_maxrss / 1024.0          # Linux: KiB
        record["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    stdout = out_path.read_text(encoding="utf-8", errors="replace")
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    out_path.unlink()
    err_path.unlink()
    log_path = out_dir / f"{name}.log"
    log_path.write_text(f"$ {shlex.join(cmd)}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}", encoding="utf-8")
    record["log"] = _rel(log_path)

    if state["killed"]:
        record["error"] = f"timed out after {timeout:.0f}s"
        record["stderr_tail"] = tail(stderr)
        print(f"[{name}] failed: {record['error']}", flush=True)
        return record
    if proc.returncode != 0:
        last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
        record["error"] = f"exit status {proc.returncode}" + (f": {last}" if last else "")
        record["stderr_tail"] = tail(stderr)
        print(f"[{name}] failed: exit status {proc.returncode}\n{tail(stderr)}", flush=True)
        return record
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        record["error"] = "last stdout line is not a JSON object"
        record["stdout_tail"] = tail(stdout)
        print(f"[{name}] failed: {record['error']}", flush=True)
        return record
    record["ok"] = True
    record["result"] = result
    rss = f", peak RSS {record['peak_rss_mb']:,.0f} MB" if "peak_rss_mb" in record else ""
    print(f"[{name}] done in {record['wall_seconds']:.1f}s{rss}", flush=True)
    return record


def write_head(source: Path, target: Path, n_rows: int) -> Path:
    """Copy the header (with N_ROWS = n_rows) and the first n_rows rows of an XC text file, unless up to date."""
    with open(source, "rb") as fh:
        header = fh.readline().split()
        if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
            with open(target, "rb") as existing:
                if existing.readline().split() == [str(n_rows).encode(), header[1], header[2]]:
                    return target
        tmp = target.with_name(target.name + ".partial")
        with open(tmp, "wb") as out:
            out.write(b"%d %s %s\n" % (n_rows, header[1], header[2]))
            for _ in range(n_rows):
                line = fh.readline()
                if not line:
                    raise ValueError(f"{source} has fewer than {n_rows} rows")
                out.write(line)
    os.replace(tmp, target)
    return target


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def boltc_curve(train: dict, n_train: int) -> list[dict]:
    """Per-epoch (cumulative train seconds, samples, P@1, P@5) from boltc's train JSON."""
    seconds = train.get("epoch_seconds") or []
    metrics = train.get("epoch_metrics") or []
    curve, total = [], 0.0
    for epoch, (secs, found) in enumerate(zip(seconds, metrics), start=1):
        total += float(secs)
        curve.append({"train_seconds": total, "samples": epoch * n_train,
                      "precision@1": _num((found or {}).get("precision@1")),
                      "precision@5": _num((found or {}).get("precision@5"))})
    return curve


def summarise(steps: dict, n_train: int) -> dict:
    """The table's numbers per system (None where unknown) and the ratios."""
    def result(step):
        rec = steps.get(step) or {}
        return rec.get("result") if rec.get("ok") else None

    train = result("boltc_train") or {}
    dense = result("boltc_evaluate_dense") or {}
    sparse = result("boltc_evaluate_sparse") or {}
    latency = result("boltc_latency") or {}
    metrics = train.get("metrics") if isinstance(train.get("metrics"), dict) else {}
    bolt = {
        "samples_per_second": _num(train.get("samples_per_second")),
        "train_seconds": _num(train.get("train_seconds")),
        "samples_seen": (int(train["epochs"]) * n_train if _num(train.get("epochs")) is not None else None),
        "epochs": _num(train.get("epochs")),
        "precision@1": _num(metrics.get("precision@1")),
        "precision@5": _num(metrics.get("precision@5")),
        "inference_rows_per_second_dense": _num(dense.get("samples_per_second")),
        "inference_rows_per_second_sparse": _num(sparse.get("samples_per_second")),
        "eval_precision@1_dense": _num((dense.get("metrics") or {}).get("precision@1")),
        "eval_precision@1_sparse": _num((sparse.get("metrics") or {}).get("precision@1")),
        "eval_precision@5_dense": _num((dense.get("metrics") or {}).get("precision@5")),
        "eval_precision@5_sparse": _num((sparse.get("metrics") or {}).get("precision@5")),
        "latency_ms_batch1_dense": _num(latency.get("latency_ms_batch1_dense")),
        "latency_ms_batch1_sparse": _num(latency.get("latency_ms_batch1_sparse")),
        "latency_ms_batch1_dense_prepared": _num(latency.get("latency_ms_batch1_dense_prepared")),
        "latency_ms_batch1_sparse_prepared": _num(latency.get("latency_ms_batch1_sparse_prepared")),
        "peak_rss_mb": _num((steps.get("boltc_train") or {}).get("peak_rss_mb")) if train else None,
        "peak_rss_mb_reported": _num(train.get("peak_rss_mb")),
        "compile_seconds": _num(train.get("compile_seconds")),
        "curve": boltc_curve(train, n_train) if train else [],
    }
    torch = result("pytorch") or {}
    final = torch.get("final") or {}
    peer = {
        "samples_per_second": _num(torch.get("samples_per_second")),
        "train_seconds": _num(torch.get("train_seconds")),
        "samples_seen": torch.get("samples_seen"),
        "epochs": _num(torch.get("epochs")),
        "precision@1": _num(final.get("precision@1")),
        "precision@5": _num(final.get("precision@5")),
        "inference_rows_per_second_dense": _num(torch.get("inference_rows_per_second")),
        "inference_rows_per_second_sparse": None,
        "latency_ms_batch1_dense": _num(torch.get("latency_ms_batch1")),
        "latency_ms_batch1_sparse": None,
        "peak_rss_mb": (_num((steps.get("pytorch") or {}).get("peak_rss_mb")) or _num(torch.get("peak_rss_mb")))
        if torch else None,
        "curve": torch.get("curve") or [],
    }

    def ratio(a, b):
        return a / b if a is not None and b else None

    return {
        "boltc": bolt,
        "pytorch": peer,
        "ratios": {
            "boltc_over_pytorch_samples_per_second": ratio(bolt["samples_per_second"], peer["samples_per_second"]),
            "boltc_sparse_over_dense_inference": ratio(bolt["inference_rows_per_second_sparse"],
                                                        bolt["inference_rows_per_second_dense"]),
            "boltc_sparse_over_pytorch_inference": ratio(bolt["inference_rows_per_second_sparse"],
                                                          peer["inference_rows_per_second_dense"]),
            "boltc_dense_over_pytorch_inference": ratio(bolt["inference_rows_per_second_dense"],
                                                         peer["inference_rows_per_second_dense"]),
        },
    }


def markdown(summary: dict, steps: dict, machine: dict, setup: dict) -> str:
    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    b, p, r = summary["boltc"], summary["pytorch"], summary["ratios"]
    lines = [
        f"Amazon-670K-shaped synthetic data: {setup['train_rows']:,} training rows, metrics and inference on the "
        f"first {setup['eval_rows']:,} test rows; {machine['threads']} thread(s), batch {setup['batch_size']}, "
        f"{machine.get('cpu_model') or 'unknown CPU'} (nproc {machine.get('nproc')}), {machine['date']}",
        "",
        "| system | train samples/s | train s | samples seen | P@1 | P@5 | infer rows/s dense | infer rows/s sparse "
        "| batch-1 ms dense | batch-1 ms sparse | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, s in (("boltc (LSH-sparse softmax)", b), ("PyTorch full softmax", p)):
        seen = s["samples_seen"]
        lines.append(
            f"| {label} | {fmt(s['samples_per_second'], ',.0f')} | {fmt(s['train_seconds'], '.1f')} | "
            f"{'n/a' if seen is None else format(seen, ',')} | {fmt(s['precision@1'], '.4f')} | "
            f"{fmt(s['precision@5'], '.4f')} | {fmt(s['inference_rows_per_second_dense'], ',.0f')} | "
            f"{fmt(s['inference_rows_per_second_sparse'], ',.0f')} | {fmt(s['latency_ms_batch1_dense'], '.2f')} | "
            f"{fmt(s['latency_ms_batch1_sparse'], '.2f')} | {fmt(s['peak_rss_mb'], ',.0f')} |")
    lines += [
        "",
        f"- boltc / PyTorch training samples/s: {fmt(r['boltc_over_pytorch_samples_per_second'], ',.1f')}",
        f"- boltc sparse / dense inference rows/s: {fmt(r['boltc_sparse_over_dense_inference'], '.2f')}; "
        f"boltc sparse / PyTorch inference rows/s: {fmt(r['boltc_sparse_over_pytorch_inference'], ',.1f')}",
    ]
    if b["eval_precision@1_sparse"] is not None:
        lines.append(f"- boltc precision with sparse inference: P@1 {b['eval_precision@1_sparse']:.4f}, "
                     f"P@5 {fmt(b['eval_precision@5_sparse'], '.4f')} (dense: "
                     f"P@1 {fmt(b['eval_precision@1_dense'], '.4f')}, P@5 {fmt(b['eval_precision@5_dense'], '.4f')})")
    if b["latency_ms_batch1_dense_prepared"] is not None or b["latency_ms_batch1_sparse_prepared"] is not None:
        lines.append(f"- boltc batch-1 latency from a prepared Dataset (no per-call scipy conversion): dense "
                     f"{fmt(b['latency_ms_batch1_dense_prepared'], '.2f')} ms, sparse "
                     f"{fmt(b['latency_ms_batch1_sparse_prepared'], '.2f')} ms")
    if b["compile_seconds"] is not None:
        lines.append(f"- boltc compile: {b['compile_seconds']:.2f} s (not in train s)")
    if b["peak_rss_mb_reported"] is not None:
        lines.append(f"- boltc's own peak RSS report: {b['peak_rss_mb_reported']:,.0f} MB")
    lines.append(f"- PyTorch time budget: {fmt(setup.get('torch_budget'), '.1f')} s "
                 f"({setup.get('torch_budget_source', 'n/a')}); train s overruns it by at most one batch")
    for name in ("boltc", "pytorch"):
        curve = summary[name]["curve"]
        if curve:
            points = "; ".join(f"{pt['train_seconds']:.0f}s/{pt['samples']:,}: P@1 {fmt(pt['precision@1'], '.4f')} "
                               f"P@5 {fmt(pt['precision@5'], '.4f')}" for pt in curve)
            lines.append(f"- {name} curve (train s / samples): {points}")
    errors = [f"- {name} failed: {rec['error']}" for name, rec in steps.items() if rec.get("error")]
    if errors:
        lines += ["", *errors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Amazon-670K-shaped benchmark: boltc vs PyTorch full softmax (CPU)")
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--test-rows", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2, help="OpenMP / torch threads (default 2)")
    parser.add_argument("--epochs", type=int, default=None, help="boltc epochs (default: the spec's)")
    parser.add_argument("--batch-size", type=int, default=256, help="both systems (default 256, the spec's)")
    parser.add_argument("--eval-rows", type=int, default=5000,
                        help="metrics and inference timings on the first N test rows (default 5000)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (generate.py --seed)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default bench/results/amazon)")
    parser.add_argument("--data", type=Path, default=generate.DEFAULT_OUT,
                        help="data folder (default bench/data/amazon)")
    parser.add_argument("--spec", type=Path, default=SPEC, help="boltc spec (default specs/amazon670k.bolt)")
    parser.add_argument("--boltc", default=None, help="boltc command (default: beside this Python, else PATH)")
    parser.add_argument("--torch-budget", type=float, default=None,
                        help=f"PyTorch training seconds (default: boltc's train_seconds, {FALLBACK_BUDGET:.0f} "
                             "if boltc failed)")
    parser.add_argument("--timeout", type=float, default=4 * 3600.0, help="per-step time limit in seconds")
    parser.add_argument("--keep-model", action="store_true",
                        help="keep boltc's saved model (about 1.2 GB: weights and Adam state) in --out")
    args = parser.parse_args(argv)
    if min(args.train_rows, args.test_rows, args.threads, args.batch_size, args.eval_rows) < 1 or \
            (args.epochs is not None and args.epochs < 1):
        parser.error("row counts, --threads, --batch-size, --eval-rows and --epochs must be >= 1")

    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = generate.generate(args.data.resolve(), args.train_rows, args.test_rows, seed=args.seed)
    train_path, test_path = data["paths"]["train"], data["paths"]["test"]
    eval_rows = min(args.eval_rows, args.test_rows)
    eval_path = test_path if eval_rows == args.test_rows else \
        write_head(test_path, test_path.with_name(f"test_first{eval_rows}.txt"), eval_rows)
    train, test = str(train_path), str(eval_path)
    machine = machine_info(args.threads)
    setup = {"train_rows": args.train_rows, "test_rows": args.test_rows, "eval_rows": eval_rows,
             "batch_size": args.batch_size, "epochs_requested": args.epochs, "train_file": _rel(train_path),
             "eval_file": _rel(eval_path)}
    steps: dict[str, dict] = {}

    spec = args.spec.resolve()
    temp_dir = None
    if not spec.is_file():
        temp_dir = tempfile.mkdtemp(prefix="boltc_amazon_spec_")
        spec = Path(temp_dir) / "amazon670k.bolt"
        spec.write_text(FALLBACK_SPEC, encoding="utf-8")
        print(f"run.py: {args.spec} is missing; using a temporary copy {spec}", flush=True)
        setup["spec_note"] = f"{args.spec} was missing: used a temporary copy of the expected spec"
    setup["spec"] = _rel(spec)
    model_path = out_dir / "boltc_model.boltm"
    if model_path.exists():
        model_path.unlink()

    boltc = find_boltc(args.boltc)
    missing = "boltc command not found (install the package: pip install -e .)"
    train_cmd = None if boltc is None else boltc + [
        "train", str(spec), "--train", train, "--test", test, "--batch-size", str(args.batch_size),
        "--save", str(model_path), "--json", *(["--epochs", str(args.epochs)] if args.epochs else [])]
    steps["boltc_train"] = run_step("boltc_train", train_cmd, args.threads, out_dir, args.timeout, missing)
    trained = steps["boltc_train"]["ok"] and model_path.is_file()
    if steps["boltc_train"]["ok"] and not model_path.is_file():
        steps["boltc_train"]["error"] = f"no model file at {model_path}"
    no_model = "boltc training failed: no model to evaluate"
    for mode, extra in (("dense", []), ("sparse", ["--sparse"])):
        cmd = boltc + ["evaluate", str(model_path), "--data", test, "--json", *extra] if boltc and trained else None
        steps[f"boltc_evaluate_{mode}"] = run_step(f"boltc_evaluate_{mode}", cmd, args.threads, out_dir,
                                                   args.timeout, missing if boltc is None else no_model)
    cmd = [sys.executable, str(HERE / "boltc_latency.py"), "--model", str(model_path), "--data", test] \
        if trained else None
    steps["boltc_latency"] = run_step("boltc_latency", cmd, args.threads, out_dir, args.timeout,
                                      missing if boltc is None else no_model)

    bolt_train = steps["boltc_train"].get("result") or {}
    if args.torch_budget is not None:
        budget, source = args.torch_budget, "--torch-budget"
    elif _num(bolt_train.get("train_seconds")):
        budget, source = float(bolt_train["train_seconds"]), "boltc's train_seconds"
    else:
        budget, source = FALLBACK_BUDGET, "fallback: boltc gave no train_seconds"
    setup["torch_budget"], setup["torch_budget_source"] = budget, source
    torch_cmd = [sys.executable, str(TORCH_PEER), "--train", train, "--test", test,
                 "--threads", str(args.threads), "--batch-size", str(args.batch_size), "--eval-rows", str(eval_rows),
                 "--time-budget", f"{budget:.3f}", "--json"]
    epoch_seconds = bolt_train.get("epoch_seconds") or []
    if len(epoch_seconds) > 1 and args.torch_budget is None:
        # Evaluate PyTorch at boltc's epoch boundaries too, so the two curves share their time points.
        torch_cmd += ["--eval-every", f"{sum(epoch_seconds) / len(epoch_seconds):.3f}"]
    steps["pytorch"] = run_step("pytorch", torch_cmd, args.threads, out_dir, args.timeout + budget)

    if temp_dir:
        shutil.rmtree(temp_dir, ignore_errors=True)
    if model_path.exists():
        setup["model_bytes"] = model_path.stat().st_size
        if args.keep_model:
            setup["model_file"] = _rel(model_path)
        else:
            model_path.unlink()
    summary = summarise(steps, args.train_rows)
    table = markdown(summary, steps, machine, setup)
    results = {"benchmark": "amazon670k_synthetic", "machine": machine, "setup": setup,
               "data": data["meta"], "steps": steps, "summary": summary}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out_dir / "results.md").write_text(table, encoding="utf-8")
    print()
    print(table, end="")
    print(f"\nwrote {out_dir / 'results.json'} and {out_dir / 'results.md'}")
    return 0 if any(rec.get("ok") for rec in steps.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
