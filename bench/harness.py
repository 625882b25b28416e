"""``python -m bench WORKLOAD``: boltc and its peers on the same data files, in one run, one system at a time.

Every system is a script of bench/peers (or a workload's own) that follows one contract (peers/xc_eval.py): it
trains, evaluates P@k on the first --eval-rows test rows at points along its training, and prints one JSON record.
Each runs as a child with OMP_NUM_THREADS (and MKL/Rayon) = --threads; its peak RSS comes from the kernel (wait4).
boltc runs first; peers of workloads that compare at equal training time get boltc's seconds (training plus
tuning) as their budget. Writes into --out: results.json (every record, the machine and its limits),
results.md (the tables), p_at_1.png (P@1 against training seconds per system) and one log per system.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO_ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from common import machine_info, tail  # noqa: E402
from workloads import WORKLOADS, System  # noqa: E402


def run_step(name: str, command: list[str], threads: int, out_dir: Path, timeout: float) -> dict:
    """Run one system as a child; its record, exit status, wall time and peak RSS (its own rusage)."""
    record: dict = {"system": name, "ok": False, "command": command}
    env = dict(os.environ)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS"):
        env[variable] = str(threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    record["loadavg_before"] = list(os.getloadavg())
    print(f"[{name}] $ {shlex.join(command)}", flush=True)
    log_path = out_dir / f"{name}.log"
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log, \
            open(out_dir / f".{name}.stdout", "w+", encoding="utf-8") as stdout:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=stdout, stderr=log)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            os.kill(process.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not every child's maximum
        finally:
            timer.cancel()
        stdout.seek(0)
        output = stdout.read()
    (out_dir / f".{name}.stdout").unlink()
    record.update(wall_seconds=time.perf_counter() - started, returncode=os.waitstatus_to_exitcode(status),
                  peak_rss_mb=usage.ru_maxrss / 1024.0, cpu_seconds=usage.ru_utime + usage.ru_stime,
                  log=str(log_path.relative_to(REPO_ROOT)) if log_path.is_relative_to(REPO_ROOT) else str(log_path))
    lines = [line for line in output.splitlines() if line.strip()]
    if killed.is_set():
        record["error"] = f"timed out after {timeout:.0f} s"
    elif record["returncode"] != 0:
        record["error"] = f"exit status {record['returncode']}: " + tail(log_path.read_text(errors="replace"), 600)
    else:
        try:
            record["result"] = json.loads(lines[-1])
            record["ok"] = isinstance(record["result"], dict)
        except (IndexError, json.JSONDecodeError):
            record["error"] = "its last stdout line is not a JSON record"
    print(f"[{name}] " + (f"done in {record['wall_seconds']:.0f} s, peak RSS {record['peak_rss_mb']:,.0f} MB"
                          if record["ok"] else f"failed: {record['error']}"), flush=True)
    return record


def time_to(curve: list[dict], target: float) -> float | None:
    """Training seconds at which a curve first reaches P@1 `target` (linear between its points), or None."""
    previous_seconds, previous_p = 0.0, 0.0
    for point in curve:
        seconds, p = point["train_seconds"], point.get("precision@1") or 0.0
        if p >= target:
            if p == previous_p:
                return seconds
            return previous_seconds + (seconds - previous_seconds) * (target - previous_p) / (p - previous_p)
        previous_seconds, previous_p = seconds, p
    return None


def _fmt(value, spec: str = ",.1f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_table(records: list[dict]) -> str:
    boltc = next((r["result"] for r in records if r["ok"] and r["system"] == "boltc"), None)
    # recall@k columns where a workload asks for them (peers' --recall-at), after P@5
    recalls = sorted({key for r in records if r["ok"] for key in r["result"]["final"] if key.startswith("recall@")},
                     key=lambda key: int(key.partition("@")[2]))
    lines = ["| system | train s | samples/s | boltc's samples/s over it | P@1 | P@5 | "
             + "".join(f"R@{key.partition('@')[2]} | " for key in recalls) + "infer rows/s | batch-1 ms | "
             "peak RSS MB |", "|---|---:|---:|---:|---:|---:|" + "---:|" * len(recalls) + "---:|---:|---:|"]
    for record in records:
        if not record["ok"]:
            lines.append(f"| {record['system']} | failed: {record['error'][:80]} | | | | | "
                         + "| " * len(recalls) + "| | |")
            continue
        r = record["result"]
        ratio = boltc["samples_per_second"] / r["samples_per_second"] if boltc and r["samples_per_second"] else None
        latency = r.get("latency_ms_batch1")
        if isinstance(latency, dict):
            latency = latency.get("sparse", latency.get("dense"))
        train = r["train_seconds"] + r.get("tune_seconds", 0.0)
        lines.append(
            f"| {record['system']} {r.get('version', '')} | {_fmt(train)}"
            + (f" ({r['tune_seconds']:.0f} tuning)" if r.get("tune_seconds") else "")
            + f" | {_fmt(r['samples_per_second'], ',.0f')} | {_fmt(ratio, '.2f')} | "
            f"{_fmt(r['final'].get('precision@1'), '.4f')} | {_fmt(r['final'].get('precision@5'), '.4f')} | "
            + "".join(f"{_fmt(r['final'].get(key), '.4f')} | " for key in recalls)
            + f"{_fmt(r.get('inference_rows_per_second'), ',.0f')} | {_fmt(latency, '.2f')} | "
            f"{_fmt(record['peak_rss_mb'], ',.0f')} |")
    return "\n".join(lines)


def tuning_comparison(records: list[dict]) -> str | None:
    """Time to a common P@1 of boltc with measured values and with BOLT's formulas."""
    found = {r["system"]: r["result"] for r in records if r["ok"] and r["system"] in ("boltc", "boltc-formula")}
    if len(found) < 2:
        return None
    target = 0.9 * min(r["final"]["precision@1"] for r in found.values())
    times = {name: time_to(r["curve"], target) for name, r in found.items()}
    lines = [f"Time to P@1 {target:.4f} (90% of the lower final P@1 of the two), training seconds:"]
    for name, seconds in times.items():
        tuning = found[name].get("tune_seconds", 0.0)
        lines.append(f"- {name}: {_fmt(seconds, '.1f')} s" + (f" (+ {tuning:.0f} s of tuning, once per machine and "
                                                               "data)" if tuning else ""))
    if all(times.values()):
        lines.append(f"- formula / measured: {times['boltc-formula'] / times['boltc']:.2f}x")
    values = {name: {layer: {k: v for k, v in found[name]["plan"][layer]["lsh"].items() if k != "origin"}
                     for layer in found[name]["plan"]} for name in found}
    if values["boltc"] == values["boltc-formula"]:
        lines.append("- the tuner kept the formula's values: both runs trained the same configuration, so the "
                     "difference is run-to-run noise")
    else:
        lines.append(f"- measured values: {values['boltc']}; formula's: {values['boltc-formula']}")
    return "\n".join(lines)


def plot(records: list[dict], title: str, path: Path) -> str | None:
    """P@1 against training seconds, one line per system; None when matplotlib is missing (it is in the bench
    extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install '.[bench]'): no plot"
    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for record in records:
        if record["ok"] and record["result"].get("curve"):
            curve = record["result"]["curve"]
            axes.plot([p["train_seconds"] for p in curve], [p.get("precision@1") or 0.0 for p in curve],
                      marker="o", label=record["system"])
    axes.set_xscale("log")
    axes.set_xlabel("training seconds (log scale)")
    axes.set_ylabel("P@1 on the test rows")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return None


def roofline_section(records: list[dict], threads: int) -> tuple[str | None, dict | None]:
    boltc = next((r["result"] for r in records if r["ok"] and r["system"] == "boltc"), None)
    if not boltc or not boltc.get("kernel_profile"):
        return None, None
    from roofline.measure import kernel_rates, machine_limits, markdown

    sections, data = [], {}
    for layer, profile in boltc["kernel_profile"].items():
        in_dim, out_dim = boltc["layer_shapes"][layer]
        limits = machine_limits(threads, in_dim)
        shared = (boltc["plan"][layer]["lsh"] or {}).get("active_sets") == "batch"
        rows = kernel_rates(profile, in_dim, out_dim, limits, shared)
        sections.append(f"Sparse layer '{layer}' ({in_dim} -> {out_dim}), boltc's whole run:\n\n"
                        + markdown(rows, limits))
        data[layer] = {"limits": limits, "kernels": rows}
    return "\n\n".join(sections), data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", help="comma-separated subset of the workload's systems (default: all)")
    parser.add_argument("--eval-rows", type=int, default=2000, help="P@k on the first N test rows")
    parser.add_argument("--train-rows", type=int, default=None, help="synthetic workloads: training rows")
    parser.add_argument("--epochs", type=int, default=None, help="boltc's epochs (default: the spec's)")
    parser.add_argument("--budget", type=float, default=None,
                        help="peers' training seconds where they match boltc's (default: boltc's own)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed the peers get (--seed) where a workload passes it, for repeated runs (default 0)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one system may run")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/WORKLOAD")
    args = parser.parse_args(argv)
    workload = WORKLOADS[args.workload]
    out_dir = (args.out or BENCH / "results" / workload.name).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = workload.prepare(args)
    systems: list[System] = workload.systems(data, args)
    if args.systems:
        wanted = set(args.systems.split(","))
        unknown = wanted - {s.name for s in systems}
        if unknown:
            parser.error(f"unknown systems {sorted(unknown)}; {workload.name} has {[s.name for s in systems]}")
        systems = [s for s in systems if s.name in wanted]
    records: list[dict] = []
    budget = args.budget
    for system in systems:
        command = list(system.command)
        if system.matches_boltc_time:
            if budget is None:
                boltc = next((r["result"] for r in records if r["ok"] and r["system"] == "boltc"), None)
                budget = boltc["train_seconds"] + boltc.get("tune_seconds", 0.0) if boltc else workload.fallback_budget
            command += ["--time-budget", f"{budget:.2f}"] + list(system.budget_arguments(budget))
        records.append(run_step(system.name, command, args.threads, out_dir, args.timeout))

    machine = machine_info(args.threads)
    roofline, roofline_data = roofline_section(records, args.threads)
    plot_problem = plot(records, f"{workload.name}, {args.threads} threads", out_dir / "p_at_1.png")
    comparison = tuning_comparison(records)
    timing = "peers marked in the workload trained for boltc's seconds" if budget is not None else \
        "each system trained by its own recipe"
    text = [f"# {workload.title}", "", workload.description, "",
            f"{machine['cpu_model']}, {args.threads} threads, {machine['date']}; one run, one system at a time; "
            f"P@k on the first {args.eval_rows:,} test rows; train s includes boltc's tuning; {timing}.",
            "", summary_table(records)]
    if comparison:
        text += ["", comparison]
    if roofline:
        text += ["", "## Roofline", "", roofline]
    text += ["", plot_problem or "![P@1 against training time](p_at_1.png)", ""]
    report = "\n".join(text)
    (out_dir / "results.md").write_text(report, encoding="utf-8")
    (out_dir / "results.json").write_text(json.dumps({
        "workload": workload.name, "machine": machine, "data": data.meta, "records": records,
        "roofline": roofline_data}, indent=1) + "\n", encoding="utf-8")
    print("\n" + report)
    print(f"wrote {out_dir}/results.md, results.json, p_at_1.png")
    return 0 if all(r["ok"] for r in records) else 1
