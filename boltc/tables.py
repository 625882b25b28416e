"""Parquet files for models with typed columns, read through pyarrow (``pip install 'boltc[parquet]'``).

The columns the model reads are rendered as one RFC 4180 CSV in memory and featurized by the same generated C as a
CSV file, so a table gives the same features whichever of the two it came in. Values become the text a CSV of them
would hold: numbers in their shortest round-trip form, dates as YYYY-MM-DD (timestamps with their time after it),
booleans as true / false, nulls as empty fields, and a list as its elements joined with the delimiter the spec
declares for that column (a blank where it declares none).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boltc.diagnostics import DataError
from boltc.plan import Plan

PARQUET_MAGIC = b"PAR1"


def is_parquet(path: str) -> bool:
    """Whether the file starts and ends with Parquet's magic number (a CSV whose header starts with PAR1 does not)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(0, 2)
            if handle.tell() < 12:
                return False
            handle.seek(-4, 2)
            return head == handle.read(4) == PARQUET_MAGIC
    except OSError:
        return False  # the reader that follows says why the file cannot be read


def _read_columns(plan: Plan) -> dict[str, str]:
    """The columns `plan` reads, each with the delimiter of its lists."""
    wanted: dict[str, str] = {}
    for model_input in plan.inputs:
        column = model_input.column
        for name in (column.header, column.by, column.order):
            if name:
                wanted.setdefault(name, "")
        wanted[column.header] = column.delimiter or wanted[column.header]
    if plan.target_header:
        wanted[plan.target_header] = plan.target_delimiter
    return wanted


@dataclass(frozen=True)
class TableBytes:
    """A table as CSV bytes (the ``FileBytes`` interface), and where each of its rows starts in that text."""

    data: bytes
    row_lines: np.ndarray  # int64 [rows]: the line of the CSV on which each row's record starts

    @property
    def size(self) -> int:
        return len(self.data)

    def close(self) -> None:
        pass

    def row_of_line(self, line: int) -> int:
        """The 1-based row of the table whose record holds CSV line `line`."""
        return int(np.searchsorted(self.row_lines, line, side="right"))


def _joined(column, delimiter: str):
    """A list column's elements as one string per row, joined with `delimiter`; a null element is an empty part
    (as in the CSV `a;;b`), a null list an empty field."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = []
    for chunk in column.chunks:
        chunk = pc.cast(chunk, pa.list_(pa.string()))
        lengths = pc.fill_null(pc.list_value_length(chunk), 0).to_numpy(zero_copy_only=False)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        filled = pa.ListArray.from_arrays(offsets, pc.fill_null(pc.list_flatten(chunk), ""))
        chunks.append(pc.binary_join(filled, delimiter))
    return pa.chunked_array(chunks, pa.string())


def table_bytes(path: str, plan: Plan) -> TableBytes:
    """The columns of the Parquet file at `path` that `plan` reads, as CSV bytes with a header."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(path, None, "the file is Parquet: reading it needs pyarrow (pip install 'boltc[parquet]')"
                        ) from None
    delimiters = _read_columns(plan)
    try:
        schema = pq.read_schema(path)
        table = pq.read_table(path, columns=[name for name in schema.names if name in delimiters])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(path, None, f"cannot read the Parquet file: {exc}") from None
    columns, newlines = [], np.zeros(table.num_rows, dtype=np.int64)
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
            column = _joined(column, delimiters[name] or " ")
        elif pa.types.is_boolean(column.type):
            column = pc.if_else(column, "true", "false")
        try:
            text = pc.cast(column, pa.string())
        except pa.ArrowException:
            raise DataError(path, None, f"column '{name}' holds {column.type}: boltc reads strings, numbers, "
                                        "booleans, dates, times and lists of them") from None
        text = pc.fill_null(text, "")  # written "": a row whose only field were empty would be a blank line
        newlines += pc.count_substring(text, "\n").to_numpy(zero_copy_only=False)
        columns.append(text)
    out = pa.BufferOutputStream()
    pa_csv.write_csv(pa.table(columns, names=table.column_names), out,
                     pa_csv.WriteOptions(include_header=True, delimiter=",", quoting_style="needed"))
    row_lines = 2 + np.arange(table.num_rows, dtype=np.int64) + np.concatenate([[0], np.cumsum(newlines)[:-1]])
    return TableBytes(out.getvalue().to_pybytes(), row_lines)
