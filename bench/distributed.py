#!/usr/bin/env python3
"""Data-parallel training on Ray against one process, and a model of it on machines this bench does not have.

Runs, each in a process of its own, the same epochs of the Amazon-670K-shaped spec with the formula's LSH values (no
tuning) and one fixed learning rate, so that every run has the same kernels:

* one process with every thread (``boltc train``), the reference;
* one worker with every thread on Ray (``--workers 1``): what splitting a step into gradients and an apply costs;
* the threads split over workers (``--workers N --threads-per-worker 1``) on a cluster started with ``ray start
  --head`` (``--address auto``), in fp32 and in bf16 on the wire.

Each reports samples/s, test P@1 and, per step, the bytes a worker sent, the bytes of the rows applied and the
share of the step spent communicating. From the measured compute, apply and bytes per step the bench then models
4 to 64 machines on 10 and 25 GbE, against an all-reduce of the full gradient (what BOLT's distributed training
sends), for this shape and a 10M-label one. Make the data first (bench/amazon/generate.py; bench/streaming.py slices
it), then::

    python bench/distributed.py /tmp/big/amazon8g/train.first0.2g.txt /tmp/big/amazon8g/test.txt [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from bench.common import find_boltc, machine_info  # noqa: E402 (the repository's bench package, run as a script)

SPEC = REPO_ROOT / "specs" / "amazon670k.bolt"
LEARNING_RATE = 0.001
LINKS_GBPS = {"10 GbE": 10.0, "25 GbE": 25.0}
MACHINES = (4, 8, 16, 32, 64)
CORES_PER_MACHINE = 16
LARGE_LABELS = 10_000_000


def run(command: list[str], env: dict) -> dict:
    """A boltc command's JSON report (its last line), with the wall seconds of the whole command."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["command_seconds"] = time.perf_counter() - started
    return report


def summary(name: str, report: dict) -> dict:
    row = {"run": name, "samples_per_second": report["samples_per_second"],
           "test_precision@1": report["metrics"].get("precision@1"), "train_seconds": report["train_seconds"]}
    exchanges = report.get("distributed", {}).get("exchanges")
    if exchanges:
        last = exchanges[-1]
        row.update(bytes_sent_per_step=last["bytes_sent"], touched_bytes_per_step=last["touched_bytes"],
                   communication_share=last["communication_share"], compute_seconds_per_step=last["compute_seconds"],
                   apply_seconds_per_step=last["apply_seconds"], steps=last["steps"],
                   step_seconds=last["wall_seconds"] / last["steps"])
    return row


def modelled(measured: dict, one_process: dict, workers: int, threads: int, batch: int, parameter_bytes: int,
             label_scale: float) -> list[dict]:
    """Step time and bytes per step on `MACHINES` machines of CORES_PER_MACHINE cores, from one N-worker run here
    (one thread each). Assumptions, stated where they are used: compute per row scales with cores (it did on this
    machine's two: see bench/README); a worker's share of touched rows shrinks as 1/M (it holds B/M rows of the
    global batch), which ignores rows that several workers touch and so underestimates bytes at large M; the union
    applied each step is the global batch's, the same at any M; shares travel once to every other machine at the
    link's rate (an all-gather through the object store), full gradients in a ring all-reduce, 2 (M-1)/M of them."""
    compute_per_row = measured["compute_seconds_per_step"] / (batch / workers)  # one thread
    # the reference: one machine of CORES_PER_MACHINE cores in one process, no exchange (this machine's one-process
    # rate scaled by its cores: an assumption, as the workers' compute is)
    one_machine = one_process["samples_per_second"] / threads * CORES_PER_MACHINE / label_scale
    share = measured["bytes_sent_per_step"] / max(workers - 1, 1)  # what one worker's rows touch, B/N rows
    rows = []
    for machines in MACHINES:
        compute = compute_per_row * batch / machines / CORES_PER_MACHINE * label_scale
        apply = measured["apply_seconds_per_step"] * label_scale / CORES_PER_MACHINE
        share_m = share * workers / machines * label_scale
        sent = share_m * (machines - 1)
        full = 2 * (machines - 1) / machines * parameter_bytes
        row = {"machines": machines, "compute_s": compute, "apply_s": apply, "sparse_bytes_sent": sent,
               "full_allreduce_bytes": full, "one_machine_samples_per_s": one_machine}
        for link, gbps in LINKS_GBPS.items():
            seconds = sent * 8 / (gbps * 1e9)
            row[f"sparse_comm_s_{link}"] = seconds
            row[f"full_comm_s_{link}"] = full * 8 / (gbps * 1e9)
            row[f"samples_per_s_{link}"] = batch / (compute + apply + seconds)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train")
    parser.add_argument("test")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "results" / "distributed"))
    parser.add_argument("--model-only", action="store_true", help="model again from the runs saved in --out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BOLTC_TUNE": "off", "OMP_NUM_THREADS": str(args.threads)}
    boltc = find_boltc(None) or sys.exit("no boltc command: pip install the repository first")
    if args.model_only:
        result = json.loads((out / "distributed.json").read_text())
        write_model(result, boltc, env, out)
        return
    common = ["train", str(SPEC), "--train", args.train, "--test", args.test, "--epochs", str(args.epochs),
              "--learning-rate", str(LEARNING_RATE), "--json"]
    reports = {"one process": run(boltc + common, env),
               "1 worker (Ray)": run(boltc + common + ["--workers", "1", "--threads-per-worker", str(args.threads)],
                                     env)}
    ray_command = str(Path(sys.executable).with_name("ray"))  # the ray installed beside this Python
    subprocess.run([ray_command, "start", "--head", f"--num-cpus={args.threads}", "--include-dashboard=false"],
                   env=env, check=True, capture_output=True)
    try:
        split = ["--workers", str(args.threads), "--threads-per-worker", "1", "--address", "auto"]
        reports[f"{args.threads} workers (ray start --head)"] = run(boltc + common + split, env)
        reports[f"{args.threads} workers, bf16 wire"] = run(boltc + common + split + ["--wire", "bf16"], env)
    finally:
        subprocess.run([ray_command, "stop", "--force"], env=env, capture_output=True)
    result = {
        "machine": machine_info(args.threads),
        "train": args.train, "test": args.test, "epochs": args.epochs, "learning_rate": LEARNING_RATE,
        "threads": args.threads, "runs": [summary(name, report) for name, report in reports.items()],
        "reports": reports,
    }
    for row in result["runs"]:
        print(json.dumps(row))
    write_model(result, boltc, env, out)


def write_model(result: dict, boltc: list[str], env: dict, out: Path) -> None:
    """The model of machines this bench does not have, from the runs in `result`, into distributed.json."""
    plan = json.loads(subprocess.run(boltc + ["explain", str(SPEC), "--json"], env=env, capture_output=True,
                                     text=True, check=True, cwd=REPO_ROOT).stdout)
    threads, runs = result["threads"], result["runs"]
    one_process, measured = runs[0], runs[2]
    output = plan["layers"][plan["output_layer"]]
    # the 10M-label shape: the same network with 10M outputs; the rows a step touches grow with the output's
    # active count (0.5% of the outputs, as this spec asks), the full gradient with its parameters; scaling every
    # byte of the exchange so overstates it (the input layer's rows do not grow)
    large_scale = LARGE_LABELS / output["out_dim"]
    large_parameters = plan["totals"]["parameter_bytes"] + \
        (LARGE_LABELS - output["out_dim"]) * (output["in_dim"] + 1) * 4
    batch = plan["batch_size"]
    result["model"] = {
        "amazon670k": modelled(measured, one_process, threads, threads, batch, plan["totals"]["parameter_bytes"], 1.0),
        "10M labels": modelled(measured, one_process, threads, threads, batch, large_parameters, large_scale)}
    (out / "distributed.json").write_text(json.dumps(result, indent=1) + "\n")
    for shape, table in result["model"].items():
        print(shape)
        for row in table:
            print("  " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))


if __name__ == "__main__":
    main()
