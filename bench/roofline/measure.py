"""The roofline of boltc's sparse-layer kernels: this machine's limits (limits.c) beside what the kernels achieved
in a training run (``Model.kernel_profile()``).

Bytes are counted as the kernels must move them at least, from their access pattern (rows of ``in_dim`` reals):
  score             each active neuron's weight row and bias, gathered (the layer input stays in cache)
  backward+update   each distinct neuron of the batch: its weight row and both Adam moments read and written
                    (6 rows), plus its bias and moments; the gradient lives in registers
  rebuild           every weight row read once (hashing), the tables written
FLOPs: score 2*in per active neuron; backward 4*in per (row, neuron) entry (weight gradient and input gradient)
plus about 10*in per distinct neuron for Adam. Each kernel is compared with the STREAM triad and with the limit of
its own access pattern (random row gathers, random row read-modify-writes).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REAL_BYTES = 4
ADAM_FLOPS_PER_WEIGHT = 10


RATES = ("triad_gbps", "gather_gbps", "update_gbps", "fma_gflops")


def machine_limits(threads: int, row_floats: int, matrix_mb: int = 1024, runs: int = 3) -> dict:
    """Build limits.c with the compiler and flags boltc uses on this machine, run it `runs` times, return its JSON
    with the best of each rate: on a shared machine the measured peak moves by up to 2x between runs minutes apart,
    and the best seen is the limit the kernels are held to (each run's rates are kept under "runs")."""
    from boltc.machine import probe

    if runs < 1:
        raise ValueError("machine_limits needs at least one run")
    machine = probe()
    found_runs = []
    with tempfile.TemporaryDirectory(prefix="boltc-limits-") as tmp:
        binary = Path(tmp) / "limits"
        subprocess.run([*machine.compiler, *machine.cflags, "-o", str(binary), str(HERE / "limits.c"),
                        *machine.ldflags], check=True, capture_output=True, text=True)
        for _ in range(runs):
            done = subprocess.run([str(binary), str(threads), str(row_floats), str(matrix_mb)], check=True,
                                  capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            found_runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    found = {**found_runs[0], **{rate: max(run[rate] for run in found_runs) for rate in RATES}}
    found["runs"] = [{rate: run[rate] for rate in RATES} for run in found_runs]
    found["compiler"] = " ".join(machine.compiler)
    found["cflags"] = list(machine.cflags)
    return found


def _row(kernel: str, seconds: float, per: float, bytes_moved: float, flops: float, pattern_limit: float | None,
         limits: dict) -> dict:
    gbps = bytes_moved / seconds / 1e9 if seconds > 0 else 0.0
    gflops = flops / seconds / 1e9 if seconds > 0 else 0.0
    return {
        "kernel": kernel, "seconds": seconds, "ms_per_call": 1000 * seconds / per if per else 0.0,
        "gb_per_s": gbps, "gflop_per_s": gflops,
        "of_triad": gbps / limits["triad_gbps"],
        "of_pattern": gbps / pattern_limit if pattern_limit else None,
        "of_fma_peak": gflops / limits["fma_gflops"],
    }


def kernel_rates(profile: dict, in_dim: int, out_dim: int, limits: dict, shared: bool = False) -> list[dict]:
    """One row per kernel of one sparse layer: seconds, GB/s, GFLOP/s and their fractions of the limits. With
    batch-shared active sets (`shared`) scoring reads each updated neuron's row once per batch, not once per entry."""
    row_bytes = in_dim * REAL_BYTES
    batches = max(1.0, profile["batches"])
    thread_seconds = profile["select_thread_seconds"] + profile["score_thread_seconds"]
    score_share = profile["score_thread_seconds"] / thread_seconds if thread_seconds else 0.0
    score_seconds = profile["forward_seconds"] * score_share
    scored = profile["entries_scored"]
    updated, entries = profile["neurons_updated"], profile["entries_updated"]
    rows = [
        {"kernel": "select (hash + buckets)", "seconds": profile["forward_seconds"] - score_seconds,
         "ms_per_call": 1000 * (profile["forward_seconds"] - score_seconds) / batches, "gb_per_s": None,
         "gflop_per_s": None, "of_triad": None, "of_pattern": None, "of_fma_peak": None},
        _row("score (gathered rows x batch, matrix product)" if shared else "score (gathered dot products)",
             score_seconds, batches, (updated if shared else scored) * (row_bytes + REAL_BYTES),
             2.0 * in_dim * scored, limits["gather_gbps"], limits),
        _row("backward + Adam update", profile["backward_seconds"], batches,
             updated * 6 * (row_bytes + REAL_BYTES), 4.0 * in_dim * entries + ADAM_FLOPS_PER_WEIGHT * in_dim * updated,
             limits["update_gbps"], limits),
    ]
    if profile.get("bf16_batches", 0) >= batches:  # precision=bf16 on AMX tiles: not bound by the FMA peak
        for row in rows[1:]:
            row["kernel"] += ", bf16 products on AMX tiles"
            row["of_fma_peak"] = None
    if profile["rebuilds"]:
        rows.append(_row("rebuild (hash every row, sort)", profile["rebuild_seconds"], profile["rebuilds"],
                         profile["rebuilds"] * out_dim * row_bytes, 0.0, None, limits))
    return rows


def markdown(rows: list[dict], limits: dict) -> str:
    def pct(value):
        return f"{100 * value:.0f}%" if value is not None else "n/a"

    def num(value, digits=1):
        return f"{value:,.{digits}f}" if value is not None else "n/a"

    peaks = [run["fma_gflops"] for run in limits.get("runs", [])]
    spread = f" (the best of {len(peaks)} runs: {min(peaks):.0f}-{max(peaks):.0f})" if len(peaks) > 1 else ""
    lines = [
        f"Machine limits ({limits['threads']} threads, rows of {limits['row_floats']} floats, "
        f"{limits['matrix_mb']} MB matrices, best of each rate): STREAM triad {limits['triad_gbps']:.1f} GB/s, random "
        f"row gather {limits['gather_gbps']:.1f} GB/s, random row read-modify-write (3 matrices) "
        f"{limits['update_gbps']:.1f} GB/s, FMA peak {limits['fma_gflops']:.0f} GFLOP/s{spread}.",
        "",
        "| kernel | ms per call | GB/s | of triad | of its access pattern | GFLOP/s | of FMA peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['kernel']} | {row['ms_per_call']:.2f} | {num(row['gb_per_s'])} | {pct(row['of_triad'])} "
                     f"| {pct(row['of_pattern'])} | {num(row['gflop_per_s'])} | {pct(row['of_fma_peak'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Train a spec on the first rows of a file and print its sparse layers' kernel roofline, the limits measured
    in the same process: the before-and-after check of a kernel change (run it from each checkout in turn)."""
    import argparse
    import sys

    import numpy as np

    parser = argparse.ArgumentParser(prog="python bench/roofline/measure.py", description=main.__doc__)
    parser.add_argument("spec")
    parser.add_argument("train", help="a training file the spec reads")
    parser.add_argument("--rows", type=int, default=25_600, help="training rows taken from the file's start")
    parser.add_argument("--warmup-rows", type=int, default=5_120, help="rows trained before the profile starts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tune", choices=("on", "off"), default="off")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, str(HERE.parent.parent))  # this checkout's boltc, templates and runtime
    import boltc
    from boltc.data import take_rows

    model = boltc.load(args.spec, tune=args.tune == "on")
    model.threads = args.threads
    data = model.prepare_data(args.train, labelled=True, learn_labels=True)
    if data.n_rows <= args.warmup_rows:
        parser.error(f"{args.train} has {data.n_rows:,} rows: more than --warmup-rows ({args.warmup_rows:,}) needed")
    rows = min(data.n_rows, args.warmup_rows + args.rows)
    model.fit(take_rows(data, np.arange(args.warmup_rows)), epochs=1, progress=False)
    model.reset_kernel_profile()
    history = model.fit(take_rows(data, np.arange(args.warmup_rows, rows)), epochs=1, progress=False)
    print(f"{args.spec}: {rows - args.warmup_rows:,} rows in {history.wall_seconds:.2f} s "
          f"({(rows - args.warmup_rows) / history.wall_seconds:,.0f} samples/s), {args.threads} threads")
    for layer in model.sparse_layers:
        profile = model.kernel_profile()[layer.name]
        limits = machine_limits(args.threads, layer.in_dim, matrix_mb=256)
        shared = layer.lsh.active_sets == "batch"
        print(f"\nlayer '{layer.name}' ({layer.in_dim} -> {layer.out_dim}):\n")
        print(markdown(kernel_rates(profile, layer.in_dim, layer.out_dim, limits, shared), limits))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
