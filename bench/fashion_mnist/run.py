#!/usr/bin/env python3
"""Fashion-MNIST benchmark: boltc vs PyTorch on the CPU, one system at a time.

Steps: convert the Debian idx files to text (if needed), run
``boltc train specs/fashion_mnist.bolt ... --json`` and then the PyTorch peer
(torch_peer.py), each as a subprocess with the same thread count, and write
``results.json`` and ``results.md`` into --out. A system that fails (e.g. boltc
not installed yet) is recorded with its error; the other still runs.

Usage (from the repository root)::

    python bench/fashion_mnist/run.py [--epochs N] [--threads 2] [--out bench/results/fashion_mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import convert  # noqa: E402  (sibling script)
from common import find_boltc, machine_info, tail  # noqa: E402

SPEC = REPO_ROOT / "specs" / "fashion_mnist.bolt"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "fashion_mnist"


def run_system(name: str, cmd: list[str] | None, threads: int, out_dir: Path,
               timeout: float | None, missing_msg: str = "") -> dict:
    """Run one system's command; return its record (the CLI's JSON plus bookkeeping)."""
    record: dict = {"system": name, "ok": False, "command": cmd}
    if cmd is None:
        record["error"] = missing_msg or f"{name}: command not found"
        print(f"[{name}] skipped: {record['error']}", flush=True)
        return record

    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    print(f"[{name}] $ {shlex.join(cmd)}  (OMP_NUM_THREADS={threads})", flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError as exc:
        record["error"] = f"cannot start: {exc}"
        print(f"[{name}] failed: {record['error']}", flush=True)
        return record
    except subprocess.TimeoutExpired as exc:
        record["error"] = f"timed out after {timeout}s"
        record["stderr_tail"] = tail(exc.stderr if isinstance(exc.stderr, str) else
                                      (exc.stderr or b"").decode(errors="replace"))
        print(f"[{name}] failed: {record['error']}", flush=True)
        return record
    record["wall_seconds"] = time.perf_counter() - start
    record["returncode"] = proc.returncode

    log_path = out_dir / f"{name}.log"
    log_path.write_text(f"$ {shlex.join(cmd)}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                        encoding="utf-8")
    record["log"] = str(log_path.relative_to(REPO_ROOT)) if log_path.is_relative_to(REPO_ROOT) \
        else str(log_path)

    if proc.returncode != 0:
        last = next((ln.strip() for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
        record["error"] = f"exit status {proc.returncode}" + (f": {last}" if last else "")
        record["stderr_tail"] = tail(proc.stderr)
        print(f"[{name}] failed: exit status {proc.returncode}\n{tail(proc.stderr)}", flush=True)
        return record

    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        record["error"] = "last stdout line is not a JSON object"
        record["stdout_tail"] = tail(proc.stdout)
        print(f"[{name}] failed: {record['error']}", flush=True)
        return record
    missing = [k for k in ("metrics", "train_seconds", "samples_per_second", "epochs") if k not in result]
    if missing:
        record["error"] = f"JSON lacks keys: {', '.join(missing)}"
        print(f"[{name}] warning: {record['error']}", flush=True)
    else:
        record["ok"] = True
    result.pop("system", None)
    record.update(result)
    print(f"[{name}] done in {record['wall_seconds']:.1f}s", flush=True)
    return record


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def summarise(record: dict) -> dict:
    """Derived table values for one record (None where unknown)."""
    epochs = _num(record.get("epochs"))
    epoch_secs = record.get("epoch_seconds")
    if isinstance(epoch_secs, list) and epoch_secs and all(_num(v) is not None for v in epoch_secs):
        mean_epoch = sum(epoch_secs) / len(epoch_secs)
    elif _num(record.get("train_seconds")) is not None and epochs:
        mean_epoch = record["train_seconds"] / epochs
    else:
        mean_epoch = None
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    return {
        "epochs": record.get("epochs"),
        "accuracy": _num(metrics.get("accuracy")),
        "mean_epoch_seconds": mean_epoch,
        "samples_per_second": _num(record.get("samples_per_second")),
        "compile_seconds": _num(record.get("compile_seconds")),
    }


def markdown_table(records: list[dict], machine: dict) -> str:
    rows = {r["system"]: summarise(r) for r in records}
    bolt_sps = rows.get("boltc", {}).get("samples_per_second")
    torch_sps = rows.get("pytorch", {}).get("samples_per_second")
    ratio = bolt_sps / torch_sps if bolt_sps and torch_sps else None

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    out = [
        "| system | epochs | test accuracy | mean epoch s | samples/s | boltc/torch samples/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for rec in records:
        s = rows[rec["system"]]
        if rec.get("ok") or s["samples_per_second"] is not None:
            out.append(f"| {rec['system']} | {s['epochs'] if s['epochs'] is not None else 'n/a'} | "
                       f"{fmt(s['accuracy'], '.4f')} | {fmt(s['mean_epoch_seconds'], '.3f')} | "
                       f"{fmt(s['samples_per_second'], ',.0f')} | "
                       f"{fmt(ratio, '.2f') if rec['system'] == 'boltc' else ''} |")
        else:
            out.append(f"| {rec['system']} | failed | | | | |")
    notes = []
    for rec in records:
        if rec.get("error"):
            notes.append(f"- {rec['system']}: {rec['error']}")
        s = rows[rec["system"]]
        if s["compile_seconds"] is not None:
            notes.append(f"- {rec['system']}: compile {s['compile_seconds']:.2f}s (reported separately by the system)")
    header = (f"Fashion-MNIST, {machine['threads']} thread(s), {machine.get('cpu_model') or 'unknown CPU'}"
              f" (nproc {machine.get('nproc')}), {machine['date']}")
    text = header + "\n\n" + "\n".join(out) + "\n"
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fashion-MNIST benchmark: boltc vs PyTorch (CPU)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for both systems (default: each system's own default)")
    parser.add_argument("--threads", type=int, default=2, help="OpenMP / torch threads (default 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"results directory (default {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    parser.add_argument("--data", type=Path, default=convert.DEFAULT_OUT,
                        help="directory for train.txt / test.txt")
    parser.add_argument("--source", type=Path, default=None, help="idx files directory (see convert.py)")
    parser.add_argument("--boltc", default=None,
                        help="boltc command (default: `boltc` on PATH or beside this Python)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per-system time limit in seconds")
    args = parser.parse_args(argv)
    if args.threads < 1 or (args.epochs is not None and args.epochs < 1):
        parser.error("--threads and --epochs must be >= 1")

    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        paths = convert.convert(args.data, args.source)
    except (FileNotFoundError, ValueError) as exc:
        print(f"run.py: error: cannot prepare data: {exc}", file=sys.stderr)
        return 1
    train, test = str(paths["train"].resolve()), str(paths["test"].resolve())
    epoch_args = ["--epochs", str(args.epochs)] if args.epochs is not None else []

    machine = machine_info(args.threads)
    records = []

    boltc = find_boltc(args.boltc)
    boltc_cmd = None if boltc is None else boltc + [
        "train", str(SPEC), "--train", train, "--test", test, "--json", *epoch_args]
    records.append(run_system("boltc", boltc_cmd, args.threads, out_dir, args.timeout,
                              missing_msg="boltc command not found (install the package: pip install .)"))

    torch_cmd = [sys.executable, str(HERE / "torch_peer.py"), "--train", train, "--test", test,
                 "--threads", str(args.threads), "--json", *epoch_args]
    records.append(run_system("pytorch", torch_cmd, args.threads, out_dir, args.timeout))

    table = markdown_table(records, machine)
    results = {"benchmark": "fashion_mnist", "machine": machine, "spec": str(SPEC.relative_to(REPO_ROOT)),
               "epochs_requested": args.epochs, "systems": records,
               "summary": {r["system"]: summarise(r) for r in records}}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out_dir / "results.md").write_text(table, encoding="utf-8")
    print()
    print(table, end="")
    print(f"\nwrote {out_dir / 'results.json'} and {out_dir / 'results.md'}")
    return 0 if any(r.get("ok") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
