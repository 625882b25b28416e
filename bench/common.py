"""What the bench scripts share: the machine record, finding the boltc command, and starting PyTorch with a fixed
thread count. Scripts import it after putting bench/ on sys.path."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path


def machine_info(threads: int) -> dict:
    cpu_model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        nproc = os.cpu_count()
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            mem_kb = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration, ValueError):
        mem_kb = None
    return {
        "cpu_model": cpu_model or platform.processor() or None,
        "nproc": nproc,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(mem_kb / 2**20, 1) if mem_kb else None,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def find_boltc(explicit: str | None) -> list[str] | None:
    """Command prefix for the boltc CLI: --boltc, else next to this interpreter, else PATH."""
    if explicit:
        return shlex.split(explicit)
    beside = Path(sys.executable).parent / "boltc"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("boltc")
    return [found] if found else None


def tail(text: str, chars: int = 2000) -> str:
    return text if len(text) <= chars else "..." + text[-chars:]


def import_torch(threads: int, seed: int):
    """torch with `threads` threads: its pools are sized when it is imported, so the environment comes first."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return torch


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
