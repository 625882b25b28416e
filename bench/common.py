"""What the bench scripts share: the machine record, finding the boltc command, starting PyTorch with a fixed
thread count, and writing prepared data (atomically, skipped when up to date). Scripts import it after putting
bench/ on sys.path."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import sys
from pathlib import Path
from typing import Iterable


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


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``: readers never see half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def up_to_date_meta(out_dir: Path, output_names: Iterable[str], sources: Iterable[Path],
                    parameters: dict) -> dict | None:
    """The meta.json (one of ``output_names``, written last) of outputs that all exist, are newer than every
    source file and were made with these ``parameters`` (each equal to the meta's entry of its name); else None."""
    outputs = [out_dir / name for name in output_names]
    if not all(p.is_file() for p in outputs):
        return None
    if min(p.stat().st_mtime for p in outputs) <= max((s.stat().st_mtime for s in sources), default=0.0):
        return None
    try:
        meta = json.loads((out_dir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if all(meta.get(name) == value for name, value in parameters.items()) else None


def prepare_arguments(description: str, default_out: Path, repo_root: Path) -> argparse.ArgumentParser:
    """The options every data-preparing script has (--out, --force); the script adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=default_out,
                        help=f"output directory (default: {default_out.relative_to(repo_root)})")
    parser.add_argument("--force", action="store_true", help="rebuild even when the outputs are up to date")
    return parser
