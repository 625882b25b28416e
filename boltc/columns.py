r"""CSV/TSV files with a header, read through a model's typed columns: the generated C featurizes each record
(``templates/columns.c.j2`` over ``runtime/bolt_columns.h``) into one CSR matrix per input, and maps the target
column's label names to ids through a vocabulary learned from the training file.

How fields are written (``TextFile``): the delimiter is a tab for ``.tsv`` / ``.tab`` files, otherwise whichever of
``, tab ; |`` the header line holds most (a comma when it holds none). Tab-separated files are read as TSV is written
(IANA text/tab-separated-values, PostgreSQL COPY): quotes are ordinary characters and ``\t \n \r \\`` escapes are
decoded; other files follow RFC 4180: quoted fields may hold delimiters, quotes (doubled) and line breaks. Either can
be asked for. Blank lines are skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from boltc.data import Dataset, FeatureMatrix, FileBytes, no_rows_error, stacked_indptr, warn_skipped
from boltc.diagnostics import DataError, UsageError
from boltc.plan import Plan
from boltc.tables import Records, TableBytes, is_parquet, records_bytes, table_bytes

if TYPE_CHECKING:
    from boltc.model import Model

MOST_FIELDS = 1 << 16
HEADER_BYTES_MOST = 1 << 20
# what the reader does with each input (runtime/bolt_columns.h BOLT_ROLE_*): featurize its field, hash the keys
# from which Python assembles a row's history or neighbourhood, or read its number (what bins are learned from)
ROLE_FEATURES, ROLE_HISTORY, ROLE_LINKS, ROLE_VALUE = 0, 1, 2, 3
ROLES = {"history": ROLE_HISTORY, "neighbours": ROLE_LINKS}
SPARE_LABELS = 4096  # the first scan's vocabulary has room for 4x the declared labels and this many more
ARENA_BYTES_PER_LABEL = 64


QUOTINGS = ("csv", "tsv")
DELIMITER_CANDIDATES = (",", "\t", ";", "|")


@dataclass(frozen=True)
class TextFile:
    """A CSV/TSV file for a model with typed columns, with how its fields are written where its name and header do
    not say it. ``delimiter``: one character (default: a tab for .tsv / .tab files, otherwise the one of
    ``, tab ; |`` that the header line holds most). ``quoting``: "csv" (RFC 4180: a field in double quotes may hold
    delimiters, line breaks and "" for a quote) or "tsv" (no quoting: quotes are ordinary characters, and
    ``\\t \\n \\r \\\\`` in a field are a tab, a line break, a carriage return and a backslash); default: "tsv" where
    the delimiter is a tab, otherwise "csv"."""

    path: str | Path
    delimiter: str | None = None
    quoting: str | None = None

    def __post_init__(self):
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in '"\r\n' or
                                           not self.delimiter.isascii()):
            raise UsageError(f"delimiter {self.delimiter!r}: expected one ASCII character other than a quote or a "
                             "line break")
        if self.quoting is not None and self.quoting not in QUOTINGS:
            raise UsageError(f"quoting {self.quoting!r}: expected one of {', '.join(QUOTINGS)}")
        if self.quoting == "tsv" and self.delimiter == "\\":
            raise UsageError("a backslash cannot separate the fields of a file whose fields hold backslash escapes")

    def format_of(self, data: Any, size: int) -> tuple[str, str]:
        """The delimiter and quoting of the file whose bytes are `data`."""
        delimiter = self.delimiter
        if delimiter is None and Path(self.path).suffix.lower() in (".tsv", ".tab"):
            delimiter = "\t"
        if delimiter is None:
            first_line = bytes(data[:min(size, HEADER_BYTES_MOST)]).split(b"\n", 1)[0]
            counts = [first_line.count(candidate.encode()) for candidate in DELIMITER_CANDIDATES]
            delimiter = DELIMITER_CANDIDATES[counts.index(max(counts))]
        return delimiter, self.quoting or ("tsv" if delimiter == "\t" else "csv")


def _header(ffi, lib, path: str, data, size: int, text_format) -> tuple[list[str], int]:
    """The header's column names (blanks around them dropped) and the offset of the first record."""
    n_fields = ffi.new("int32_t *")
    message = ffi.new("char[256]")
    names = np.zeros(min(size, HEADER_BYTES_MOST) + 1, dtype=np.uint8)
    lengths = np.zeros(MOST_FIELDS, dtype=np.int64)
    start = lib.bolt_columns_header(data, size, text_format[0], MOST_FIELDS, n_fields,
                                    ffi.cast("char *", names.ctypes.data), len(names),
                                    ffi.cast("int64_t *", lengths.ctypes.data), message)
    if start < 0:
        raise DataError(path, 1, f"cannot read the header: {ffi.string(message).decode('ascii', 'replace')}")
    ends = np.cumsum(lengths[:n_fields[0]])
    return [bytes(names[end - length:end]).decode("utf-8", "replace").strip()
            for end, length in zip(ends.tolist(), lengths[:n_fields[0]].tolist())], int(start)


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
        """Room for `capacity` names in `arena_bytes` beyond the `known` ones, which keep their ids."""
        self.known = tuple(known)
        encoded = [name.encode() for name in known]
        capacity = max(capacity + len(encoded), 1)
        self.offset = np.zeros(capacity, dtype=np.int64)
        self.length = np.zeros(capacity, dtype=np.int32)
        self.arena = np.zeros(max(arena_bytes + sum(map(len, encoded)), 1), dtype=np.uint8)
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


@dataclass(frozen=True, eq=False)
class LinkKeys:
    """A neighbours input's raw material from one file: each row's node id hash and the hashes of the ids it
    links to (CSR)."""

    nodes: np.ndarray  # uint64 [rows]
    indptr: np.ndarray  # int64 [rows + 1]
    links: np.ndarray  # uint64


@dataclass(frozen=True, eq=False)
class NodeStore:
    """The nodes a model trained on: id hashes, the aggregated input's features (CSR) and the ids each links to,
    so that a node first met at prediction time can be described by its neighbours."""

    nodes: np.ndarray  # uint64 [n]
    feature_indptr: np.ndarray  # int64 [n + 1]
    feature_indices: np.ndarray  # int32
    feature_values: np.ndarray  # float32
    link_indptr: np.ndarray  # int64 [n + 1]
    links: np.ndarray  # uint64

    PARTS = ("nodes", "feature_indptr", "feature_indices", "feature_values", "link_indptr", "links")

    @staticmethod
    def empty() -> NodeStore:
        return NodeStore(np.zeros(0, np.uint64), np.zeros(1, np.int64), np.zeros(0, np.int32),
                         np.zeros(0, np.float32), np.zeros(1, np.int64), np.zeros(0, np.uint64))


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The positions starts[k] .. starts[k] + lengths[k] - 1 of every k, one after another."""
    total = int(lengths.sum())
    return np.repeat(starts, lengths) + np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths,
                                                                                       lengths)


def neighbour_features(keys: LinkKeys, own: FeatureMatrix, store: NodeStore, aggregate: str,
                       direction: str) -> tuple[FeatureMatrix, NodeStore]:
    """Each row's neighbours' features (those of input `own`), summed or averaged: the nodes it links to (out), the
    nodes that link to it (in), or both, each neighbour once and never the row itself. A node is found among this
    file's rows first (the first row with its id), then among the stored ones; ids found nowhere are left out. Also
    returns the store with this file's nodes added (replacing stored ones of the same id)."""
    rows = len(keys.nodes)
    stored_only = ~np.isin(store.nodes, keys.nodes)
    nodes = np.concatenate([keys.nodes, store.nodes[stored_only]])
    kept = np.flatnonzero(stored_only)

    def stacked(file_indptr, file_values, store_indptr, store_values):
        lengths = np.concatenate([np.diff(file_indptr), (store_indptr[kept + 1] - store_indptr[kept])])
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        picked = store_values[_ragged(store_indptr[kept], lengths[rows:])]
        return indptr, np.concatenate([file_values, picked])

    feature_indptr, feature_indices = stacked(own.indptr, own.indices, store.feature_indptr, store.feature_indices)
    _, feature_values = stacked(own.indptr, own.values, store.feature_indptr, store.feature_values)
    link_indptr, links = stacked(keys.indptr, keys.links, store.link_indptr, store.links)
    # find each linked id: a stable sort puts a file row before a stored node (and the first row of an id first)
    order = np.argsort(nodes, kind="stable")
    place = np.minimum(np.searchsorted(nodes[order], links), max(len(nodes) - 1, 0))
    found = (nodes[order][place] == links) if len(nodes) else np.zeros(len(links), dtype=bool)
    source = np.repeat(np.arange(len(nodes), dtype=np.int64), np.diff(link_indptr))[found]
    target = order[place][found]
    pairs = []
    if direction in ("out", "both"):
        pairs.append(np.stack([source, target])[:, source < rows])
    if direction in ("in", "both"):
        pairs.append(np.stack([target, source])[:, target < rows])
    row, neighbour = np.concatenate(pairs, axis=1) if pairs else np.zeros((2, 0), np.int64)
    unique = np.unique(row * len(nodes) + neighbour)
    unique = unique[unique // max(len(nodes), 1) != unique % max(len(nodes), 1)]  # not the row itself
    row, neighbour = unique // max(len(nodes), 1), unique % max(len(nodes), 1)
    lengths = feature_indptr[neighbour + 1] - feature_indptr[neighbour]
    taken = _ragged(feature_indptr[neighbour], lengths)
    entry_row = np.repeat(row, lengths)
    weights = feature_values[taken].astype(np.float64)
    if aggregate == "mean":
        degree = np.bincount(row, minlength=rows)
        weights /= np.repeat(degree[row], lengths)
    merged, inverse = np.unique(entry_row * own.dim + feature_indices[taken], return_inverse=True)
    sums = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(merged))
    indptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(merged // own.dim, minlength=rows), out=indptr[1:])
    matrix = FeatureMatrix(own.dim, indptr=indptr, indices=(merged % own.dim).astype(np.int32),
                           values=sums.astype(np.float32))
    first_of_id = np.unique(nodes, return_index=True)[1]  # the store keeps one node per id
    rest = np.sort(first_of_id)
    keep_features = _ragged(feature_indptr[rest], feature_indptr[rest + 1] - feature_indptr[rest])
    keep_links = _ragged(link_indptr[rest], link_indptr[rest + 1] - link_indptr[rest])

    def offsets(indptr):
        out = np.zeros(len(rest) + 1, dtype=np.int64)
        np.cumsum(indptr[rest + 1] - indptr[rest], out=out[1:])
        return out

    new_store = NodeStore(nodes[rest], offsets(feature_indptr), feature_indices[keep_features],
                          feature_values[keep_features], offsets(link_indptr), links[keep_links])
    return matrix, new_store


@dataclass(frozen=True, eq=False)
class _Layout:
    """Which field of the file each input reads, and how (int32 arrays by input, as the C reader takes them)."""

    input_field: np.ndarray  # the field featurized, a history's items or a node's links (-1: absent)
    role: np.ndarray  # ROLE_*
    key_field: np.ndarray  # a history's key, a node's id (-1: none)
    order_field: np.ndarray  # a history's order (-1: the file's)
    link_delimiter: np.ndarray  # between a node's links
    target_field: int  # -1: no labels read

    @staticmethod
    def of(path: str, names: list[str], plan: Plan, labelled: bool, values_of: frozenset[int]) -> _Layout:
        columns = [i_plan.column for i_plan in plan.inputs]  # the checker allows no input of another kind
        where = [f"input '{i_plan.name}'" for i_plan in plan.inputs]

        def fields(header_of, optional=lambda column: False) -> np.ndarray:
            return np.array([-1 if not header_of(column) or optional(column) and header_of(column) not in names
                             else _field_of(path, names, header_of(column), what)
                             for column, what in zip(columns, where)], dtype=np.int32)

        # rows to predict may leave out the items a history is made of: they are what is predicted
        return _Layout(
            input_field=fields(lambda c: c.header, lambda c: c.kind == "history" and not labelled),
            role=np.array([ROLE_VALUE if k in values_of else ROLES.get(c.kind, ROLE_FEATURES)
                           for k, c in enumerate(columns)], dtype=np.int32),
            key_field=fields(lambda c: c.by), order_field=fields(lambda c: c.order),
            link_delimiter=np.array([ord(c.delimiter) if c.kind == "neighbours" else 0 for c in columns], np.int32),
            target_field=_field_of(path, names, plan.target_header, "the target") if labelled else -1)


class _Reader:
    """The C reader's job over one file: the header, which field each input reads, and the two reads of the
    records (the first counts rows, entries and labels so that the second can fill arrays of the right size)."""

    def __init__(self, text: TextFile, library, source: FileBytes | TableBytes, data, plan: Plan, labelled: bool,
                 skip_bad_rows: bool, values_of: frozenset[int]):
        ffi = library.ffi
        name = self.name = str(text.path)
        self.ffi, self.lib, self.data, self.size, self.source = ffi, library.lib, data, source.size, source
        delimiter, quoting = text.format_of(source.data, source.size)
        text_format = ffi.new("bolt_text_format *", {
            "delimiter": ord(delimiter), "quoting": library.lib.BOLT_QUOTING_TSV if quoting == "tsv"
            else library.lib.BOLT_QUOTING_CSV})
        self.names, start = _header(ffi, library.lib, name, data, source.size, text_format)
        self.layout = _Layout.of(name, self.names, plan, labelled, values_of)
        self.entries = np.zeros(len(plan.inputs), dtype=np.int64)
        job = self.job = ffi.new("bolt_columns_job *")
        job.format, job.n_fields, job.n_inputs = text_format[0], len(self.names), len(plan.inputs)
        for part in ("input_field", "role", "key_field", "order_field", "link_delimiter"):
            setattr(job, part, ffi.cast("int32_t *", getattr(self.layout, part).ctypes.data))
        job.target_field = self.layout.target_field
        job.label_delimiter = ord(plan.target_delimiter) if plan.target_delimiter else 0
        job.start, job.first_line = start, 1 + bytes(ffi.buffer(data, start)[:]).count(b"\n")
        job.entries = ffi.cast("int64_t *", self.entries.ctypes.data)
        job.skip_bad_rows = int(bool(skip_bad_rows))

    def run(self, fill: int) -> int:
        self.job.fill = fill
        return self.lib.bolt_columns_read(self.data, self.size, self.job)

    def check(self, status: int) -> None:
        """Raises the reader's error, if a read returned one, at its line (a table's: its row) and column."""
        if status == 0:
            return
        message = self.ffi.string(self.job.message).decode("utf-8", "replace")
        if self.job.error_field >= 0:
            message = f"column '{self.names[self.job.error_field]}': {message}"
        line = int(self.job.error_line) or None
        if line is not None and isinstance(self.source, TableBytes):
            line, message = None, f"row {self.source.row_of_line(line)}: {message}"
        raise DataError(self.name, line, message)

    def count(self, labels: _Vocabulary, learning: bool) -> _Vocabulary:
        """The first read; returns the vocabulary the labels went into (a larger one where `labels` ran out)."""
        self.job.grow = int(learning)
        labels.attach(self.ffi, self.job)
        status = self.run(0)
        if status == -2:  # more names than room: read again with room for every one, to say how many there are
            labels = _Vocabulary(self.size // 2 + 2, self.size + 1, labels.known)
            labels.attach(self.ffi, self.job)
            status = self.run(0)
        self.check(status)
        return labels

    def fill(self, records: _Records) -> None:
        """The second read, into `records`."""
        ffi, job = self.ffi, self.job

        def pointers(kind: str, arrays: list[np.ndarray]):
            return ffi.new(f"{kind} *[]", [ffi.cast(f"{kind} *", a.ctypes.data) for a in arrays])

        # the job holds bare pointers: these arrays of them must live until the read returns
        keep = [pointers("int64_t", records.indptr), pointers("int32_t", records.indices),
                pointers("float", records.values), pointers("uint64_t", records.row_keys),
                pointers("double", records.row_order), pointers("uint64_t", records.link_keys)]
        job.indptr, job.indices, job.values, job.row_keys, job.row_order, job.link_keys = keep
        if records.label_indptr is not None:
            job.label_indptr = ffi.cast("int64_t *", records.label_indptr.ctypes.data)
            job.label_ids = ffi.cast("int32_t *", records.label_ids.ctypes.data)
        self.check(self.run(1))

    def skipped(self) -> tuple[int, str | None]:
        """How many records skip_bad_rows left out, and where the first was and what was wrong with it."""
        skipped = int(self.job.skipped)
        if not skipped:
            return 0, None
        problem = self.ffi.string(self.job.skipped_message).decode("utf-8", "replace")
        field, line = self.job.first_skipped_field, int(self.job.first_skipped_line)
        column = f", column '{self.names[field]}'" if field >= 0 else ""
        where = f"row {self.source.row_of_line(line)}" if isinstance(self.source, TableBytes) else f"line {line}"
        return skipped, f"{where}{column}: {problem}"


@dataclass(frozen=True, eq=False)
class _Records:
    """The arrays the second read fills, by input: a featurized input's CSR matrix, the keys and order values of a
    history or neighbours input (a neighbours input's links are CSR too), a value input's numbers (in row_order),
    and the labels (None: not read)."""

    rows: int
    role: np.ndarray  # ROLE_* by input
    indptr: list[np.ndarray]
    indices: list[np.ndarray]
    values: list[np.ndarray]
    row_keys: list[np.ndarray]
    row_order: list[np.ndarray]
    link_keys: list[np.ndarray]
    label_indptr: np.ndarray | None
    label_ids: np.ndarray | None

    @staticmethod
    def allocate(rows: int, entries: np.ndarray, role: np.ndarray, labels: int | None) -> _Records:
        """Arrays sized by the first read's counts: `entries` by input, `labels` in all (None: not labelled)."""
        featurized = role == ROLE_FEATURES
        return _Records(
            rows, role, indptr=[np.zeros(rows + 1, dtype=np.int64) for _ in role],
            indices=[np.zeros(int(count) if own else 0, dtype=np.int32) for count, own in zip(entries, featurized)],
            values=[np.zeros(int(count) if own else 0, dtype=np.float32) for count, own in zip(entries, featurized)],
            row_keys=[np.zeros(2 * rows if kind in (ROLE_HISTORY, ROLE_LINKS) else 0, dtype=np.uint64) for kind in role],
            row_order=[np.zeros(0 if own else rows, dtype=np.float64) for own in featurized],
            link_keys=[np.zeros(int(count) if kind == ROLE_LINKS else 0, dtype=np.uint64)
                       for count, kind in zip(entries, role)],
            label_indptr=np.zeros(rows + 1, dtype=np.int64) if labels is not None else None,
            label_ids=np.zeros(labels, dtype=np.int32) if labels is not None else None)

    def features(self, plan: Plan) -> tuple[FeatureMatrix, ...]:
        """One matrix per input; those of history and neighbours inputs are empty until ``with_context``."""
        return tuple(FeatureMatrix(i.dim, indptr=self.indptr[k] if self.role[k] == ROLE_FEATURES else
                                   np.zeros(self.rows + 1, np.int64), indices=self.indices[k],
                                   values=self.values[k]) for k, i in enumerate(plan.inputs))

    def keys(self) -> dict[int, HistoryKeys | LinkKeys]:
        keys: dict[int, HistoryKeys | LinkKeys] = {}
        for k in np.flatnonzero(self.role == ROLE_HISTORY):
            keys[int(k)] = HistoryKeys(self.row_keys[k][0::2].copy(), self.row_keys[k][1::2].copy(), self.row_order[k])
        for k in np.flatnonzero(self.role == ROLE_LINKS):
            keys[int(k)] = LinkKeys(self.row_keys[k][0::2].copy(), self.indptr[k], self.link_keys[k])
        return keys


def read_columns(path: str | Path | TextFile | Records, plan: Plan, library, vocabulary: Sequence[str] | None,
                 labelled: bool, threads: int = 1, skip_bad_rows: bool = False, more_labels: bool = False
                 ) -> tuple[Dataset, tuple[str, ...] | None, dict[int, HistoryKeys | LinkKeys]]:
    """The file's rows featurized for `plan`'s inputs, and their labels when `labelled`: ids of `vocabulary`
    (labels it lacks are left out, with a warning, unless `more_labels` adds them: a later file of the training
    data), or, when `vocabulary` is None, of one learned from this file in order of first appearance (returned,
    as is the grown one). History and neighbours inputs come back empty, with their keys by input
    index: a row's history depends on what came before the file (``history_features``), its neighbourhood on other
    rows and on the nodes seen in training (``neighbour_features``). Raises DataError with the line and column
    of the first bad field; with ``skip_bad_rows``, a record with a bad field or broken quoting is left out
    instead (a broken one up to the end of the line its problem is on), counted in the Dataset and warned about."""
    del threads  # records may span lines: one thread reads
    read = _read_file(path, plan, library, vocabulary, labelled, skip_bad_rows, more_labels, frozenset())
    records = read.records
    dataset = Dataset(read.name, records.rows, records.features(plan), plan.target_dim, records.label_indptr,
                      records.label_ids, read.skipped, read.first_skipped)
    return dataset, read.learned, records.keys()


def column_values(path: str | Path | TextFile, plan: Plan, library, vocabulary: Sequence[str] | None,
                  skip_bad_rows: bool, more_labels: bool, inputs: frozenset[int]
                  ) -> tuple[dict[int, np.ndarray], tuple[str, ...] | None]:
    """The numbers of the numerical `inputs` in the file's rows (NaN where a field is empty), with the label names
    as ``read_columns`` learns them: what a model whose spec leaves bins and a label count to the data learns them
    from. The file is read as ``read_columns`` reads it (every field checked, the same rows skipped)."""
    read = _read_file(path, plan, library, vocabulary, True, skip_bad_rows, more_labels, inputs)
    return {index: read.records.row_order[index] for index in inputs}, read.learned


@dataclass(frozen=True, eq=False)
class _FileRead:
    name: str
    records: _Records
    learned: tuple[str, ...] | None  # the label names learned (None: the vocabulary was fixed)
    skipped: int
    first_skipped: str | None


def _read_file(path: str | Path | TextFile | Records, plan: Plan, library, vocabulary: Sequence[str] | None,
               labelled: bool, skip_bad_rows: bool, more_labels: bool, values_of: frozenset[int]) -> _FileRead:
    """Both reads of one file (``read_columns``; `values_of`: the inputs read as numbers, ``column_values``)."""
    text = path if isinstance(path, TextFile) else TextFile(path.name if isinstance(path, Records) else path)
    name = str(text.path)
    ffi = library.ffi
    try:
        if isinstance(path, Records):
            source, text = records_bytes(path, plan), TextFile(name, ",", "csv")
        elif is_parquet(name):
            if text.delimiter or text.quoting:
                raise DataError(name, None, "a Parquet file has no delimiter or quoting to choose")
            source, text = table_bytes(name, plan), TextFile(name, ",", "csv")
        else:
            source = FileBytes(name)
    except OSError as exc:
        raise DataError(name, None, f"cannot read the file: {exc.strerror or exc}") from None
    data = ffi.from_buffer("char[]", source.data) if source.size else ffi.NULL
    try:
        if not source.size:
            raise DataError(name, None, "the file is empty: expected a header line naming its columns")
        reader = _Reader(text, library, source, data, plan, labelled, skip_bad_rows, values_of)
        learning = labelled and (vocabulary is None or more_labels)
        room = 4 * plan.target_dim + SPARE_LABELS if learning else 0
        labels = reader.count(_Vocabulary(room, ARENA_BYTES_PER_LABEL * room, vocabulary or ()), learning)
        job = reader.job
        if learning and job.vocab_size > plan.target_dim and not (plan.provisional and plan.target_learned):
            raise DataError(name, None, f"column '{plan.target_header}' holds {job.vocab_size:,} distinct labels, but "
                                        f"the target declares {plan.target_kind}[{plan.target_dim}]")
        rows = int(job.rows)
        skipped, first_skipped = reader.skipped()
        if rows == 0:
            raise no_rows_error(name, "data rows after its header", skipped, first_skipped)
        records = _Records.allocate(rows, reader.entries, reader.layout.role, int(job.labels) if labelled else None)
        reader.fill(records)
        unknown = int(job.unknown_labels)
        learned = labels.names(int(job.vocab_size)) if learning else None
    finally:
        if data != ffi.NULL:
            ffi.release(data)
        source.close()
    warn_skipped(name, skipped, first_skipped, stacklevel=4)
    if unknown:
        warnings.warn(f"{name}: {unknown:,} labels of column '{plan.target_header}' were not seen in training and "
                      "are left out", stacklevel=4)
    return _FileRead(name, records, learned, skipped, first_skipped)


def concatenated_keys(parts: Sequence[dict[int, HistoryKeys | LinkKeys]], rows: Sequence[int], plan: Plan
                      ) -> dict[int, HistoryKeys | LinkKeys]:
    """The keys of files read one after another (`rows` each), as if from one file: a history ordered by the file's
    order continues its row numbers from file to file."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + list(rows[:-1])).astype(np.float64)
    merged: dict[int, HistoryKeys | LinkKeys] = {}
    for index, first in parts[0].items():
        found = [part[index] for part in parts]
        if isinstance(first, LinkKeys):
            merged[index] = LinkKeys(np.concatenate([f.nodes for f in found]),
                                     stacked_indptr([f.indptr for f in found]),
                                     np.concatenate([f.links for f in found]))
        else:
            in_file_order = not plan.inputs[index].column.order
            merged[index] = HistoryKeys(np.concatenate([f.users for f in found]),
                                        np.concatenate([f.items for f in found]),
                                        np.concatenate([f.order + (offset if in_file_order else 0.0)
                                                        for f, offset in zip(found, offsets)]))
    return merged


def with_context(model: Model, dataset: Dataset, keys: dict[int, HistoryKeys | LinkKeys], absorb: bool) -> Dataset:
    """The features of history and neighbours inputs, made from other rows and from what the model keeps of
    earlier files. A file read again after it joined the history (fit twice on it, or evaluated on its training
    file) sees the history as it was before it, so no row ever sees its own future."""
    features = list(dataset.features)
    for index, found in keys.items():
        column = model.plan.inputs[index].column
        if isinstance(found, LinkKeys):
            store = model.node_stores.get(index, NodeStore.empty())
            features[index], after = neighbour_features(found, dataset.features[column.source], store,
                                                        column.aggregate, column.direction)
            if absorb:
                model.node_stores[index] = after
            continue
        fingerprint = found.fingerprint()
        before = model.history_before.get(index)
        state = before[1] if before is not None and before[0] == fingerprint else \
            model.histories.get(index, HistoryState.empty())
        features[index], after = history_features(found, state, column.last, column.features, model.library)
        if absorb:
            model.history_before[index] = (fingerprint, state)
            model.histories[index] = after
    return dataclasses.replace(dataset, features=tuple(features))
