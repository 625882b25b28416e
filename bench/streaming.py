#!/usr/bin/env python3
"""Streaming at scale: one epoch of an Amazon-670K-shaped model on a file larger than a third of this machine's
memory, read as a ``boltc.Stream``, against the same model trained in memory on a slice of the file (its first
--slice-gb, cut at a line), and the evaluation of a --eval-gb slice as a stream; each in a process of its own, which
reports its peak resident memory.

Both trainings use the formula's LSH values (no tuning) and one fixed learning rate, so that they run the same
kernels: the comparison is of samples per second and memory. Make the file first, e.g. (about 10 minutes)::

    python bench/amazon/generate.py --train-rows 8600000 --test-rows 2000 --out /tmp/big   # ~8.2 GB

then (from the repository root)::

    python bench/streaming.py /tmp/big/train.txt [--slice-gb 1] [--eval-gb 2] [--chunk-mb 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = REPO_ROOT / "specs" / "amazon670k.bolt"
LEARNING_RATE = 0.001


def sliced(big: Path, gigabytes: float) -> Path:
    """The file's first `gigabytes` cut after a line, with a header stating its rows (made once)."""
    out = big.with_name(f"{big.stem}.first{gigabytes:g}g.txt")
    if out.exists() and out.stat().st_mtime > big.stat().st_mtime:
        return out
    budget = int(gigabytes * (1 << 30))
    temporary = out.with_suffix(".partial")
    with open(big, "rb") as source, open(temporary, "wb") as target:
        header = source.readline().split()
        target.write(b" " * 32 + b"\n")  # the row count, written once known
        rows, remaining = 0, budget
        # a block at a time: this process's peak memory must stay out of the children's measurements
        while remaining > 0 and (block := source.read(min(64 << 20, remaining))):
            remaining -= len(block)
            if remaining <= 0:
                block = block[:block.rfind(b"\n") + 1]
            rows += block.count(b"\n")
            target.write(block)
        target.seek(0)
        target.write(b" ".join([str(rows).encode(), header[1], header[2]]).ljust(32) + b"\n")
    os.replace(temporary, out)
    return out


def peak_rss_mb() -> float:
    """This process's own peak resident memory: VmHWM, since ru_maxrss also holds the parent's peak (Linux keeps
    the high-water mark of the memory a process had before it exec'd, which for a vfork'd child is its parent's)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_once(data: str, streamed: bool, chunk_mb: int, threads: int, save: str | None) -> dict:
    import boltc

    model = boltc.load(SPEC, tune=False)
    model.threads = threads
    source = boltc.Stream(data, chunk_bytes=chunk_mb << 20) if streamed else data
    started = time.perf_counter()
    history = model.fit(source, epochs=1, learning_rate=LEARNING_RATE, validation=False, progress=False)
    record = history.epochs[0]
    if save:
        model.save(save)
    return {"rows": record.samples, "epoch_seconds": record.seconds, "fit_seconds": time.perf_counter() - started,
            "samples_per_second": record.samples / record.seconds, "peak_rss_mb": peak_rss_mb()}


def evaluate_once(model_path: str, data: str, chunk_mb: int, threads: int) -> dict:
    import boltc

    model = boltc.load_model(model_path)
    model.threads = threads
    started = time.perf_counter()
    results = model.evaluate(boltc.Stream(data, chunk_bytes=chunk_mb << 20), sparse=True)
    rows, _ = model.last_eval_rows
    return {"rows": rows, "seconds": time.perf_counter() - started, "metrics": results, "peak_rss_mb": peak_rss_mb()}


def in_child(*arguments: str) -> dict:
    """This script's --child run in a fresh process: its peak memory is its own."""
    done = subprocess.run([sys.executable, __file__, "--child", *arguments], capture_output=True, text=True,
                          check=False, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"streaming: a run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("big", nargs="?", type=Path)
    parser.add_argument("--slice-gb", type=float, default=1.0)
    parser.add_argument("--eval-gb", type=float, default=2.0)
    parser.add_argument("--chunk-mb", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "streaming")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "train":
            data, streamed, save = rest
            found = train_once(data, streamed == "stream", args.chunk_mb, args.threads, save or None)
        else:
            found = evaluate_once(rest[0], rest[1], args.chunk_mb, args.threads)
        print(json.dumps(found))
        return 0
    if args.big is None:
        parser.error("the big file is needed")
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from common import log, machine_info

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = str(args.out / "streamed.boltm")
    results = {"machine": machine_info(args.threads), "file_bytes": args.big.stat().st_size,
               "chunk_mb": args.chunk_mb}
    piece = sliced(args.big, args.slice_gb)
    results["in_memory_slice"] = in_child("train", str(piece), "memory", "") | {"bytes": piece.stat().st_size}
    log(f"in memory, {piece.name}: {results['in_memory_slice']}")
    results["streamed"] = in_child("train", str(args.big), "stream", model_path)
    log(f"streamed, {args.big.name}: {results['streamed']}")
    evaluated = sliced(args.big, args.eval_gb)
    results["evaluated_stream"] = in_child("evaluate", model_path, str(evaluated)) | {
        "bytes": evaluated.stat().st_size}
    log(f"evaluated as a stream, {evaluated.name}: {results['evaluated_stream']}")
    results["streamed_over_in_memory"] = (results["streamed"]["samples_per_second"]
                                          / results["in_memory_slice"]["samples_per_second"])
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"streamed samples/s over in-memory: {results['streamed_over_in_memory']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
