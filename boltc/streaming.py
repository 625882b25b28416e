"""Data larger than memory: XMC text files read in chunks of rows instead of whole.

A ``Stream`` names the files and the chunk size; ``ChunkReader`` reads each file as a byte stream (gzip and zstd
decompressed as they are read), cuts it after the last line break of each block of about ``chunk_bytes``, and has
the C reader parse each piece (``boltc.data.parse_xmc``: the first piece of a file may hold its header, errors name
the file's line). The next chunk is read and parsed on a background thread while the caller works on the current
one, so memory holds two chunks' rows, never the file's. ``fit``, ``evaluate`` and ``predict`` take a Stream, and
the CLI's ``--stream`` makes one (``boltc.training`` and ``boltc.model`` say what each does with its chunks).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from boltc.data import (GZIP_MAGIC, XMC_FIRST_PART, XMC_LATER_PART, ZSTD_MAGIC, Dataset, XmcOptions, data_files,
                        no_rows_error, parse_xmc, xmc_reader)
from boltc.diagnostics import DataError, UsageError

DEFAULT_CHUNK_BYTES = 64 << 20
# what a stream's chunk of text becomes in memory, at most: its CSR arrays take fewer bytes than the text of the
# "id:value" pairs they hold, and two chunks are held at a time (the one in use and the next)
CHUNKS_HELD = 2


@dataclass(frozen=True)
class Stream:
    """An XMC text file (or a directory or pattern of them; gzip or zstd compressed or not) to be read in chunks of
    about ``chunk_bytes`` of text rather than whole, by ``fit``, ``evaluate`` and ``predict``: memory then holds
    two chunks, whatever the files' size. Training shuffles each chunk's rows (seeded) and visits the chunks in
    file order."""

    path: str | Path
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    # (index, count): this reader's share of the data, for one of `count` workers. Several files are dealt out
    # whole, file i to shard i % count; one uncompressed file is cut into byte ranges at line breaks (a line is its
    # first byte's shard's). Together the shards hold every row once.
    shard: tuple[int, int] = (0, 1)

    def __post_init__(self):
        if isinstance(self.chunk_bytes, bool) or not isinstance(self.chunk_bytes, int) or self.chunk_bytes < 1:
            raise UsageError(f"chunk_bytes must be a positive integer, got {self.chunk_bytes!r}")
        index, count = self.shard
        if not all(type(n) is int for n in self.shard) or not 0 <= index < count:
            raise UsageError(f"shard must be (index, count) with 0 <= index < count, got {self.shard!r}")


def memory_budget(model_bytes: int) -> int:
    """The bytes a data set may take in memory: ``BOLTC_MEMORY_BUDGET`` (a count, or with K, M, G), or half the
    machine's memory less the model's arrays."""
    given = os.environ.get("BOLTC_MEMORY_BUDGET", "").strip().upper()
    if given:
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(given[-1], 1)
        try:
            return int(float(given.rstrip("KMG")) * scale)
        except ValueError:
            raise UsageError(f"BOLTC_MEMORY_BUDGET must be a number of bytes, optionally with K, M or G, got "
                             f"{given!r}") from None
    from boltc.machine import probe

    return probe().memory_bytes // 2 - model_bytes


def streamed_if_large(data, model_bytes: int):
    """`data` as a Stream where it names XMC text files too large for the memory budget held whole (their text
    size, a compressed file's taken as 4 times its own); anything else as it is."""
    if not isinstance(data, (str, Path)):
        return data
    try:
        names = data_files(data)
        size = sum(os.path.getsize(name) * (4 if _compressed(name) else 1) for name in names)
    except (DataError, OSError):
        return data  # the reader says what is wrong with it
    return Stream(data) if size > memory_budget(model_bytes) else data


def _compressed(name: str) -> bool:
    with open(name, "rb") as handle:
        head = handle.read(4)
    return head[:2] == GZIP_MAGIC or head[:4] == ZSTD_MAGIC


def _open_stream(name: str) -> BinaryIO:
    """The file's bytes as they are read: decompressed on the way where its magic number says gzip or zstd."""
    raw = open(name, "rb")
    head = raw.read(4)
    raw.seek(0)
    if head[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head[:4] == ZSTD_MAGIC:
        try:
            import zstandard
        except ImportError:
            raw.close()
            raise DataError(name, None, "the file is zstd-compressed: reading it needs the zstandard package "
                                        "(pip install 'boltc[zstd]')") from None
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True,
                                                                            closefd=True))
    return raw


class ChunkReader:
    """The chunks of a Stream's files, in order, each a Dataset of consecutive rows (``chunks``)."""

    def __init__(self, stream: Stream, n_features: int, n_labels: int, skip_bad_rows: bool = False):
        self.stream = stream
        self.names = data_files(stream.path)
        index, count = stream.shard
        # (first byte, end byte) of the one file a shard reads part of; None: whole files
        self.byte_range: tuple[int, int] | None = None
        if count > 1 and len(self.names) > 1:
            self.names = self.names[index::count]
            if not self.names:
                raise UsageError(f"{stream.path}: {len(data_files(stream.path))} files for {count} shards: shard "
                                 f"{index} has none (give as many files as shards, or one uncompressed file)")
        elif count > 1:
            if _compressed(self.names[0]):
                raise UsageError(f"{self.names[0]}: a compressed file cannot be cut into byte ranges: give a "
                                 "directory of as many parts as shards")
            self.byte_range = (_line_start(self.names[0], index, count), _line_start(self.names[0], index + 1, count))
        self.options = XmcOptions(n_features, n_labels, 1, skip_bad_rows)  # one thread: training has the others
        self.compiled = xmc_reader()

    @property
    def total_bytes(self) -> int:
        """The files' sizes on disk (compressed, for a compressed file): what progress is measured against."""
        if self.byte_range is not None:
            return self.byte_range[1] - self.byte_range[0]
        return sum(os.path.getsize(name) for name in self.names)

    def chunks(self) -> Iterator[tuple[Dataset, int]]:
        """Each chunk with the bytes of the files read so far (on disk), the next parsed while this one is used."""
        source = self._parsed()
        with ThreadPoolExecutor(1, thread_name_prefix="boltc-stream") as reader:
            pending = reader.submit(next, source, None)
            while (found := pending.result()) is not None:
                pending = reader.submit(next, source, None)
                yield found

    def _parsed(self) -> Iterator[tuple[Dataset, int]]:
        done = 0
        for name in self.names:
            for dataset, position in self._file_chunks(name):
                yield dataset, done + position
            done += os.path.getsize(name)

    def _file_chunks(self, name: str) -> Iterator[tuple[Dataset, int]]:
        try:
            handle = _open_stream(name)
        except OSError as exc:
            raise DataError(name, None, f"cannot read the file: {exc.strerror or exc}") from None
        rows = skipped = lines_before = 0
        header: dict = {}
        carry, part, first_skipped = b"", XMC_FIRST_PART, None
        left = None  # bytes of a byte-range shard still to read
        if self.byte_range is not None:
            begin, end = self.byte_range
            lines_before = _lines_before(handle, begin)  # so that errors name the file's line
            handle.seek(begin)
            part, left = (XMC_FIRST_PART if begin == 0 else XMC_LATER_PART), end - begin
        with handle:
            while True:
                try:
                    block = handle.read(self.stream.chunk_bytes if left is None else
                                        min(self.stream.chunk_bytes, left))
                    if left is not None:
                        left -= len(block)
                except (EOFError, OSError, zlib.error) as exc:
                    raise DataError(name, None, f"cannot decompress the file: {exc}") from None
                text = carry + block if carry else block
                cut = len(text) if not block else text.rfind(b"\n") + 1
                if block and cut == 0:  # a line longer than a chunk: read on until it ends
                    carry = text
                    continue
                piece, carry = memoryview(text)[:cut], text[cut:]
                if len(piece):
                    dataset, found = parse_xmc(self.compiled, name, piece, len(piece), self.options, part,
                                               lines_before)
                    header = header or found
                    lines_before += text.count(b"\n", 0, cut)
                    part = XMC_LATER_PART
                    rows, skipped = rows + dataset.n_rows, skipped + dataset.skipped_rows
                    first_skipped = first_skipped or dataset.first_skipped
                    if dataset.n_rows:
                        yield dataset, _position(handle) - (self.byte_range or (0, 0))[0]
                if not block:
                    break
        if header and self.byte_range is None and header["rows"] != rows + skipped:
            raise DataError(name, 1, f"header says {header['rows']} rows but the file has {rows + skipped}")
        if rows == 0 and self.byte_range is None:
            raise no_rows_error(name, "data rows", skipped, first_skipped)


def _line_start(name: str, index: int, count: int) -> int:
    """Where shard `index` of `count` begins in the file: the first line break's end at or after its share of the
    bytes (the file's end for index == count)."""
    size = os.path.getsize(name)
    at = size * index // count
    if at == 0 or at >= size:
        return min(at, size)
    with open(name, "rb") as handle:
        handle.seek(at - 1)
        while True:  # to the end of the line the byte before the share's start is on
            block = handle.read(1 << 16)
            if not block:
                return size
            newline = block.find(b"\n")
            if newline >= 0:
                return at + newline
            at += len(block)


def _lines_before(handle, offset: int) -> int:
    """Line breaks in the file's first `offset` bytes."""
    handle.seek(0)
    count = 0
    while offset > 0:
        block = handle.read(min(offset, 64 << 20))
        if not block:
            break
        count += block.count(b"\n")
        offset -= len(block)
    return count


def header_of(stream: Stream) -> dict:
    """The counts the header of the stream's first file states ({} where it has none)."""
    name = data_files(stream.path)[0]
    try:
        with _open_stream(name) as handle:
            line = handle.readline(1 << 20)
    except OSError as exc:
        raise DataError(name, None, f"cannot read the file: {exc.strerror or exc}") from None
    return parse_xmc(xmc_reader(), name, line, len(line), XmcOptions(None, None, 1, False), XMC_FIRST_PART)[1]


def _position(handle) -> int:
    """Bytes of the file on disk read so far (a compressed file's own position, not its text's)."""
    underlying = getattr(handle, "fileobj", None) or getattr(handle, "raw", None)
    try:
        return (underlying or handle).tell()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return 0
