"""Model files: a versioned, checksummed container of named arrays plus a JSON header; never pickle.

Layout: the 8-byte magic ``BOLTMDL\\n``, a little-endian u64 header length, the UTF-8 JSON header, the SHA-256 of
the header (32 bytes), then each array's raw little-endian bytes at the 64-byte aligned offset the header gives
(from the payload, which blanks after the JSON put at a 64-byte boundary of the file: arrays can be mapped).
The header carries a SHA-256 of each array (format 3; format 2's one of all arrays together is still read), so
every byte is checked: the header's before its spec is compiled, the arrays' as they are read. Writes go to a
temporary file in the same folder, are fsynced and renamed over the target, so a crash leaves either the old file
or the new one, never a mix.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from boltc.diagnostics import ModelFileError

MAGIC = b"BOLTMDL\n"
FORMAT_VERSION = 3
# 2: one SHA-256 of all the arrays together; 3: one per array, which a mapped read checks on several threads
READABLE_VERSIONS = (2, 3)
ABANDONED_AFTER_SECONDS = 3600  # no save takes an hour between two writes to its file
DIGEST_BYTES = 32
# the dtypes boltc saves; anything else in an array table (an object dtype above all) is refused
ARRAY_KINDS = frozenset("fiub")
ALIGN = 64


def _aligned(offset: int) -> int:
    return (offset + ALIGN - 1) // ALIGN * ALIGN


def write_model_file(path: str | Path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    path = Path(path)
    table, contents, offset = [], [], 0
    for name, array in arrays.items():
        offset = _aligned(offset)
        dtype = array.dtype.newbyteorder("<")
        content = memoryview(np.ascontiguousarray(array, dtype=dtype).reshape(-1).view(np.uint8))  # no copy if LE
        table.append({"name": name, "dtype": dtype.str, "shape": list(array.shape), "offset": offset,
                      "nbytes": int(array.nbytes), "sha256": hashlib.sha256(content).hexdigest()})
        contents.append(content)
        offset += array.nbytes
    full_header = {**header, "format_version": FORMAT_VERSION, "arrays": table}
    header_bytes = json.dumps(full_header, indent=1).encode()
    # blanks after the JSON put the arrays at a 64-byte boundary of the file, so that mapped ones are aligned
    header_bytes += b" " * (-(len(MAGIC) + 8 + len(header_bytes) + DIGEST_BYTES) % ALIGN)
    header_digest = hashlib.sha256(header_bytes).digest()

    def write(out) -> None:
        out.write(MAGIC + struct.pack("<Q", len(header_bytes)) + header_bytes + header_digest)
        start = out.tell()
        for entry, content in zip(table, contents):
            out.write(b"\0" * (start + entry["offset"] - out.tell()))
            out.write(content)

    write_atomically(path, write)


def write_atomically(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """What `write` writes to a binary handle, into `path`: through a temporary file in the same folder, fsynced and
    renamed over it, so that a crash leaves the old file or the new one, never a mix."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ModelFileError(str(path), f"cannot write here ({exc.strerror})") from None
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ModelFileError(str(path), f"cannot write ({exc.strerror})") from None
        raise
    _sync_directory(directory)
    _remove_abandoned_temporaries(path)


def _remove_abandoned_temporaries(path: Path) -> None:
    """Delete what saves of ``path`` killed mid-write left (their temporary files), once they are old enough that
    no save still running can own them."""
    cutoff = time.time() - ABANDONED_AFTER_SECONDS
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except OSError:
            pass


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_model_file(path: str | Path) -> bool:
    """Whether `path` is a file that starts as a model file does (its header is checked when it is read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_header(path: str | Path) -> tuple[dict, int]:
    """The header of a model file and where its arrays begin, reading only the header's bytes."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(MAGIC) + 8)
            if not head.startswith(MAGIC):
                raise ModelFileError(str(path), "not a boltc model file (wrong magic bytes)")
            if len(head) < len(MAGIC) + 8:
                raise ModelFileError(str(path), "truncated model file")
            (header_length,) = struct.unpack_from("<Q", head, len(MAGIC))
            # a damaged length must not make us allocate it: the header cannot be longer than the file
            if header_length + DIGEST_BYTES > os.fstat(handle.fileno()).st_size - len(head):
                raise ModelFileError(str(path), "truncated model file (header cut short)")
            header_bytes = handle.read(header_length)
            header_digest = handle.read(DIGEST_BYTES)
    except FileNotFoundError:
        raise ModelFileError(str(path), "no such model file") from None
    except OSError as exc:
        raise ModelFileError(str(path), f"cannot read ({exc.strerror})") from None
    try:
        header = json.loads(header_bytes)
    except (ValueError, RecursionError):  # RecursionError: brackets nested past Python's stack
        header = None
    version = header.get("format_version") if isinstance(header, dict) else None
    if version is not None and version not in READABLE_VERSIONS:
        raise ModelFileError(str(path), f"model file format {version} is not supported (this boltc reads "
                             f"formats {', '.join(map(str, READABLE_VERSIONS))})")
    if hashlib.sha256(header_bytes).digest() != header_digest or version is None:
        raise ModelFileError(str(path), "corrupted model file (header checksum mismatch)")
    return header, len(MAGIC) + 8 + header_length + DIGEST_BYTES


def read_arrays(path: str | Path, header: dict, payload_at: int,
                destination: dict[str, np.ndarray] | None = None, mapped: bool = False) -> dict[str, np.ndarray]:
    """The arrays of a model file, checksum verified. An array whose name, shape and dtype match one in
    `destination` is read straight into it (a large model is then never held twice in memory). ``mapped``: every
    array is a copy-on-write map of the file instead (pages are read when first used and shared between the
    processes that map the file; a write stays in this process), its checksum verified on as many threads as
    there are cores."""
    path = Path(path)
    destination = destination or {}
    arrays, contents, whole = {}, {}, hashlib.sha256()
    per_array = header.get("format_version") != 2
    try:
        with open(path, "rb") as handle:
            payload_bytes = os.fstat(handle.fileno()).st_size - payload_at
            for entry in header["arrays"]:
                dtype, shape, offset = np.dtype(entry["dtype"]), tuple(entry["shape"]), entry["offset"]
                whole_numbers = [*shape, offset, entry["nbytes"]]
                if dtype.kind not in ARRAY_KINDS or not all(type(n) is int and n >= 0 for n in whole_numbers):
                    raise ValueError(entry)
                nbytes = dtype.itemsize * math.prod(shape)
                if offset + nbytes > payload_bytes or nbytes != entry["nbytes"]:
                    raise ModelFileError(str(path), f"truncated model file (array '{entry['name']}' is cut short)")
                if mapped and nbytes and dtype.isnative and (payload_at + offset) % dtype.itemsize == 0:
                    target = np.memmap(handle, dtype=dtype, mode="c", offset=payload_at + offset, shape=shape)
                    content = memoryview(target.reshape(-1).view(np.uint8))
                else:
                    target = destination.get(entry["name"])
                    if target is None or target.shape != shape or target.dtype != dtype.newbyteorder("="):
                        target = np.empty(shape, dtype=dtype)
                    handle.seek(payload_at + offset)
                    content = memoryview(target.reshape(-1).view(np.uint8))
                    if handle.readinto(content) != nbytes:
                        raise ModelFileError(str(path), f"truncated model file (array '{entry['name']}' is cut "
                                                        "short)")
                if per_array:
                    contents[entry["name"]] = (content, entry["sha256"])
                else:
                    whole.update(content)
                arrays[entry["name"]] = target
    except OSError as exc:
        raise ModelFileError(str(path), f"cannot read ({exc.strerror})") from None
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(str(path), "corrupted model file (bad array table)") from None
    if per_array:
        with ThreadPoolExecutor(max(1, min(len(contents), os.cpu_count() or 1))) as hashing:  # hashlib frees the GIL
            found = list(hashing.map(lambda content: hashlib.sha256(content).hexdigest(),
                                     [content for content, _ in contents.values()]))
        intact = all(digest == expected for digest, (_, expected) in zip(found, contents.values()))
    else:
        intact = whole.hexdigest() == header.get("sha256")
    if not intact:
        raise ModelFileError(str(path), "corrupted model file (checksum mismatch)")
    return arrays


def read_model_file(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    header, payload_at = read_header(path)
    return header, read_arrays(path, header, payload_at)
