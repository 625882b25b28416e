"""Data sets: XMC / libsvm text files parsed in C, and in-memory arrays, as CSR or dense matrices numpy owns.

A ``Dataset`` holds one ``FeatureMatrix`` per model input and the labels of every row in CSR form
(``label_ids[label_indptr[r]:label_indptr[r + 1]]`` are the labels of row ``r``). Sparse rows and label lists are
sorted by id and hold no id twice, whichever way the data came in.

``read_xmc`` parses the text in ``runtime/bolt_data.h``: a scan pass that validates and counts, then a fill pass
that writes arrays allocated here at their exact size. The reader is compiled once (and cached on disk by
``boltc.build``); both passes run without the GIL and, where OpenMP is available, on several threads.

Nothing here knows about models, specs or training: callers check that a data set fits their model.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import gzip
import hashlib
import itertools
import math
import mmap
import operator
import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from boltc.abi import cdef_block
from boltc.diagnostics import DataError, UsageError
from boltc.resources import runtime_dir

_HEADER = "bolt_data.h"
ID_LIMIT = 2**31  # ids are int32: at most this many features or labels


@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """One model input over all rows: ``dense`` float32 [rows, dim], or CSR ``indptr``/``indices``/``values``.

    CSR rows are sorted by feature id without repeats. The arrays may share memory with what they were made from;
    treat them as read-only. Compared by identity (arrays have no single truth value).
    """

    dim: int
    dense: np.ndarray | None = None
    indptr: np.ndarray | None = None  # int64 [rows + 1]
    indices: np.ndarray | None = None  # int32 [nnz]
    values: np.ndarray | None = None  # float32 [nnz]

    def __post_init__(self) -> None:
        if self.dense is not None:
            if any(a is not None for a in (self.indptr, self.indices, self.values)):
                raise ValueError("FeatureMatrix: give either dense or indptr/indices/values, not both")
            d = self.dense
            if d.dtype != np.float32 or d.ndim != 2 or not d.flags.c_contiguous or d.shape[1] != self.dim:
                raise ValueError(f"FeatureMatrix: dense must be C-contiguous float32 [rows, {self.dim}], "
                                 f"got {d.dtype} {d.shape}")
            return
        if self.indptr is None or self.indices is None or self.values is None:
            raise ValueError("FeatureMatrix: give dense, or all of indptr, indices and values")
        for name, array, dtype in (("indptr", self.indptr, np.int64), ("indices", self.indices, np.int32),
                                   ("values", self.values, np.float32)):
            if array.dtype != dtype or array.ndim != 1 or not array.flags.c_contiguous:
                raise ValueError(f"FeatureMatrix: {name} must be a contiguous 1-D {np.dtype(dtype)} array, "
                                 f"got {array.dtype} {array.shape}")
        if len(self.indptr) < 1 or self.indptr[0] != 0 or self.indptr[-1] != len(self.indices) \
                or len(self.values) != len(self.indices):
            raise ValueError("FeatureMatrix: indptr must start at 0 and end at len(indices) == len(values)")

    @property
    def is_sparse(self) -> bool:
        return self.dense is None

    @property
    def n_rows(self) -> int:
        return self.dense.shape[0] if self.dense is not None else len(self.indptr) - 1

    @functools.cached_property
    def max_row_nnz(self) -> int:
        """Most stored entries in one row: ``dim`` for a dense matrix (every entry is stored)."""
        if self.dense is not None:
            return self.dim if self.dense.shape[0] else 0
        return int(np.diff(self.indptr).max()) if len(self.indptr) > 1 else 0


@dataclass(frozen=True, eq=False)
class Dataset:
    """Rows of features for each model input, and their labels (both label arrays are None without labels)."""

    path: str | None  # the file it was read from; None for arrays
    n_rows: int
    features: tuple[FeatureMatrix, ...]  # one per model input, in the model's input order
    n_labels: int
    label_indptr: np.ndarray | None  # int64 [n_rows + 1]
    label_ids: np.ndarray | None  # int32, sorted within each row
    skipped_rows: int = 0  # rows a file reader left out (skip_bad_rows)
    first_skipped: str | None = None  # "line N: what was wrong" of the first of them
    # its standardised dense inputs are scaled already (apply_scaling): a model reading it again leaves them be
    standardized: bool = False

    def __post_init__(self) -> None:
        for matrix in self.features:
            if matrix.n_rows != self.n_rows:
                raise ValueError(f"Dataset: a feature matrix has {matrix.n_rows} rows, expected {self.n_rows}")
        if (self.label_indptr is None) != (self.label_ids is None):
            raise ValueError("Dataset: label_indptr and label_ids are both given or both None")
        if self.label_indptr is not None:
            if self.label_indptr.dtype != np.int64 or self.label_indptr.shape != (self.n_rows + 1,):
                raise ValueError(f"Dataset: label_indptr must be int64 [{self.n_rows + 1}]")
            if self.label_ids.dtype != np.int32 or self.label_ids.ndim != 1 \
                    or self.label_indptr[-1] != len(self.label_ids):
                raise ValueError("Dataset: label_ids must be int32 and as long as label_indptr[-1]")

    @property
    def has_labels(self) -> bool:
        return self.label_ids is not None

    def labels_of(self, row: int) -> np.ndarray:
        if self.label_ids is None:
            raise UsageError("this data set has no labels")
        return self.label_ids[self.label_indptr[row]:self.label_indptr[row + 1]]


def _csr_rows(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """indptr of the chosen rows, and the positions of their entries in the original arrays."""
    lengths = indptr[rows + 1] - indptr[rows]
    new_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    positions = np.repeat(indptr[rows] - new_indptr[:-1], lengths) + np.arange(new_indptr[-1], dtype=np.int64)
    return new_indptr, positions


def data_fingerprint(dataset: Dataset) -> str:
    """A digest of the data set's arrays (a file's name would not do: rows taken from it keep its path)."""
    digest = hashlib.sha256(f"{dataset.n_rows}|{dataset.n_labels}".encode())
    arrays = [a for m in dataset.features for a in (m.dense, m.indptr, m.indices, m.values) if a is not None]
    arrays += [a for a in (dataset.label_indptr, dataset.label_ids) if a is not None]
    for array in arrays:
        digest.update(np.ascontiguousarray(array).view(np.uint8).tobytes())
    return digest.hexdigest()[:24]


def take_rows(dataset: Dataset, rows: np.ndarray) -> Dataset:
    """The given rows of a data set, in that order (copies)."""
    rows = np.asarray(rows, dtype=np.int64)
    features = []
    for matrix in dataset.features:
        if not matrix.is_sparse:
            features.append(FeatureMatrix(matrix.dim, dense=np.ascontiguousarray(matrix.dense[rows])))
            continue
        indptr, positions = _csr_rows(matrix.indptr, rows)
        features.append(FeatureMatrix(matrix.dim, indptr=indptr, indices=matrix.indices[positions],
                                      values=matrix.values[positions]))
    label_indptr = label_ids = None
    if dataset.has_labels:
        label_indptr, positions = _csr_rows(dataset.label_indptr, rows)
        label_ids = dataset.label_ids[positions]
    return Dataset(dataset.path, len(rows), tuple(features), dataset.n_labels, label_indptr, label_ids,
                   standardized=dataset.standardized)


# ---- reading text files ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def xmc_reader() -> Any:
    """The compiled C reader (a ``CompiledLibrary``): built once per process, served from the disk cache after."""
    from boltc import machine
    from boltc.build import build
    from boltc.emit import CSource

    source = CSource(slug="data_reader", c_text=f'#include "{_HEADER}"\n', cdef=cdef_block(runtime_dir() / _HEADER),
                     include_dir=str(runtime_dir()))
    return build(source, machine.probe())


def _count(value: Any, what: str, *, optional: bool = False) -> int | None:
    """A dimension argument: an int in 1 .. 2^31 (or None where that is allowed)."""
    if value is None and optional:
        return None
    if isinstance(value, bool):
        raise UsageError(f"{what} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise UsageError(f"{what} must be an integer, got {value!r}") from None
    if not 1 <= number <= ID_LIMIT:
        raise UsageError(f"{what} must be between 1 and {ID_LIMIT}, got {number}")
    return number


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
PATTERN_CHARACTERS = "*?["


def _unzstd(path: str) -> bytes:
    """Every frame of a zstd file; a file cut inside a frame is an error (a streaming reader would stop quietly)."""
    try:
        import zstandard
    except ImportError:
        raise DataError(path, None, "the file is zstd-compressed: reading it needs the zstandard package "
                                    "(pip install 'boltc[zstd]')") from None
    with open(path, "rb") as raw:
        packed = raw.read()
    pieces = []
    try:
        while packed:
            frame = zstandard.ZstdDecompressor().decompressobj()
            pieces.append(frame.decompress(packed))
            if not frame.eof:
                raise zstandard.ZstdError("the data ends inside a frame (a truncated file?)")
            packed = frame.unused_data
    except zstandard.ZstdError as exc:
        raise DataError(path, None, f"cannot decompress the zstd file: {exc}") from None
    return b"".join(pieces)


def _decompressed(path: str, head: bytes) -> bytes | None:
    """The bytes of a gzip or zstd file, known by their magic number whatever the file's name; None for others."""
    if head[:4] == ZSTD_MAGIC:
        return _unzstd(path)
    if head[:2] != GZIP_MAGIC:
        return None
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DataError(path, None, f"cannot decompress the gzip file: {exc}") from None


class FileBytes:
    """The file's bytes without copying them (a read-only mapping); plain reading where mapping is impossible. A
    gzip or zstd file gives its decompressed bytes, held in memory."""

    def __init__(self, path: str):
        self.map: mmap.mmap | None = None
        with open(path, "rb") as handle:
            try:
                self.map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # empty files, pipes, special files: no mapping
                self.map = None
            self.data: Any = self.map if self.map is not None else handle.read()
        decompressed = _decompressed(path, bytes(self.data[:4]))
        if decompressed is not None:
            self.close()
            self.map, self.data = None, decompressed
        elif self.map is not None and hasattr(self.map, "madvise") and hasattr(mmap, "MADV_SEQUENTIAL"):
            self.map.madvise(mmap.MADV_SEQUENTIAL)
        self.size = len(self.data)

    def close(self) -> None:
        if self.map is not None:
            self.map.close()


def data_files(path: str | os.PathLike) -> list[str]:
    """The files a data path names, in a fixed order: the file itself; a directory's files by name, leaving out
    those whose names start with . or _ (hidden, and the markers Spark and Hadoop write, such as _SUCCESS); or the
    matches of a pattern such as ``data/part-*.csv`` by name."""
    name = os.fspath(path)
    if os.path.isdir(name):
        found = sorted(str(entry) for entry in Path(name).iterdir() if entry.is_file()
                       and not entry.name.startswith((".", "_")))
        if not found:
            raise DataError(name, None, "the directory holds no data files")
        return found
    if not os.path.exists(name) and any(character in name for character in PATTERN_CHARACTERS):
        found = sorted(match for match in glob.glob(name) if os.path.isfile(match))
        if not found:
            raise DataError(name, None, "no file matches this pattern")
        return found
    return [name]


def stacked_indptr(indptrs: Sequence[np.ndarray]) -> np.ndarray:
    """The CSR row pointers of matrices put one under another."""
    starts = np.cumsum([0] + [int(indptr[-1]) for indptr in indptrs[:-1]])
    return np.concatenate([np.zeros(1, np.int64)] + [indptr[1:] + start for indptr, start in zip(indptrs, starts)])


def concatenated(path: str, parts: Sequence[Dataset]) -> Dataset:
    """The rows of data sets read from the files of one data path, one after another. Dimensions are the largest
    of the parts' (they differ only where read_xmc found them from ids), labels empty for a part without any."""
    if len(parts) == 1:
        return parts[0]
    features = []
    for k in range(len(parts[0].features)):
        matrices = [part.features[k] for part in parts]
        features.append(FeatureMatrix(max(m.dim for m in matrices), indptr=stacked_indptr([m.indptr for m in matrices]),
                                      indices=np.concatenate([m.indices for m in matrices]),
                                      values=np.concatenate([m.values for m in matrices])))
    label_indptr = label_ids = None
    if any(part.has_labels for part in parts):
        counts = [np.diff(part.label_indptr) if part.has_labels else np.zeros(part.n_rows, np.int64) for part in parts]
        label_indptr = np.zeros(sum(part.n_rows for part in parts) + 1, dtype=np.int64)
        np.cumsum(np.concatenate(counts), out=label_indptr[1:])
        label_ids = np.concatenate([part.label_ids for part in parts if part.has_labels]).astype(np.int32, copy=False)
    skipped = [part for part in parts if part.skipped_rows]
    return Dataset(path, sum(part.n_rows for part in parts), tuple(features), max(part.n_labels for part in parts),
                   label_indptr, label_ids, skipped_rows=sum(part.skipped_rows for part in parts),
                   first_skipped=f"{skipped[0].path} {skipped[0].first_skipped}" if skipped else None)


def _check(name: str, info: Any, ffi: Any, lines_before: int = 0) -> None:
    if info.status != 0:
        line = int(info.error_line) + lines_before if info.error_line else None
        raise DataError(name, line, ffi.string(info.message).decode("ascii", "replace"))


def no_rows_error(name: str, rows: str, skipped: int, first_skipped: str | None) -> DataError:
    """The error of a file without a usable row (``rows`` names what was looked for), saying how many were skipped."""
    return DataError(name, None, f"the file holds no {rows}" + (
        f" that could be read ({skipped} skipped; the first, {first_skipped})" if skipped else ""))


def warn_skipped(name: str, skipped: int, first_skipped: str | None, stacklevel: int) -> None:
    """Warn that ``skipped`` rows were left out (skip_bad_rows); ``stacklevel`` as the caller's own warnings.warn."""
    if skipped:
        warnings.warn(f"{name}: skipped {skipped} bad row{'s' if skipped > 1 else ''} (the first, {first_skipped})",
                      stacklevel=stacklevel + 1)


def read_xmc(path: str | os.PathLike, n_features: int | None = None, n_labels: int | None = None, *,
             threads: int = 0, skip_bad_rows: bool = False) -> Dataset:
    """Reads an XMC or libsvm text file into a ``Dataset`` with one CSR feature matrix.

    Format: an optional header ``N_ROWS N_FEATURES N_LABELS``, then one row per line, ``l1,l2,... f:v f:v ...``
    with 0-based ids (the label field may be empty; the line then starts with a blank or a feature entry).

    ``n_features`` / ``n_labels`` are the model's sizes: every id must be below them, and a header must state the
    same numbers. Without them the header's numbers apply, and without a header the largest id seen + 1.
    ``threads`` (0: OpenMP's default) sets how many threads parse. Labels are ``None`` when no row has any.
    Raises ``DataError(path, line, message)`` for the first problem in the file; with ``skip_bad_rows``, a row
    with a problem is left out instead, counted in the Dataset's ``skipped_rows`` (the first one's line and
    problem in ``first_skipped``) and warned about. A bad header, or a file that changes while it is read, is
    still an error.

    ``path`` may also name a directory or a pattern (``data/part-*.txt``): its files are read in name order, their
    rows one after another.
    """
    n_features = _count(n_features, "n_features", optional=True)
    n_labels = _count(n_labels, "n_labels", optional=True)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= threads <= 4096:
        raise UsageError(f"threads must be an integer from 0 to 4096, got {threads!r}")
    parts = []
    for name in data_files(path):  # a loop, not a comprehension: the warnings' stack level counts frames
        parts.append(_read_xmc_file(name, n_features, n_labels, threads, skip_bad_rows))
    return concatenated(os.fspath(path), parts)


def _read_xmc_file(name: str, n_features: int | None, n_labels: int | None, threads: int,
                   skip_bad_rows: bool) -> Dataset:
    compiled = xmc_reader()  # before the file is opened: a build error then leaves nothing open
    try:
        source = FileBytes(name)
    except OSError as exc:
        raise DataError(name, None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        return parse_xmc(compiled, name, source.data, source.size, XmcOptions(n_features, n_labels, threads,
                                                                              skip_bad_rows), stacklevel=4)[0]
    finally:
        source.close()


@dataclass(frozen=True)
class XmcOptions:
    """How ``parse_xmc`` reads: the model's sizes (None: the header's), threads, and whether bad rows are skipped."""

    n_features: int | None
    n_labels: int | None
    threads: int
    skip_bad_rows: bool


XMC_WHOLE_FILE, XMC_FIRST_PART, XMC_LATER_PART = 0, 1, 2  # runtime/bolt_data.h BOLT_DATA_*_PART


def parse_xmc(compiled, name: str, buffer, size: int, options: XmcOptions, part: int = XMC_WHOLE_FILE,
              lines_before: int = 0, stacklevel: int = 3) -> tuple[Dataset, dict]:
    """The rows of `size` bytes of XMC text in `buffer` (a whole file, or a part of one: a first part may open with
    the header, a later one has none; `lines_before` counts the file's lines before the part, so that errors name
    the file's line), and the header's counts ({} without one)."""
    ffi, lib = compiled.ffi, compiled.lib
    info = ffi.new("bolt_data_info *")
    info.n_features = options.n_features or 0
    info.n_labels = options.n_labels or 0
    info.threads = int(options.threads)
    info.skip_bad_rows = int(bool(options.skip_bad_rows))
    info.part = part
    data = ffi.from_buffer("char[]", buffer) if size else ffi.NULL
    try:
        lib.bolt_data_scan(data, size, info)
        _check(name, info, ffi, lines_before)
        rows, entries, labels = int(info.rows), int(info.entries), int(info.labels)
        skipped = int(info.skipped_rows)
        first_skipped = (f"line {int(info.first_skipped_line) + lines_before}: "
                         f"{ffi.string(info.message).decode('ascii', 'replace')}" if skipped else None)
        if rows == 0 and part == XMC_WHOLE_FILE:
            raise no_rows_error(name, "data rows", skipped, first_skipped)
        indptr = np.empty(rows + 1, dtype=np.int64)
        indices = np.empty(entries, dtype=np.int32)
        values = np.empty(entries, dtype=np.float32)
        label_indptr = np.empty(rows + 1, dtype=np.int64) if labels else None
        label_ids = np.empty(labels, dtype=np.int32) if labels else None

        def pointer(kind: str, array: np.ndarray | None) -> Any:
            return ffi.NULL if array is None else ffi.cast(kind, array.ctypes.data)

        lib.bolt_data_fill(data, size, info, pointer("int64_t *", indptr), pointer("int32_t *", indices),
                           pointer("float *", values), pointer("int64_t *", label_indptr),
                           pointer("int32_t *", label_ids))
        _check(name, info, ffi, lines_before)
    finally:
        if data != ffi.NULL:
            ffi.release(data)
    header = {"rows": int(info.header_rows), "features": int(info.header_features),
              "labels": int(info.header_labels)} if info.has_header else {}
    if options.n_features is not None:
        dim = options.n_features
    elif header:
        dim = header["features"]
    elif info.max_feature_id >= 0:
        dim = int(info.max_feature_id) + 1
    else:
        raise DataError(name, None, "no header, no feature entries and no n_features: the input size is unknown")
    if options.n_labels is not None:
        label_count = options.n_labels
    elif header:
        label_count = header["labels"]
    else:
        label_count = int(info.max_label_id) + 1
    if labels == 0 and rows and part != XMC_WHOLE_FILE:  # a part without labels in a labelled file: empty rows
        label_indptr, label_ids = np.zeros(rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    matrix = FeatureMatrix(dim=dim, indptr=indptr, indices=indices, values=values)
    matrix.__dict__["max_row_nnz"] = int(info.max_row_entries)  # the scan counted it: seed the cached property
    warn_skipped(name, skipped, first_skipped, stacklevel=stacklevel)
    return Dataset(path=name, n_rows=rows, features=(matrix,), n_labels=label_count, label_indptr=label_indptr,
                   label_ids=label_ids, skipped_rows=skipped, first_skipped=first_skipped), header


# ---- arrays ------------------------------------------------------------------------------------------------------

def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _shown(value: Any) -> str:
    """A numpy scalar as Python prints it: 'nan', '2', '0.5' (not 'np.float64(nan)')."""
    return repr(value.item() if hasattr(value, "item") else value)


def _sparse_features(X: Any, dim: int, name: str) -> FeatureMatrix:
    if len(X.shape) != 2:
        raise DataError(name, None, f"must be 2-D [rows, features], got shape {X.shape}")
    if X.shape[1] != dim:
        raise DataError(name, None, f"has {X.shape[1]} columns but n_features is {dim}")
    csr = X.tocsr()
    if csr.dtype.kind not in "biuf":
        raise DataError(name, None, f"holds {csr.dtype} values; expected numbers")
    if not csr.has_canonical_format:  # unsorted or repeated columns: scipy's meaning of repeats is their sum
        csr = csr.copy()
        csr.sum_duplicates()
    with np.errstate(over="ignore", invalid="ignore"):
        values = np.ascontiguousarray(csr.data, dtype=np.float32)
    indptr = np.ascontiguousarray(csr.indptr, dtype=np.int64)
    bad = ~np.isfinite(values)
    if bad.any():
        entry = _first(bad)
        row = int(np.searchsorted(indptr, entry, side="right")) - 1
        raise DataError(name, row + 1, f"row {row + 1}, column {int(csr.indices[entry])}: value "
                                       f"{_shown(csr.data[entry])} is NaN, infinite or beyond the float32 range")
    return FeatureMatrix(dim=dim, indptr=indptr, indices=np.ascontiguousarray(csr.indices, dtype=np.int32),
                         values=values)


def _dense_features(X: Any, dim: int, name: str) -> FeatureMatrix:
    try:
        array = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise DataError(name, None, f"is not a numeric array: {exc}") from None
    if array.ndim != 2:
        raise DataError(name, None, f"must be 2-D [rows, features], got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise DataError(name, None, f"holds {array.dtype} values; expected numbers")
    if array.shape[1] != dim:
        raise DataError(name, None, f"has {array.shape[1]} columns but n_features is {dim}")
    with np.errstate(over="ignore", invalid="ignore"):
        dense = np.ascontiguousarray(array, dtype=np.float32)
    finite = np.isfinite(dense)
    if not finite.all():
        row = _first(~finite.all(axis=1))
        column = _first(~finite[row])
        raise DataError(name, row + 1, f"row {row + 1}, column {column}: value {_shown(array[row, column])} is NaN, "
                                       "infinite or beyond the float32 range")
    return FeatureMatrix(dim=dim, dense=dense)


def _features(X: Any, dim: int, name: str) -> FeatureMatrix:
    return _sparse_features(X, dim, name) if hasattr(X, "tocsr") else _dense_features(X, dim, name)


def _check_label_range(ids: np.ndarray, rows: np.ndarray, n_labels: int) -> None:
    bad = (ids < 0) | (ids >= n_labels)
    if bad.any():
        k = _first(bad)
        row, label = int(rows[k]), int(ids[k])
        why = "is negative" if label < 0 else f"is out of range (n_labels = {n_labels})"
        raise DataError("y", row + 1, f"row {row + 1}: label id {label} {why}")


_LABEL_LIST_TYPES = (list, tuple, set, frozenset, range, np.ndarray)
_Y_KINDS = ("y must be a 1-D integer array of class ids, a list of label-id lists, or a scipy sparse indicator "
            "matrix")


def _labels(y: Any, n_rows: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """(label_indptr, label_ids) with ids sorted within each row; DataError on a bad shape, id or repeat."""
    if hasattr(y, "tocsr"):
        return _indicator_labels(y, n_rows, n_labels)
    if isinstance(y, (list, tuple)) and len(y) and all(isinstance(v, _LABEL_LIST_TYPES) for v in y):
        return _label_lists(y, n_rows, n_labels)
    try:
        array = np.asarray(y)
    except (ValueError, TypeError):
        raise DataError("y", None, _Y_KINDS) from None
    if array.ndim != 1:
        raise DataError("y", None, f"{_Y_KINDS}; got a {array.ndim}-D array")
    if len(array) != n_rows:
        raise DataError("y", None, f"has {len(array)} entries but X has {n_rows} rows")
    if array.dtype.kind not in "iu" and len(array):
        raise DataError("y", None, f"class ids must be integers, got {array.dtype}")
    _check_label_range(array, np.arange(n_rows), n_labels)
    return np.arange(n_rows + 1, dtype=np.int64), array.astype(np.int32)


def _label_lists(y: Sequence[Any], n_rows: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    if len(y) != n_rows:
        raise DataError("y", None, f"has {len(y)} label lists but X has {n_rows} rows")
    counts = np.fromiter((len(v) for v in y), dtype=np.int64, count=n_rows)
    try:
        flat = np.array(list(itertools.chain.from_iterable(y)))
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError("y", None, f"label ids must be integers: {exc}") from None
    if flat.size and flat.dtype.kind not in "iu":
        raise DataError("y", None, f"label ids must be integers, got {flat.dtype}")
    flat = flat.astype(np.int64).reshape(-1)
    rows = np.repeat(np.arange(n_rows), counts)
    _check_label_range(flat, rows, n_labels)
    order = np.lexsort((flat, rows))  # by row, then id: sorted within rows, rows stay in place
    flat = flat[order]
    repeated = (flat[1:] == flat[:-1]) & (rows[1:] == rows[:-1])
    if repeated.any():
        k = _first(repeated)
        raise DataError("y", int(rows[k]) + 1, f"row {int(rows[k]) + 1}: label id {int(flat[k])} appears twice")
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, flat.astype(np.int32)


def _indicator_labels(y: Any, n_rows: int, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    if y.shape != (n_rows, n_labels):
        raise DataError("y", None, f"is a {y.shape[0]} x {y.shape[1]} indicator matrix; expected "
                                   f"{n_rows} x {n_labels} (rows x n_labels)")
    csr = y.tocsr().copy()
    csr.sum_duplicates()
    csr.eliminate_zeros()
    not_one = csr.data != 1
    if not_one.any():
        entry = _first(not_one)
        row = int(np.searchsorted(csr.indptr, entry, side="right")) - 1
        raise DataError("y", row + 1, f"row {row + 1}, column {int(csr.indices[entry])}: indicator value "
                                      f"{_shown(csr.data[entry])} is neither 0 nor 1")
    return np.ascontiguousarray(csr.indptr, dtype=np.int64), np.ascontiguousarray(csr.indices, dtype=np.int32)


def from_arrays(X: Any, y: Any = None, *, n_features: int | Sequence[int] | Mapping[str, int], n_labels: int,
                names: Sequence[str] | None = None) -> Dataset:
    """A ``Dataset`` from in-memory arrays.

    ``X``: a 2-D numpy array (stored dense, float32), a scipy.sparse matrix (stored CSR with sorted columns; repeated
    entries are summed, as scipy means them), or, for a model with several inputs, a dict ``{name: array}``. For a
    dict, ``names`` must list every key once, in the model's input order (dict order is never trusted for that),
    and ``n_features`` is a sequence in that same order or a dict ``{name: dim}``. For one array, ``n_features`` is
    an int and ``names`` is not needed.

    ``y``: None (no labels, e.g. for prediction); a 1-D integer array with one class id per row; a list of
    label-id lists/tuples/sets, one per row (multi-label); or a scipy.sparse 0/1 indicator matrix
    [rows, n_labels]. Every id must be in 0 .. n_labels - 1 and appear at most once per row.

    Raises ``DataError`` naming the array (``X``, ``X['name']`` or ``y``) and the 1-based row where one is at fault.
    """
    n_labels = _count(n_labels, "n_labels")
    if isinstance(X, Mapping):
        if names is None:
            raise UsageError("X is a dict of inputs: pass names=[...] to give their order (the model's input order)")
        order = list(names)
        if len(set(order)) != len(order) or set(order) != set(X):
            raise UsageError(f"names must list each key of X exactly once: names={order}, keys={list(X)}")
        if isinstance(n_features, Mapping):
            missing = [n for n in order if n not in n_features]
            if missing:
                raise UsageError(f"n_features has no size for input(s) {missing}")
            dims = [n_features[n] for n in order]
        elif isinstance(n_features, Sequence) and not isinstance(n_features, str):
            if len(n_features) != len(order):
                raise UsageError(f"n_features has {len(n_features)} sizes for {len(order)} inputs")
            dims = list(n_features)
        else:
            raise UsageError("with a dict X, n_features must be a sequence in names order or a dict of sizes")
        labelled = [(f"X[{n!r}]", X[n], _count(d, f"n_features[{n!r}]")) for n, d in zip(order, dims)]
    else:
        if names is not None and len(list(names)) != 1:
            raise UsageError("names lists the inputs of a dict X; a single array X is one input")
        labelled = [("X", X, _count(n_features, "n_features"))]
    if not labelled:
        raise UsageError("X holds no inputs")

    matrices = tuple(_features(array, dim, name) for name, array, dim in labelled)
    n_rows = matrices[0].n_rows
    for (name, _, _), matrix in zip(labelled, matrices):
        if matrix.n_rows != n_rows:
            raise DataError(name, None, f"has {matrix.n_rows} rows but {labelled[0][0]} has {n_rows}")
    if n_rows == 0:
        raise DataError(labelled[0][0], None, "holds no rows")
    label_indptr = label_ids = None
    if y is not None:
        label_indptr, label_ids = _labels(y, n_rows, n_labels)
    return Dataset(path=None, n_rows=n_rows, features=matrices, n_labels=n_labels, label_indptr=label_indptr,
                   label_ids=label_ids)


@dataclass(frozen=True, slots=True)
class Scaling:
    """Standardisation of one dense input, ``(x - mean) * inverse_std``, from its training rows: each feature centred
    on its mean, all divided by one scale, the root mean square of the features' standard deviations, so that
    features keep their relative sizes. Dividing each feature by its own deviation blows rare features up (a
    Fashion-MNIST border pixel, almost always 0, became a value of hundreds where it was not): test accuracy 0.81
    against 0.87 for the one scale, 8 epochs (bench/README.md)."""

    mean: np.ndarray  # float32 [dim]
    inverse_std: np.ndarray  # float32 [dim]: the same value in every entry (one per feature keeps files general)


def learn_scaling(dataset: Dataset, inputs: Sequence[int], rows: np.ndarray) -> dict[int, Scaling]:
    """``Scaling`` of the given dense inputs over `rows` (float64 sums, in chunks so that no float64 copy of the
    whole input is made)."""
    learned = {}
    for index in inputs:
        matrix = dataset.features[index]
        if len(rows) == 0:
            continue
        total = np.zeros(matrix.dim)
        squares = np.zeros(matrix.dim)
        for start in range(0, len(rows), 8192):
            chunk = _dense_rows(matrix, rows[start:start + 8192]).astype(np.float64)
            total += chunk.sum(axis=0)
            squares += np.square(chunk).sum(axis=0)
        mean = total / len(rows)
        variance = np.maximum(squares / len(rows) - np.square(mean), 0.0)
        scale = math.sqrt(float(variance.mean()))
        inverse = np.full(matrix.dim, 1.0 / scale if scale > 0 else 1.0, dtype=np.float32)
        learned[index] = Scaling(mean.astype(np.float32), inverse)
    return learned


def _dense_rows(matrix: FeatureMatrix, rows: np.ndarray) -> np.ndarray:
    """Rows of a feature matrix as a dense float32 array (a dense input may arrive as CSR rows from a file)."""
    if matrix.dense is not None:
        return matrix.dense[rows]
    indptr, positions = _csr_rows(matrix.indptr, rows)
    out = np.zeros((len(rows), matrix.dim), dtype=np.float32)
    out[np.repeat(np.arange(len(rows)), np.diff(indptr)), matrix.indices[positions]] = matrix.values[positions]
    return out


def apply_scaling(dataset: Dataset, scaling: Mapping[int, Scaling]) -> Dataset:
    """The data set with its standardised dense inputs replaced by scaled dense copies (the others shared); one
    scaled already comes back as it is."""
    if not scaling or dataset.standardized:
        return dataset
    features = list(dataset.features)
    for index, scale in scaling.items():
        matrix = features[index]
        scaled = np.empty((dataset.n_rows, matrix.dim), dtype=np.float32)
        for start in range(0, dataset.n_rows, 8192):
            chunk = _dense_rows(matrix, np.arange(start, min(start + 8192, dataset.n_rows)))
            np.multiply(chunk - scale.mean, scale.inverse_std, out=scaled[start:start + 8192])
        features[index] = FeatureMatrix(matrix.dim, dense=scaled)
    return dataclasses.replace(dataset, features=tuple(features), standardized=True)
