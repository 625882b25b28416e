"""CSV/TSV files with a header, read through a model's typed columns: the generated C featurizes each record
(``templates/columns.c.j2`` over ``runtime/bolt_columns.h``) into one CSR matrix per input, and maps the target
column's label names to ids through a vocabulary learned from the training file.

The delimiter is a tab for ``.tsv`` / ``.tab`` files, otherwise a comma unless the header holds tabs and no commas.
Fields follow RFC 4180: quoted fields may hold delimiters, quotes (doubled) and line breaks; blank lines are skipped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from boltc.data import Dataset, FeatureMatrix, FileBytes
from boltc.diagnostics import DataError
from boltc.plan import Plan

MOST_FIELDS = 1 << 16
SPARE_LABELS = 4096  # the first scan's vocabulary has room for 4x the declared labels and this many more
ARENA_BYTES_PER_LABEL = 64


def _delimiter(path: str, data: Any, size: int) -> str:
    if Path(path).suffix.lower() in (".tsv", ".tab"):
        return "\t"
    first_line = bytes(data[:min(size, 1 << 16)]).split(b"\n", 1)[0]
    return "\t" if b"\t" in first_line and b"," not in first_line else ","


def _header(ffi, lib, path: str, data, size: int, delimiter: str) -> tuple[list[str], int]:
    n_fields = ffi.new("int32_t *")
    message = ffi.new("char[256]")
    start = lib.bolt_columns_header(data, size, ord(delimiter), MOST_FIELDS, n_fields, message)
    if start < 0:
        raise DataError(path, 1, f"cannot read the header: {ffi.string(message).decode('ascii', 'replace')}")
    text = bytes(ffi.buffer(data, start)[:]).decode("utf-8-sig", errors="replace")
    names = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    return [name.strip() for name in names], int(start)


def _field_of(path: str, names: list[str], header: str, what: str) -> int:
    places = [i for i, name in enumerate(names) if name == header]
    if not places:
        shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
        raise DataError(path, 1, f"no column '{header}' for {what} (the header has {shown})")
    if len(places) > 1:
        raise DataError(path, 1, f"column '{header}' appears {len(places)} times in the header")
    return places[0]


class _Vocabulary:
    """The C reader's label table: strings in one byte arena, an open-addressing table of their ids."""

    def __init__(self, capacity: int, arena_bytes: int, known: Sequence[str] = ()):
        encoded = [name.encode() for name in known]
        capacity = max(capacity, len(encoded), 1)
        self.offset = np.zeros(capacity, dtype=np.int64)
        self.length = np.zeros(capacity, dtype=np.int32)
        self.arena = np.zeros(max(arena_bytes, sum(map(len, encoded)), 1), dtype=np.uint8)
        self.slots = np.full(1 << (2 * capacity).bit_length(), -1, dtype=np.int32)
        at = 0
        for e, name in enumerate(encoded):
            self.offset[e], self.length[e] = at, len(name)
            self.arena[at:at + len(name)] = np.frombuffer(name, dtype=np.uint8)
            at += len(name)
        self.size, self.used = len(encoded), at

    def attach(self, ffi, job) -> None:
        job.vocab_size, job.vocab_capacity = self.size, len(self.offset)
        job.vocab_offset = ffi.cast("int64_t *", self.offset.ctypes.data)
        job.vocab_length = ffi.cast("int32_t *", self.length.ctypes.data)
        job.arena = ffi.cast("char *", self.arena.ctypes.data)
        job.arena_used, job.arena_capacity = self.used, len(self.arena)
        job.slots = ffi.cast("int32_t *", self.slots.ctypes.data)
        job.slot_count = len(self.slots)

    def names(self, count: int) -> tuple[str, ...]:
        return tuple(bytes(self.arena[self.offset[e]:self.offset[e] + self.length[e]]).decode()
                     for e in range(count))


@dataclass(frozen=True, eq=False)
class HistoryKeys:
    """A history input's raw material from one file, a row each: the key's hash (a user), the item's hash (0 for
    an empty field) and the order value."""

    users: np.ndarray  # uint64
    items: np.ndarray  # uint64
    order: np.ndarray  # float64

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (self.users, self.items, self.order):
            digest.update(np.ascontiguousarray(array).view(np.uint8).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class HistoryState:
    """Each key's latest items (at most the input's `last`), oldest first: what rows read later see first."""

    users: np.ndarray  # uint64, sorted, unique
    indptr: np.ndarray  # int64 [users + 1]
    items: np.ndarray  # uint64

    @staticmethod
    def empty() -> HistoryState:
        return HistoryState(np.zeros(0, np.uint64), np.zeros(1, np.int64), np.zeros(0, np.uint64))


def history_features(keys: HistoryKeys, state: HistoryState, last: int, features: int,
                     library) -> tuple[FeatureMatrix, HistoryState]:
    """Each row's history: the items of the rows with its key that come before it in (order, file position), after
    the items `state` holds for that key (the past of the whole file), at most `last` of them, newest first; each
    item is an entry as itself and one at its position from the newest (runtime bolt_history_ids). Also returns the
    state once this file's rows are added. Vectorised: one sort of all events, no loop over rows."""
    rows, held = len(keys.users), len(state.items)
    users = np.concatenate([np.repeat(state.users, np.diff(state.indptr)), keys.users])
    items = np.concatenate([state.items, keys.items])
    order = np.concatenate([np.full(held, -np.inf), keys.order])
    sequence = np.concatenate([np.arange(held, dtype=np.int64) - held, np.arange(rows, dtype=np.int64)])
    sort = np.lexsort((sequence, order, users))
    users, items, sequence = users[sort], items[sort], sequence[sort]
    counts = (items != 0).astype(np.int64)
    before = np.cumsum(counts) - counts  # items strictly before each event, over all keys
    first = np.ones(len(users), dtype=bool)
    first[1:] = users[1:] != users[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(users)), 0))
    begin = np.maximum(before[group_start], before - last)
    itemised = np.flatnonzero(counts)  # sorted positions of the events that have an item
    # rows of this file, in file order: their items are itemised[begin:end], the newest at end - 1
    of_rows = np.flatnonzero(sequence >= 0)[np.argsort(sequence[sequence >= 0], kind="stable")]
    lengths = before[of_rows] - begin[of_rows]
    total = int(lengths.sum())
    starts = np.repeat(begin[of_rows], lengths)
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    taken = starts + offsets
    history_items = np.ascontiguousarray(items[itemised[taken]])
    positions = np.ascontiguousarray(np.repeat(before[of_rows], lengths) - 1 - taken, dtype=np.int32)
    bag, ordered = np.empty(total, np.int32), np.empty(total, np.int32)
    ffi = library.ffi
    library.lib.bolt_history_ids(total, ffi.cast("uint64_t *", history_items.ctypes.data),
                                 ffi.cast("int32_t *", positions.ctypes.data), features,
                                 ffi.cast("int32_t *", bag.ctypes.data), ffi.cast("int32_t *", ordered.ctypes.data))
    row_of_entry = np.repeat(np.arange(rows, dtype=np.int64), lengths)
    merged, repeats = np.unique(np.concatenate([row_of_entry * features + bag, row_of_entry * features + ordered]),
                                return_counts=True)
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(merged // features, minlength=rows), out=indptr[1:])
    matrix = FeatureMatrix(features, indptr=indptr, indices=(merged % features).astype(np.int32),
                           values=repeats.astype(np.float32))
    # the state after this file: each key's last `last` items
    ends = np.r_[np.flatnonzero(first)[1:] - 1, len(users) - 1] if len(users) else np.zeros(0, np.int64)
    group_end = before[ends] + counts[ends]
    group_begin = np.maximum(before[np.flatnonzero(first)], group_end - last)
    kept = group_end - group_begin
    has = kept > 0
    new_indptr = np.zeros(int(has.sum()) + 1, dtype=np.int64)
    np.cumsum(kept[has], out=new_indptr[1:])
    spans = np.repeat(group_begin[has], kept[has]) + np.arange(int(kept[has].sum()), dtype=np.int64) \
        - np.repeat(new_indptr[:-1], kept[has])
    new_state = HistoryState(users[np.flatnonzero(first)][has], new_indptr, items[itemised[spans]])
    return matrix, new_state


def read_columns(path: str | Path, plan: Plan, library, vocabulary: Sequence[str] | None, labelled: bool,
                 threads: int = 1) -> tuple[Dataset, tuple[str, ...] | None, dict[int, HistoryKeys]]:
    """The file's rows featurized for `plan`'s inputs, and their labels when `labelled`: ids of `vocabulary`
    (labels it lacks are left out, with a warning), or, when `vocabulary` is None, of one learned from this file in
    order of first appearance (returned). History inputs come back empty, with their keys by input index: a row's
    history depends on what came before the file (``history_features``). Raises DataError with the line and column
    of the first bad field."""
    del threads  # records may span lines: one thread reads
    name = str(path)
    ffi, lib = library.ffi, library.lib
    try:
        source = FileBytes(name)
    except OSError as exc:
        raise DataError(name, None, f"cannot read the file: {exc.strerror or exc}") from None
    data = ffi.from_buffer("char[]", source.data) if source.size else ffi.NULL
    try:
        if not source.size:
            raise DataError(name, None, "the file is empty: expected a header line naming its columns")
        delimiter = _delimiter(name, source.data, source.size)
        names, start = _header(ffi, lib, name, data, source.size, delimiter)
        columns = [(i, i_plan.column) for i, i_plan in enumerate(plan.inputs) if i_plan.column is not None]
        fields = [-1 if column.kind == "history" and not labelled and column.header not in names
                  else _field_of(name, names, column.header, f"input '{plan.inputs[i].name}'") for i, column in columns]
        histories = [i for i, column in columns if column.kind == "history"]
        by_field = np.array([_field_of(name, names, column.by, f"input '{plan.inputs[i].name}'")
                             if column.kind == "history" else -1 for i, column in columns], dtype=np.int32)
        order_field = np.array([_field_of(name, names, column.order, f"input '{plan.inputs[i].name}'")
                                if column.kind == "history" and column.order else -1 for i, column in columns],
                               dtype=np.int32)
        target_field = _field_of(name, names, plan.target_header, "the target") if labelled else -1
        n_inputs = len(plan.inputs)
        input_field = np.array(fields, dtype=np.int32)
        entries = np.zeros(n_inputs, dtype=np.int64)
        job = ffi.new("bolt_columns_job *")
        job.delimiter, job.n_fields, job.n_inputs = ord(delimiter), len(names), n_inputs
        job.input_field = ffi.cast("int32_t *", input_field.ctypes.data)
        job.by_field = ffi.cast("int32_t *", by_field.ctypes.data)
        job.order_field = ffi.cast("int32_t *", order_field.ctypes.data)
        job.target_field = target_field
        job.label_delimiter = ord(plan.target_delimiter) if plan.target_delimiter else 0
        job.start, job.first_line = start, 1 + bytes(ffi.buffer(data, start)[:]).count(b"\n")
        job.entries = ffi.cast("int64_t *", entries.ctypes.data)
        learning = labelled and vocabulary is None
        job.grow = int(learning)
        labels = _Vocabulary(4 * plan.target_dim + SPARE_LABELS if learning else 0,
                             ARENA_BYTES_PER_LABEL * (4 * plan.target_dim + SPARE_LABELS) if learning else 0,
                             vocabulary or ())

        def run(fill: int) -> int:
            job.fill = fill
            return lib.bolt_columns_read(data, source.size, job)

        labels.attach(ffi, job)
        status = run(0)
        if status == -2:  # more names than room: read again with room for every one, to say how many there are
            labels = _Vocabulary(source.size // 2 + 2, source.size + 1)
            labels.attach(ffi, job)
            status = run(0)
        _check(name, names, job, status, ffi)
        if learning and job.vocab_size > plan.target_dim:
            raise DataError(name, None, f"column '{plan.target_header}' holds {job.vocab_size:,} distinct labels, but "
                                        f"the target declares {plan.target_kind}[{plan.target_dim}]")
        rows = int(job.rows)
        if rows == 0:
            raise DataError(name, None, "the file holds no data rows after its header")
        indptr = [np.zeros(rows + 1, dtype=np.int64) for _ in range(n_inputs)]
        indices = [np.zeros(int(count), dtype=np.int32) for count in entries]
        values = [np.zeros(int(count), dtype=np.float32) for count in entries]
        keep = [ffi.new("int64_t *[]", [ffi.cast("int64_t *", a.ctypes.data) for a in indptr]),
                ffi.new("int32_t *[]", [ffi.cast("int32_t *", a.ctypes.data) for a in indices]),
                ffi.new("float *[]", [ffi.cast("float *", a.ctypes.data) for a in values])]
        job.indptr, job.indices, job.values = keep
        history_keys = {i: np.zeros(2 * rows, dtype=np.uint64) for i in histories}
        history_order = {i: np.zeros(rows, dtype=np.float64) for i in histories}
        unused = np.zeros(1, dtype=np.uint64)
        keep += [ffi.new("uint64_t *[]", [ffi.cast("uint64_t *", history_keys.get(i, unused).ctypes.data)
                                          for i in range(n_inputs)]),
                 ffi.new("double *[]", [ffi.cast("double *", history_order.get(i, unused).ctypes.data)
                                        for i in range(n_inputs)])]
        job.history_keys, job.history_order = keep[3], keep[4]
        label_indptr = np.zeros(rows + 1, dtype=np.int64) if labelled else None
        label_ids = np.zeros(int(job.labels), dtype=np.int32) if labelled else None
        if labelled:
            job.label_indptr = ffi.cast("int64_t *", label_indptr.ctypes.data)
            job.label_ids = ffi.cast("int32_t *", label_ids.ctypes.data)
        _check(name, names, job, run(1), ffi)
        unknown = int(job.unknown_labels)
        learned = labels.names(int(job.vocab_size)) if learning else None
    finally:
        if data != ffi.NULL:
            ffi.release(data)
        source.close()
    if unknown:
        warnings.warn(f"{name}: {unknown:,} labels of column '{plan.target_header}' were not seen in training and "
                      "are left out", stacklevel=3)
    features = tuple(FeatureMatrix(i.dim, indptr=indptr[k], indices=indices[k], values=values[k])
                     for k, i in enumerate(plan.inputs))
    dataset = Dataset(name, rows, features, plan.target_dim, label_indptr, label_ids)
    keys = {i: HistoryKeys(history_keys[i][0::2].copy(), history_keys[i][1::2].copy(), history_order[i])
            for i in histories}
    return dataset, learned, keys


def _check(path: str, names: list[str], job, status: int, ffi) -> None:
    if status == 0:
        return
    message = ffi.string(job.message).decode("utf-8", "replace")
    if job.error_field >= 0:
        message = f"column '{names[job.error_field]}': {message}"
    raise DataError(path, int(job.error_line) or None, message)
