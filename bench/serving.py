#!/usr/bin/env python3
"""Serving a trained model: ``boltc serve`` under load, against the same model through the Python API in-process and
through the C library ``boltc export`` writes.

From a trained model file (e.g. the Amazon-670K-shaped one ``bench/streaming.py`` saves) and an XMC file of rows to
ask about, it measures, each in a process of its own:

1. the inference-only copy (``model.save(path, inference_only=True)``, after choosing sparse inference's LSH
   candidate count on ``--choose-on`` rows where given): its size, and the seconds from ``load_model`` to the first
   prediction in a fresh process (the model's compiled code cached, as on a server that ran it before);
2. the Python API in-process: batch-1 latency (p50 / p99) and rows per second at the model's batch size;
3. ``boltc serve`` on 127.0.0.1 with sparse inference, called by 1, 8 and 64 clients (each on a keep-alive
   connection, sending its next request when its last is answered; a bounded number of requests and seconds per
   level): rows per second, p50 / p99 latency, failed requests, and the server's batch sizes;
4. the exported C library: batch-1 latency, built with the flags boltc compiles with here.

    python bench/serving.py MODEL.boltm ROWS.txt [--requests 2000] [--seconds 60] [--rows-per-request 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))
from common import machine_info  # noqa: E402


def log(message: str) -> None:
    print(f"serving: {message}", file=sys.stderr, flush=True)


def xmc_rows(path: Path, count: int) -> list[dict]:
    """The first `count` rows of an XMC file as /predict rows ({"id": value})."""
    rows = []
    with open(path) as data:
        data.readline()
        for line in data:
            fields = line.split()
            if fields and ":" not in fields[0]:
                fields = fields[1:]
            rows.append({entry.split(":")[0]: float(entry.split(":")[1]) for entry in fields})
            if len(rows) == count:
                break
    return rows


FIRST_PREDICTION = """
import json, sys, time
sys.modules["interegular"] = None  # only the test extra installs it; lark would spend 0.3 s checking the grammar
started = time.perf_counter()
import boltc
from boltc.data import read_xmc
imported = time.perf_counter()
model = boltc.load_model(sys.argv[1])
loaded = time.perf_counter()
row = read_xmc(sys.argv[2], n_features=model.plan.inputs[0].dim, n_labels=model.plan.target_dim)
ready = time.perf_counter()
model.predict(row, top_k=5, sparse=True)
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - started, "load_seconds": loaded - imported,
                  "first_prediction_seconds": done - ready,
                  "load_to_first_prediction_seconds": done - ready + loaded - imported}))
"""

SERVING_COPY = """
import json, sys
import boltc
model = boltc.load_model(sys.argv[1])
check = model.choose_lsh_candidates(sys.argv[3]) if sys.argv[3] else model.sparse_check
model.save(sys.argv[2], inference_only=True)
print(json.dumps({"sparse_check": check, "lsh_candidates": model.lsh_candidates}))
"""

IN_PROCESS = """
import json, sys, time
import numpy as np
import boltc
from boltc.data import read_xmc, Dataset, FeatureMatrix
model = boltc.load_model(sys.argv[1])
model.threads = int(sys.argv[4])
data = read_xmc(sys.argv[2], n_features=model.plan.inputs[0].dim, n_labels=model.plan.target_dim)
count = min(int(sys.argv[3]), data.n_rows)
m = data.features[0]
def row(r):
    a, b = m.indptr[r], m.indptr[r + 1]
    return Dataset(None, 1, (FeatureMatrix(m.dim, indptr=np.array([0, b - a]), indices=m.indices[a:b],
                                           values=m.values[a:b]),), data.n_labels, None, None)
model.predict(row(0), top_k=5, sparse=True)
seconds = []
for r in range(count):
    one = row(r)
    started = time.perf_counter()
    model.predict(one, top_k=5, sparse=True)
    seconds.append(time.perf_counter() - started)
started = time.perf_counter()
model.predict(data, top_k=5, sparse=True)
batched = data.n_rows / (time.perf_counter() - started)
print(json.dumps({"rows": count, "p50_ms": 1e3 * float(np.percentile(seconds, 50)),
                  "p99_ms": 1e3 * float(np.percentile(seconds, 99)), "batch1_rows_per_second": count / sum(seconds),
                  "batched_rows_per_second": batched, "batch_size": model.plan.batch_size}))
"""


def in_child(script: str, *arguments: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True, check=False,
                          cwd=REPO_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"serving: a measurement failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def load_level(port: int, rows: list[dict], concurrency: int, requests: int, seconds: float,
                     rows_per_request: int) -> dict:
    """`concurrency` clients, each on a keep-alive connection of its own and sending its next request when its last
    is answered, until `requests` were sent or `seconds` passed. The client is plain asyncio streams: on a 2-core
    machine a heavier client (httpx spends about a millisecond a request) would take the server's CPU and measure
    itself."""
    latencies, failures, sent = [], 0, 0
    deadline = time.perf_counter() + seconds

    def request(number: int) -> bytes:
        first = (number * rows_per_request) % max(1, len(rows) - rows_per_request + 1)
        body = json.dumps({"rows": rows[first:first + rows_per_request], "top_k": 5}).encode()
        return (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def answered(reader) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        return lines[0].split()[1] == b"200"

    async def client() -> None:
        nonlocal failures, sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while sent < requests and time.perf_counter() < deadline:
                message = request(sent)
                sent += 1
                started = time.perf_counter()
                writer.write(message)
                await writer.drain()
                try:
                    ok = await asyncio.wait_for(answered(reader), 30)
                except (asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, StopIteration):
                    failures += 1
                    return
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [float("nan")]
    return {"concurrency": concurrency, "rows_per_request": rows_per_request, "requests": len(latencies),
            "failed": failures, "rows_per_second": len(latencies) * rows_per_request / elapsed,
            "p50_ms": 1e3 * ordered[len(ordered) // 2], "p99_ms": 1e3 * ordered[int(0.99 * (len(ordered) - 1))]}


def served(model: Path, rows: list[dict], levels: list[int], requests: int, seconds: float,
           rows_per_request: int, threads: int) -> list[dict]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "boltc.cli", "serve", str(model), "--port", str(port),
                               "--threads", str(threads)], stderr=subprocess.PIPE, text=True)
    import httpx

    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("serving: the server did not come up")

        def batches() -> tuple[float, float]:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            found = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                     if line.startswith("boltc_batch_rows_")}
            return found["boltc_batch_rows_count"], found["boltc_batch_rows_sum"]

        results = []
        for concurrency in levels:
            asyncio.run(load_level(port, rows, concurrency, min(requests, 200), seconds, rows_per_request))  # warm
            calls_before, rows_before = batches()
            found = asyncio.run(load_level(port, rows, concurrency, requests, seconds, rows_per_request))
            calls, batch_rows = batches()
            found["mean_batch_rows"] = (batch_rows - rows_before) / max(1.0, calls - calls_before)
            log(f"served, {concurrency} in flight: {found}")
            results.append(found)
        return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def exported(model: Path, data: Path, rows: int, threads: int, work: Path) -> dict:
    library = work / "lib"
    subprocess.run([sys.executable, "-m", "boltc.cli", "export", str(model), "--out", str(library)], check=True,
                   cwd=REPO_ROOT, capture_output=True)
    subprocess.run(["make", "-C", str(library), "libboltc_model.a"], check=True, capture_output=True)
    flags = [line.split("=", 1)[1].split() for line in (library / "Makefile").read_text().splitlines()
             if line.startswith("CFLAGS ?=")][0]
    binary = work / "latency"
    subprocess.run(["cc", *flags, "-I", str(library), str(REPO_ROOT / "bench" / "serving_latency.c"),
                    str(library / "libboltc_model.a"), "-fopenmp", "-lm", "-o", str(binary)], check=True)
    done = subprocess.run([str(binary), str(library / "weights.bin"), str(data), str(rows), "5", str(threads)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("rows", type=Path, help="an XMC data file: the rows the clients send")
    parser.add_argument("--requests", type=int, default=2000, help="requests per load level, at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds per load level, at most")
    parser.add_argument("--rows-per-request", type=int, default=1)
    parser.add_argument("--choose-on", type=Path, metavar="FILE",
                        help="held-out rows to choose sparse inference's LSH candidate count on, as fit() does on "
                             "its validation rows (for a model trained without them)")
    parser.add_argument("--levels", default="1,8,64")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "serving")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine_info(args.threads), "model": str(args.model)}
    with tempfile.TemporaryDirectory(prefix="boltc-serving-") as work:
        work = Path(work)
        serving_copy = work / "model.serve.boltm"
        results["serving_copy"] = in_child(SERVING_COPY, str(args.model), str(serving_copy), str(args.choose_on or ""))
        log(f"serving copy: {results['serving_copy']}")
        one_row = work / "one.txt"
        with open(args.rows) as source:
            header, first = source.readline().split(), source.readline()
        one_row.write_text(f"1 {header[1]} {header[2]}\n{first}")
        in_child(FIRST_PREDICTION, str(serving_copy), str(one_row))  # the page cache holds the file, as it would
        results["model_bytes"] = args.model.stat().st_size
        results["inference_only_bytes"] = serving_copy.stat().st_size
        results["first_prediction"] = in_child(FIRST_PREDICTION, str(serving_copy), str(one_row))
        log(f"inference-only copy {results['inference_only_bytes'] / 1e6:,.0f} MB (full "
            f"{results['model_bytes'] / 1e6:,.0f} MB): {results['first_prediction']}")
        results["python_in_process"] = in_child(IN_PROCESS, str(serving_copy), str(args.rows), str(args.requests),
                                                str(args.threads))
        log(f"Python API in-process: {results['python_in_process']}")
        rows = xmc_rows(args.rows, max(args.requests, 64) * args.rows_per_request)
        results["served"] = served(serving_copy, rows, [int(c) for c in args.levels.split(",")], args.requests,
                                   args.seconds, args.rows_per_request, args.threads)
        if shutil.which("make") and shutil.which("cc"):
            results["exported_c"] = exported(serving_copy, args.rows, args.requests, args.threads, work)
            log(f"exported C library, batch 1: {results['exported_c']}")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
