"""``CSource`` + ``Machine`` -> ``CompiledLibrary``: compile with cffi (API mode) into a content-addressed cache.

The cache key covers everything that can change the binary: the C text itself (so a template change can never be
served a stale library), the runtime headers, the cffi declarations, the compiler's identity and flags, the CPU
(``-march=native``), the Python ABI and the cffi version. Builds happen in a private temporary folder, where the
entry (library, C text, build log and ``meta.json``) is assembled and then renamed into place whole, so processes
racing on one key never see half an entry and need no lock. ``meta.json`` also holds the library's SHA-256: a cached
library whose bytes no longer match, or that fails to load, is removed and rebuilt. The cache's folders are
user-only (0700); a library is loaded only if it and every folder from it up to the cache root belong to the user
and are writable by no one else (a folder of the user's that others can write is made private again and the
libraries below it are rebuilt).

Environment: ``BOLTC_CACHE_DIR`` (location), ``BOLTC_CACHE=0`` (compile afresh, keep nothing),
``BOLTC_VERBOSE=1`` (print the compiler commands), ``BOLTC_CFLAGS`` (extra flags, part of the key),
``BOLTC_SANITIZE=address,undefined`` (build with those sanitizers, for testing; the Python process must have the
AddressSanitizer runtime preloaded); ``BOLTC_OPENMP=0`` (a serial build) is read by machine.probe.
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
SANITIZERS = frozenset({"address", "undefined"})


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
    """The machine's flags plus ``BOLTC_CFLAGS`` and ``BOLTC_SANITIZE``'s."""
    extra = tuple(shlex.split(os.environ.get("BOLTC_CFLAGS", "")))
    sanitize = sanitizers()
    if not sanitize:
        return machine.cflags + extra, machine.ldflags
    # -O1 and frame pointers: reports with whole stacks; UBSan's findings abort instead of scrolling past
    checked = (f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g", "-O1")
    return machine.cflags + extra + checked, machine.ldflags + (f"-fsanitize={sanitize}",)


def sanitizers() -> str:
    """``BOLTC_SANITIZE``'s comma-separated sanitizers, checked against those that can run inside Python."""
    wanted = [name.strip() for name in os.environ.get("BOLTC_SANITIZE", "").split(",") if name.strip()]
    unknown = sorted(set(wanted) - SANITIZERS)
    if unknown:
        raise BuildError(f"BOLTC_SANITIZE: unknown sanitizer {', '.join(unknown)} (known: "
                         f"{', '.join(sorted(SANITIZERS))})")
    if "address" in wanted and not _asan_runtime_loaded():
        raise BuildError("BOLTC_SANITIZE=address needs the AddressSanitizer runtime loaded before Python starts: "
                         "run with LD_PRELOAD=$(cc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0")
    return ",".join(wanted)


def _asan_runtime_loaded() -> bool:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            mapped = maps.read()
    except OSError:  # no /proc (macOS): let the loader say what is missing
        return True
    return "libasan" in mapped or "libclang_rt.asan" in mapped


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


def _private_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents user-only (``mkdir(parents=True)`` gives parents the umask's
    mode)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)


def _owned(info: os.stat_result) -> bool:
    return not hasattr(os, "getuid") or info.st_uid == os.getuid()


def _owned_and_private(path: Path) -> bool:
    """Whether ``path`` belongs to this user and no one else can write it (so no one else can replace what is in
    it)."""
    try:
        info = path.stat()
    except OSError:
        return False
    return _owned(info) and not info.st_mode & 0o022


def _secure_cache_folders(entry: Path, root: Path, scratch: Path) -> None:
    """Refuse a cache folder another user owns; make one of ours that others can write private again, and rebuild
    what is below it (someone may have swapped it). Covers each existing folder from ``entry`` up to ``root``, and
    the build scratch folder."""
    for folder in [root, scratch, *[f for f in (entry, *entry.parents) if root in f.parents]]:
        if not folder.exists() or _owned_and_private(folder):
            continue
        if not _owned(folder.stat()):
            raise BuildError(f"the compile cache folder {folder} belongs to another user; boltc will not load code "
                             "from it: set BOLTC_CACHE_DIR to a folder of your own")
        os.chmod(folder, 0o700)
        print(f"boltc: made the compile cache folder {folder} private (others could write to it); the libraries "
              "below it are rebuilt", file=sys.stderr)
        _discard(root / CACHE_LAYOUT if folder in (root, scratch) else folder, scratch)


def _discard(folder: Path, scratch: Path) -> None:
    """Remove a cache folder without a window in which another process sees it half deleted: it is renamed into
    the scratch folder first (if another process moved it already, there is nothing to do)."""
    _private_folder(scratch)
    graveyard = Path(tempfile.mkdtemp(prefix="discarded-", dir=scratch))
    try:
        os.rename(folder, graveyard / "folder")
    except OSError:
        pass
    shutil.rmtree(graveyard, ignore_errors=True)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached_library_problem(so_path: Path, entry: Path) -> str | None:
    """Why the cached library cannot be loaded as it stands, or None."""
    if not _owned_and_private(so_path):
        return "is missing, someone else's or writable by others"
    try:
        recorded = json.loads((entry / "meta.json").read_bytes()).get("sha256")
    except (OSError, ValueError, AttributeError):
        return "has an unreadable meta.json"
    if recorded != _file_digest(so_path):
        return "does not match the checksum it was built with"
    return None


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
    scratch = root / "tmp"
    so_name = f"{module_name}{_extension_suffix()}"
    if use_cache:
        _secure_cache_folders(entry, root, scratch)
        cached = _load_cached(module_name, key, entry / so_name, entry, scratch)
        if cached is not None:
            return cached

    _private_folder(scratch)
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
        _publish(source, machine, key, module_name, built, seconds, workdir, entry, scratch)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    module = _import_library(module_name, entry / so_name)
    return CompiledLibrary(module.ffi, module.lib, module_name, key, entry / so_name, entry / "module.c", True,
                           seconds)


def _load_cached(module_name: str, key: str, so_path: Path, entry: Path, scratch: Path) -> CompiledLibrary | None:
    """The cached library of this entry, or None (none yet, or one that cannot be trusted: then it is removed)."""
    if not is_cached(entry):
        return None
    problem = _cached_library_problem(so_path, entry)
    if problem is None:
        try:
            module = _import_library(module_name, so_path)
            return CompiledLibrary(module.ffi, module.lib, module_name, key, so_path, entry / "module.c", False, 0.0)
        except ImportError as exc:
            problem = f"does not load ({exc})"
    print(f"boltc: cached library {so_path} {problem}; rebuilding", file=sys.stderr)
    _discard(entry, scratch)
    return None


def _publish(source: CSource, machine: Machine, key: str, module_name: str, built: Path, seconds: float,
             workdir: Path, entry: Path, scratch: Path) -> None:
    """Put a new library into the cache as one complete entry: it is assembled beside the build and renamed into
    place, so no process ever sees part of an entry. When another process published the same entry first, its
    library (built from the same source) is kept."""
    staging = workdir / "entry"
    staging.mkdir(mode=0o700)
    (staging / "module.c").write_text(source.c_text)
    if (workdir / "build.log").exists():
        os.replace(workdir / "build.log", staging / "build.log")
    os.chmod(built, 0o755)
    meta = {"key": key, "module": module_name, "boltc": __version__, "built_at": time.time(),
            "compile_seconds": seconds, "cflags": list(compile_flags(machine)[0]), "sha256": _file_digest(built)}
    os.replace(built, staging / built.name)
    (staging / "meta.json").write_text(json.dumps(meta, indent=1))
    _private_folder(entry.parent)
    for _ in range(2):
        try:
            os.rename(staging, entry)
            return
        except OSError:
            if is_cached(entry):
                return
            _discard(entry, scratch)  # a folder without meta.json: left by an older boltc; never complete
    raise BuildError(f"cannot put the library for '{source.slug}' into the compile cache at {entry}")
