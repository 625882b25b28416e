"""Compile and run bench/kernels/update_strategies.c: three (plus variants) weight-update strategies for an
LSH-sparse output layer at the Amazon-670K shape, and print Markdown tables.

    python bench/kernels/run_update_strategies.py --threads 2
    python bench/kernels/run_update_strategies.py --threads 1 --neurons 5000 --active 50

The C file is built into a temporary directory with boltc's flags (gcc -O3 -fno-math-errno
-fno-trapping-math -march=native -fopenmp) against runtime/bolt_simd.h and runtime/bolt_dense.h. Before the
timed run, a small shape (--verify-neurons x --verify-active) checks every strategy against "grouped" (max abs
difference of W, M, V after all batches and of the last batch's dX). Timings are medians over --batches timed
batches after --warmup warm-up batches, cycling through --distinct-batches generated batches so no batch finds
the previous one's rows in cache; the strategies run interleaved, one batch each in turn, each on its own W/M/V,
so that they share the background load of a busy machine (about 8 GB of arrays at the default shape).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SOURCE = HERE / "update_strategies.c"
RUNTIME = REPO / "runtime"
# No -std=c11: GCC's ISO modes turn off FMA contraction (-ffp-contract=off), which boltc's builds keep on.
CFLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-march=native", "-fopenmp"]
DIM = 128


def mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def build(cc: str, workdir: Path, dim: int) -> Path:
    exe = workdir / "update_strategies"
    cmd = [cc, *CFLAGS, f"-DDIM={dim}", f"-I{RUNTIME}", str(SOURCE), "-o", str(exe), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"compile failed: {' '.join(cmd)}\n{proc.stderr}")
    return exe


def run(exe: Path, threads: int, args: list[str], timeout: float) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env.setdefault("OMP_PROC_BIND", "close")
    env.setdefault("OMP_PLACES", "cores")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"run failed ({proc.returncode}): {exe} {' '.join(args)}\n{proc.stderr}\n{proc.stdout[-2000:]}")
    return json.loads(proc.stdout)


def fmt_diff(x: float) -> str:
    return "0" if x == 0 else f"{x:.2g}"


def print_verify(result: dict) -> None:
    cfg = result["config"]
    print(f"### Check vs grouped: N={cfg['neurons']}, A={cfg['active']}, B={cfg['rows']}, "
          f"{cfg['warmup'] + cfg['iters']} batches, {cfg['threads']} thread(s)\n")
    print("| strategy | max abs diff W | M | V | dX (last batch) |")
    print("|---|---|---|---|---|")
    for s in result["strategies"]:
        d = s["max_diff"]
        label = s["name"] + (" (reference)" if s["reference"] else "")
        print(f"| {label} | {fmt_diff(d['W'])} | {fmt_diff(d['M'])} | {fmt_diff(d['V'])} | {fmt_diff(d['dX'])} |")
    print()


def print_main(result: dict) -> None:
    cfg = result["config"]
    distinct = result["distinct"]
    print(f"### N={cfg['neurons']}, D={cfg['dim']}, B={cfg['rows']}, A={cfg['active']} "
          f"({cfg['entries']:,} entries/batch), {cfg['threads']} thread(s), prefetch {cfg['prefetch']}, "
          f"THP {'on' if cfg['thp'] else 'off'} ({cfg['anon_huge_kb'] / 1024:.0f} MiB in huge pages)\n")
    print(f"Distinct neurons per batch ({len(distinct)} generated batches): "
          f"{', '.join(f'{d:,}' for d in distinct)} (mean {sum(distinct) / len(distinct):,.0f}, "
          f"{100 * sum(distinct) / len(distinct) / cfg['neurons']:.1f}% of N)\n")
    print(f"Median of {cfg['iters']} batches after {cfg['warmup']} warm-up. GB/s effective = modelled bytes "
          "moved per batch (every 512-byte row access of W/M/V/G counted as memory traffic) / median time.\n")
    print("| strategy | ms/batch | min-max ms | GB/s eff. | MB moved/batch | extra memory MB | max diff vs grouped "
          "(W, M, V, dX) |")
    print("|---|---|---|---|---|---|---|")
    for s in result["strategies"]:
        d = s["max_diff"]
        diff = "reference" if s["reference"] else ", ".join(fmt_diff(d[k]) for k in ("W", "M", "V", "dX"))
        print(f"| {s['name']} | {s['ms_median']:.1f} | {min(s['ms']):.1f}-{max(s['ms']):.1f} | {s['gbps']:.1f} | "
              f"{s['mb_moved']:,.0f} | {s['extra_mb']:,.1f} | {diff} |")
    print()
    print("Phase medians (ms): dx = separate dX gather pass, group = serial grouping by neuron, accumulate = "
          "G += dZ x X row loop (hogwild*, perthread; includes dX when fused), update = Adam over touched rows "
          "(grouped*: includes gradient sums, and dX when fused)\n")
    print("| strategy | dx | group | accumulate | update |")
    print("|---|---|---|---|---|")
    for s in result["strategies"]:
        p = s["phases_ms"]
        print(f"| {s['name']} | {p['dx']:.1f} | {p['group']:.1f} | {p['accumulate']:.1f} | {p['update']:.1f} |")
    print()
    print("STREAM-like probe (same threads; 512-byte rows; random = uniform ids with repeats, batch order = a "
          "batch's active ids row by row, id order = sorted; rmw3 = read+write of the W, M, V rows of the "
          "batch's distinct neurons)\n")
    print("| probe | MB moved | GB/s |")
    print("|---|---|---|")
    for p in result["stream"]:
        print(f"| {p['name']} | {p['mb']:,.0f} | {p['gbps']:.1f} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS (default 2)")
    ap.add_argument("--neurons", type=int, default=670091)
    ap.add_argument("--active", type=int, default=3351, help="active neurons per row")
    ap.add_argument("--rows", type=int, default=256, help="batch rows")
    ap.add_argument("--batches", type=int, default=12, help="timed batches per strategy (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--distinct-batches", type=int, default=8, help="generated batches, cycled")
    ap.add_argument("--prefetch", type=int, default=4, help="rows (groups) prefetched ahead; 0 disables")
    ap.add_argument("--no-thp", action="store_true",
                    help="no madvise(MADV_HUGEPAGE) (numpy, which allocates boltc's buffers, does advise it)")
    ap.add_argument("--only", default=None, help="comma-separated strategies (grouped always runs: reference)")
    ap.add_argument("--no-perthread", action="store_true")
    ap.add_argument("--stream-reps", type=int, default=5)
    ap.add_argument("--no-verify", action="store_true", help="skip the small-shape check")
    ap.add_argument("--verify-neurons", type=int, default=5000)
    ap.add_argument("--verify-active", type=int, default=50)
    ap.add_argument("--cc", default=os.environ.get("CC", "gcc"))
    ap.add_argument("--json", type=Path, default=None, help="also write the raw result(s) here")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()

    if shutil.which(args.cc) is None:
        sys.exit(f"compiler not found: {args.cc}")
    row_bytes = DIM * 4
    common = ["--rows", str(args.rows), "--warmup", str(args.warmup), "--iters", str(args.batches),
              "--distinct-batches", str(args.distinct_batches), "--prefetch", str(args.prefetch)]
    if args.no_thp:
        common.append("--no-thp")
    if args.only:
        common += ["--only", args.only]

    # every strategy its own W, M, V (they run interleaved); hogwild's G; perthread's T buffers (each N x D floats)
    array = args.neurons * row_bytes
    n_strategies = len(args.only.split(",")) + 1 if args.only else 7
    need_without = (3 * n_strategies + 1) * array
    need_with = need_without + (3 + args.threads) * array
    avail = mem_available_bytes()
    perthread = not args.no_perthread
    if perthread and avail is not None and need_with > 0.85 * avail:
        print(f"perthread skipped at N={args.neurons}: needs {need_with / 2**30:.1f} GiB in all, "
              f"{avail / 2**30:.1f} GiB available\n")
        perthread = False
    if not perthread:
        common.append("--no-perthread")

    results = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bolt_update_") as tmp:
        exe = build(args.cc, Path(tmp), DIM)
        if not args.no_verify:
            small = ["--neurons", str(args.verify_neurons), "--active", str(args.verify_active),
                     "--stream-reps", "1", *[a for a in common if a != "--no-perthread"]]
            results["verify"] = run(exe, args.threads, small, args.timeout)
            print_verify(results["verify"])
        full = ["--neurons", str(args.neurons), "--active", str(args.active), "--stream-reps",
                str(args.stream_reps), *common]
        results["main"] = run(exe, args.threads, full, args.timeout)
        print_main(results["main"])
        print(f"(memory in big arrays, every strategy's own W/M/V included: {results['main']['big_alloc_mb']:,.0f} MB; "
              f"process run time {results['main']['setup_and_run_s']:.1f} s; load average 1 min before "
              f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
