"""What this machine is: cores, memory, instruction set, C compiler and which of its flags work.

Probed once per process; the compiler probe (a few tiny compiles) is also remembered on disk, keyed by the
compiler's identity and the CPU, so a warm ``boltc.load`` starts without running the compiler.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, TypeVar

PROBE_VERSION = 1
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Machine:
    cores: int
    memory_bytes: int
    arch: str
    cpu_model: str
    isa: tuple[str, ...]  # SIMD extensions boltc cares about, e.g. ("avx2", "avx512f")
    cpu_fingerprint: str  # hash of every CPU feature flag: -march=native output depends on all of them
    compiler: tuple[str, ...]  # the C compiler command, e.g. ("gcc",) or ("ccache", "clang")
    compiler_id: str  # first line of `cc --version`
    native_flag: bool  # -march=native (or -mcpu=native) accepted
    openmp: bool  # -fopenmp compiles and links

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def cflags(self) -> tuple[str, ...]:
        flags = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
        if self.native_flag:
            flags.append("-mcpu=native" if self.arch in ("arm64", "aarch64") else "-march=native")
        if self.openmp:
            flags.append("-fopenmp")
        return tuple(flags)

    @property
    def ldflags(self) -> tuple[str, ...]:
        return ("-fopenmp",) if self.openmp else ()


def cache_root() -> Path:
    """``$BOLTC_CACHE_DIR``, else ``$XDG_CACHE_HOME/boltc``, else ``~/.cache/boltc``; created user-only."""
    configured = os.environ.get("BOLTC_CACHE_DIR")
    if configured:
        root = Path(configured)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "boltc"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def read_cached_choice(folder: str, key: str, from_json: Callable[[dict], T]) -> T | None:
    """A choice measured earlier (``cache_root()/folder/key.json``) as `from_json` makes it, or None where there is
    none or it cannot be read: either way the caller measures again."""
    try:
        data = json.loads((cache_root() / folder / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        return from_json(data) if data is not None else None
    except (ValueError, KeyError, TypeError):
        return None


def store_choice(folder: str, key: str, data: dict) -> None:
    """Write a measured choice whole or not at all: a reader never sees half of it."""
    path = cache_root() / folder / f"{key}.json"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_flags() -> tuple[str, str]:
    """(model name, space-separated feature flags) from /proc/cpuinfo where there is one."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), ""
    model, flags = "", ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and not model:
            model = value.strip()
        if key in ("flags", "Features") and not flags:
            flags = value.strip()
    return model or platform.machine(), flags


def _compiler() -> tuple[str, ...]:
    configured = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    command = tuple(shlex.split(configured))
    if shutil.which(command[0]) is None and shutil.which("cc"):
        command = ("cc",)
    return command


def _compiler_id(compiler: tuple[str, ...]) -> str:
    try:
        done = subprocess.run([*compiler, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout.splitlines() or [""])[0].strip()


def _compiles(compiler: tuple[str, ...], flags: list[str], program: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="boltc-probe-") as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text(program)
        try:
            done = subprocess.run([*compiler, *flags, str(source), "-o", str(Path(tmp) / "probe")],
                                  capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0


_OPENMP_PROBE = """#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
n += 1;
return n > 0 && omp_get_max_threads() > 0 ? 0 : 1; }
"""


def _probe_compiler(compiler: tuple[str, ...], compiler_id: str, arch: str, fingerprint: str) -> dict:
    key = hashlib.sha256(json.dumps([PROBE_VERSION, compiler, compiler_id, fingerprint]).encode()).hexdigest()[:24]
    path = cache_root() / "machine" / f"{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    native = "-mcpu=native" if arch in ("arm64", "aarch64") else "-march=native"
    result = {
        "native_flag": _compiles(compiler, [native], "int main(void) { return 0; }\n"),
        "openmp": _compiles(compiler, ["-fopenmp"], _OPENMP_PROBE),
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(result))
    os.replace(temporary, path)
    return result


def probe() -> Machine:
    """This machine; ``BOLTC_OPENMP=0`` asks for a serial build even where the compiler has OpenMP."""
    machine = _probe()
    if os.environ.get("BOLTC_OPENMP") == "0" and machine.openmp:
        return dataclasses.replace(machine, openmp=False)
    return machine


@functools.lru_cache(maxsize=1)
def _probe() -> Machine:
    cpu_model, flags = _cpu_flags()
    arch = platform.machine().lower()
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_bf16", "neon", "asimd", "sve")
    present = set(flags.split())
    isa = tuple(f for f in wanted if f in present)
    fingerprint = hashlib.sha256(f"{arch}|{cpu_model}|{flags}".encode()).hexdigest()[:16]
    compiler = _compiler()
    compiler_id = _compiler_id(compiler)
    found = _probe_compiler(compiler, compiler_id, arch, fingerprint)
    return Machine(cores=_usable_cores(), memory_bytes=_memory_bytes(), arch=arch, cpu_model=cpu_model,
                   isa=isa, cpu_fingerprint=fingerprint, compiler=compiler, compiler_id=compiler_id,
                   native_flag=found["native_flag"], openmp=found["openmp"])
