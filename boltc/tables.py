"""Tables for models with typed columns that are not CSV/TSV files: Parquet files, read through pyarrow (``pip
install 'boltc[parquet]'``), and records held in memory (``Records``: what ``boltc serve`` receives as JSON).

The columns the model reads are rendered as one RFC 4180 CSV in memory and featurized by the same generated C as a
CSV file, so a table gives the same features whichever of the two it came in. Values become the text a CSV of them
would hold: numbers in their shortest round-trip form, dates as YYYY-MM-DD (timestamps with their time after it),
booleans as true / false, nulls as empty fields, and a list as its elements joined with the delimiter the spec
declares for that column (a blank where it declares none).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from boltc.diagnostics import DataError, UsageError
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


def _row_lines(newlines: np.ndarray) -> np.ndarray:
    """The CSV line on which each row's record starts (after the header), given the line breaks inside each."""
    before = np.zeros(len(newlines), dtype=np.int64)
    np.cumsum(newlines[:-1], out=before[1:])
    return 2 + np.arange(len(newlines), dtype=np.int64) + before


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
    return TableBytes(out.getvalue().to_pybytes(), _row_lines(newlines))


@dataclass(frozen=True)
class Records:
    """Rows of a model with typed columns held in memory, each a dict {column: value}: a string, a number, a
    boolean, None (an empty field) or a list of them (joined with the column's delimiter). A column a row leaves out
    is empty in it; one the model does not read is an error. ``name`` is what errors are reported against."""

    rows: tuple[dict, ...] | list[dict]
    name: str = "rows"


def records_bytes(records: Records, plan: Plan) -> TableBytes:
    """`records` as the CSV text of the columns `plan` reads, with a header (``table_bytes``'s form)."""
    delimiters = _read_columns(plan)
    names = list(delimiters)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    newlines = np.zeros(len(records.rows), dtype=np.int64)
    for index, row in enumerate(records.rows):
        if not isinstance(row, dict):
            raise UsageError(f"{records.name}[{index}]: expected an object of column values, got {_kind(row)}")
        unknown = [key for key in row if key not in delimiters]
        if unknown:
            raise UsageError(f"{records.name}[{index}]: the model reads no column '{unknown[0]}' (it reads "
                             f"{', '.join(names)})")
        fields = [_field(records.name, index, name, row.get(name), delimiters[name] or " ") for name in names]
        newlines[index] = sum(field.count("\n") for field in fields)
        writer.writerow(fields)
    return TableBytes(out.getvalue().encode(), _row_lines(newlines))


def _field(where: str, index: int, column: str, value, delimiter: str) -> str:
    """A JSON value as the text a CSV field of it would hold (``table_bytes``'s rendering of the same types)."""
    if isinstance(value, list):
        return delimiter.join(_field(where, index, column, item, delimiter) for item in value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"{where}[{index}]: column '{column}' holds {value}: expected a finite number")
        return repr(value)
    if isinstance(value, str):
        return value
    raise UsageError(f"{where}[{index}]: column '{column}' holds {_kind(value)}: expected a string, a number, a "
                     "boolean, null or a list of them")


def _kind(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)
