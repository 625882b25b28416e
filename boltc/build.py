"""``CSource`` + ``Machine`` -> ``CompiledLibrary``: compile with cffi (API mode) into a content-addressed cache.

The cache key covers everything that can change the binary: the C text itself (so a template change can never be
served a stale library), the runtime headers, the cffi declarations, the compiler's identity and flags, the CPU
(``-march=native``), the Python ABI and the cffi version. Builds happen in a private temporary folder and are moved
into place with ``os.replace``; ``meta.json`` is written last and marks an entry complete, so processes racing on
one key never see half an entry and need no lock. A cached library that fails to load is deleted and rebuilt.

Environment: ``BOLTC_CACHE_DIR`` (location), ``BOLTC_CACHE=0`` (compile afresh, keep nothing),
``BOLTC_VERBOSE=1`` (print the compiler commands), ``BOLTC_CFLAGS`` (extra flags, part of the key);
``BOLTC_OPENMP=0`` (a serial build) is read by machine.probe.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cffi

from boltc import __version__
from boltc.diagnostics import BuildError
from boltc.emit import CSource
from boltc.machine import Machine, cache_root

CACHE_LAYOUT = "v1"


@dataclass(frozen=True)
class CompiledLibrary:
    ffi: Any
    lib: Any
    module_name: str
    key: str
    so_path: Path
    c_path: Path
    compiled: bool  # whether this call ran the compiler (False: served from the cache)
    compile_seconds: float


class _Stats:
    """Counts compiler runs in this process, so tests can prove a warm load compiled nothing."""

    compiles = 0


stats = _Stats()


def _extension_suffix() -> str:
    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def compile_flags(machine: Machine) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The machine's flags plus ``BOLTC_CFLAGS``."""
    extra = tuple(shlex.split(os.environ.get("BOLTC_CFLAGS", "")))
    return machine.cflags + extra, machine.ldflags


def cache_key(source: CSource, machine: Machine) -> str:
    cflags, ldflags = compile_flags(machine)
    headers = {}
    if source.include_dir:
        for header in sorted(Path(source.include_dir).glob("*.h")):
            headers[header.name] = hashlib.sha256(header.read_bytes()).hexdigest()
    material = {
        "layout": CACHE_LAYOUT,
        "boltc": __version__,
        "source": source.digest,
        "headers": headers,
        "cdef": hashlib.sha256(source.cdef.encode()).hexdigest(),
        "compiler": list(machine.compiler),
        "compiler_id": machine.compiler_id,
        "cflags": list(cflags),
        "ldflags": list(ldflags),
        "cpu": machine.cpu_fingerprint,
        "python_abi": _extension_suffix(),
        "cffi": cffi.__version__,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@contextlib.contextmanager
def _output_to(log_path: Path, echo: bool):
    """Send the compiler's stdout/stderr (written by child processes, not Python) into the build log."""
    if echo:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _import_library(module_name: str, so_path: Path):
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, so_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {so_path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[module_name] = module
    return module


def _safe_to_load(path: Path) -> bool:
    """Never load a library that another user could have replaced."""
    try:
        info = path.stat()
        parent = path.parent.stat()
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return owner_ok and not (info.st_mode & 0o022) and not (parent.st_mode & 0o022)


def _compile(source: CSource, machine: Machine, module_name: str, workdir: Path) -> Path:
    cflags, ldflags = compile_flags(machine)
    ffi = cffi.FFI()
    ffi.cdef(source.cdef)
    ffi.set_source(module_name, source.c_text, include_dirs=[source.include_dir] if source.include_dir else [],
                   extra_compile_args=list(cflags), extra_link_args=list(ldflags))
    c_path = workdir / "module.c"
    c_path.write_text(source.c_text)
    log_path = workdir / "build.log"
    verbose = os.environ.get("BOLTC_VERBOSE") == "1"
    environment = dict(os.environ)
    os.environ["CC"] = shlex.join(machine.compiler)
    try:
        with _output_to(log_path, echo=verbose):
            built = ffi.compile(tmpdir=str(workdir), verbose=verbose)
    except Exception as exc:  # cffi reports compiler failures as several distutils/setuptools error types
        tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
        raise BuildError(f"the C compiler failed on generated code for '{source.slug}': {exc}",
                         command=machine.compiler, log_path=str(log_path), stderr_tail=tail,
                         c_path=str(c_path)) from None
    finally:
        os.environ.clear()
        os.environ.update(environment)
    stats.compiles += 1
    return Path(built)


def cache_entry(source: CSource, machine: Machine) -> tuple[str, Path]:
    """The key of a source on this machine and the cache folder that holds (or will hold) its library."""
    key = cache_key(source, machine)
    return key, cache_root() / CACHE_LAYOUT / key[:2] / key


def is_cached(entry: Path) -> bool:
    return (entry / "meta.json").exists()


def build(source: CSource, machine: Machine) -> CompiledLibrary:
    key, entry = cache_entry(source, machine)
    module_name = f"_boltc_{source.slug}_{key[:16]}"
    use_cache = os.environ.get("BOLTC_CACHE", "1") != "0"
    root = cache_root()
    so_path = entry / f"{module_name}{_extension_suffix()}"
    c_path = entry / "module.c"

    if use_cache and is_cached(entry):
        if _safe_to_load(so_path):
            try:
                module = _import_library(module_name, so_path)
                return CompiledLibrary(module.ffi, module.lib, module_name, key, so_path, c_path, False, 0.0)
            except ImportError as exc:
                print(f"boltc: cached library {so_path} does not load ({exc}); rebuilding", file=sys.stderr)
        shutil.rmtree(entry, ignore_errors=True)

    scratch = root / "tmp"
    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir = Path(tempfile.mkdtemp(prefix=f"{module_name}-", dir=scratch))
    started = time.perf_counter()
    try:
        built = _compile(source, machine, module_name, workdir)
        seconds = time.perf_counter() - started
        if not use_cache:
            # a loaded library stays mapped after its file is deleted, so nothing needs to be kept
            module = _import_library(module_name, built)
            return CompiledLibrary(module.ffi, module.lib, module_name, key, built, workdir / "module.c", True,
                                   seconds)
        entry.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomically(c_path, source.c_text.encode())
        if (workdir / "build.log").exists():
            os.replace(workdir / "build.log", entry / "build.log")
        os.chmod(built, 0o755)
        os.replace(built, so_path)
        meta = {"key": key, "module": module_name, "boltc": __version__, "built_at": time.time(),
                "compile_seconds": seconds, "cflags": list(compile_flags(machine)[0])}
        _write_atomically(entry / "meta.json", json.dumps(meta, indent=1).encode())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    module = _import_library(module_name, so_path)
    return CompiledLibrary(module.ffi, module.lib, module_name, key, so_path, c_path, True, seconds)
