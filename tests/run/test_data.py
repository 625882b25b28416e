"""Reading XMC / libsvm text files in C (runtime/bolt_data.h) and wrapping arrays (boltc.data).

Truth comes from outside the reader: files are written here from numpy arrays, and expected values are what
Python's own float() makes of each token.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from boltc.data import Dataset, FeatureMatrix, from_arrays, read_xmc
from boltc.diagnostics import DataError, UsageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fuzzing import examples  # noqa: E402


def write(tmp_path, content, name="data.txt"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def read_error(tmp_path, content, **kwargs) -> DataError:
    path = write(tmp_path, content)
    with pytest.raises(DataError) as caught:
        read_xmc(path, **kwargs)
    assert caught.value.path == str(path)
    return caught.value


def rows_of(dataset: Dataset) -> list[tuple[list[int], list[int], list[float]]]:
    """(labels, feature ids, values) of every row, as plain lists."""
    m = dataset.features[0]
    out = []
    for r in range(dataset.n_rows):
        s, e = m.indptr[r], m.indptr[r + 1]
        labels = [] if dataset.label_ids is None else dataset.labels_of(r).tolist()
        out.append((labels, m.indices[s:e].tolist(), m.values[s:e].tolist()))
    return out


# ---- every error: exact line and message ----------------------------------------------------------------------

TRUNCATED = " (the last line has no newline: is the file truncated?)"

ERRORS = [
    # (file text, read_xmc arguments, line, message)
    ("1 abc:0.5\n", {}, 1, "feature id 'abc' is not a non-negative integer"),
    ("1 -3:0.5\n", {}, 1, "feature id -3 is negative"),
    ("x 3:0.5\n", {}, 1, "label id 'x' is not a non-negative integer"),
    ("-1 3:0.5\n", {}, 1, "label id -1 is negative"),
    ("0 1:1\n1 2.5:1\n", {}, 2, "feature id '2.5' is not a non-negative integer"),
    ("0 9:1\n0 10:1\n", {"n_features": 10}, 2, "feature id 10 is out of range (n_features = 10)"),
    ("4 1:1\n5 1:1\n", {"n_labels": 5}, 2, "label id 5 is out of range (n_labels = 5)"),
    ("2 10 5\n0 1:1\n0 12:1\n", {}, 3, "feature id 12 is out of range (n_features = 10)"),
    ("2 10 5\n0 1:1\n5 2:1\n", {}, 3, "label id 5 is out of range (n_labels = 5)"),
    ("0 1:1\n0 3\n", {}, 2, "feature entry '3' has no ':' (expected id:value)"),
    ("0 1:1 2;0.5\n", {}, 1, "feature entry '2;0.5' has no ':' (expected id:value)"),
    ("0 :0.5\n", {}, 1, "feature entry ':0.5' has no id before ':'"),
    ("0 1:nan\n", {}, 1, "value 'nan' of feature 1 is not finite"),
    ("0 1:-Inf\n", {}, 1, "value '-Inf' of feature 1 is not finite"),
    ("0 1:infinity\n", {}, 1, "value 'infinity' of feature 1 is not finite"),
    ("0 1:0.5x\n", {}, 1, "value '0.5x' of feature 1 is not a number"),
    ("0 1:1,5\n", {}, 1, "value '1,5' of feature 1 is not a number"),
    ("0 1:1e\n", {}, 1, "value '1e' of feature 1 is not a number"),
    ("0 1:0x10\n", {}, 1, "value '0x10' of feature 1 is not a number"),
    ("0 1:.\n", {}, 1, "value '.' of feature 1 is not a number"),
    ("0 1:1:2\n", {}, 1, "value '1:2' of feature 1 is not a number"),
    ("0 1:\n", {}, 1, "feature 1 has no value after ':'"),
    ("0 1:1e39\n", {}, 1, "value '1e39' of feature 1 is outside the float32 range"),
    ("0 1:-3.5e38\n", {}, 1, "value '-3.5e38' of feature 1 is outside the float32 range"),
    ("0 1:1" + "0" * 60 + "\n", {}, 1, "value '1" + "0" * 43 + "...' of feature 1 is outside the float32 range"),
    ("10 784\n0 1:1\n", {}, 1, "header has 2 fields; expected 3: rows features labels"),
    ("10 784 10 3\n0 1:1\n", {}, 1, "header has 4 fields; expected 3: rows features labels"),
    ("10 abc 3\n0 1:1\n", {}, 1, "header field 2 (features) 'abc' is not a non-negative integer"),
    ("-1 5 3\n0 1:1\n", {}, 1, "header field 1 (rows) '-1' is not a non-negative integer"),
    ("1 5 3000000000\n0 1:1\n", {}, 1, "header says 3000000000 labels; ids are int32, so at most 2147483648"),
    ("3 5 2\n0 1:1\n1 2:1\n", {}, 1, "header says 3 rows but the file has 2"),
    ("\n\n1 5 2\n0 1:1\n1 2:1\n", {}, 3, "header says 1 rows but the file has 2"),
    ("1 780 10\n0 1:1\n", {"n_features": 784}, 1, "header says 780 features but 784 were expected"),
    ("1 784 11\n0 1:1\n", {"n_features": 784, "n_labels": 10}, 1, "header says 11 labels but 10 were expected"),
    ("0 1:1\n0 2:", {}, 2, "feature 2 has no value after ':'" + TRUNCATED),
    ("0 1:1\n0 2:0.", {"n_features": 2}, 2, "feature id 2 is out of range (n_features = 2)"),
    ("0 1:1\n0 2:0.5e-", {}, 2, "value '0.5e-' of feature 2 is not a number" + TRUNCATED),
    ("0 1:1\n1,", {}, 2, "empty label id in '1,'" + TRUNCATED),
    ("0 1:1\n1,,2 3:1\n", {}, 2, "empty label id in '1,,2'"),
    ("\n0 1:1\n\n  \n\t\n0 x:1\n", {}, 6, "feature id 'x' is not a non-negative integer"),
    ("2 5 2\r\n0 1:1\r\n\r\n1 2:y\r\n", {}, 4, "value 'y' of feature 2 is not a number"),
    ("0 1:1\r0 2:1\n", {}, 1, "carriage return (0x0D) not followed by a line feed"),
    ("0 2147483648:1\n", {}, 1, "feature id 2147483648 does not fit in int32 (largest 2147483647)"),
    ("0 99999999999999999999999:1\n", {}, 1,
     "feature id 99999999999999999999999 does not fit in int32 (largest 2147483647)"),
    ("2147483648 1:1\n", {}, 1, "label id 2147483648 does not fit in int32 (largest 2147483647)"),
    (b"0 1:1\n\x00\x00\x00\x00\n", {}, 2, "NUL byte in the text: this looks like a binary file, not a text data file"),
    (b"0 1:1\n0 1:\x00\n", {}, 2, "NUL byte in the text: this looks like a binary file, not a text data file"),
    (b"0 1:1\n0 \x89PNG:1\n", {}, 2, "unexpected byte 0x89: a data file must be ASCII text"),
    (b"0 \x7f:1\n", {}, 1, "unexpected byte 0x7F: a data file must be ASCII text"),
    (b"1 2\x1b 3\n", {}, 1, "unexpected byte 0x1B: a data file must be ASCII text"),
    ("0 1:1 1:2\n", {}, 1, "feature id 1 appears twice in this row"),
    ("0 1:1\n0 5:1 2:1 7:1 5:2\n", {}, 2, "feature id 5 appears twice in this row"),
    ("1,1 2:1\n", {}, 1, "label id 1 appears twice in this row"),
    ("0 1:1\n3,1,3 2:1\n", {}, 2, "label id 3 appears twice in this row"),
]


@pytest.mark.parametrize("content, kwargs, line, message", ERRORS)
def test_error_line_and_message(tmp_path, content, kwargs, line, message):
    error = read_error(tmp_path, content, **kwargs)
    assert (error.line, error.message) == (line, message)
    assert str(error) == f"{tmp_path / 'data.txt'}:{line}: {message}"


def test_long_token_is_cut_in_the_message(tmp_path):
    error = read_error(tmp_path, "0 1:" + "7" * 30 + "x\n")
    assert error.message == "value '" + "7" * 30 + "x' of feature 1 is not a number"
    error = read_error(tmp_path, "0 1:" + "7" * 60 + "x\n")
    assert error.message == "value '" + "7" * 44 + "...' of feature 1 is not a number"


def test_the_first_error_in_the_file_wins(tmp_path):
    error = read_error(tmp_path, "0 1:1\n0 2:x\n0 3:y\n5 1:1\n", n_labels=3)
    assert (error.line, error.message) == (2, "value 'x' of feature 2 is not a number")


def test_empty_and_unreadable_files(tmp_path):
    for content in ("", "\n\n  \n", "0 5 3\n"):
        error = read_error(tmp_path, content)
        assert (error.line, error.message) == (None, "the file holds no data rows")
    with pytest.raises(DataError, match="cannot read the file: No such file or directory"):
        read_xmc(tmp_path / "missing.txt")


def test_bad_arguments(tmp_path):
    path = write(tmp_path, "0 1:1\n")
    for kwargs in ({"n_features": 0}, {"n_labels": -1}, {"n_features": 2**31 + 1}, {"n_features": 2.0},
                   {"threads": -1}):
        with pytest.raises(UsageError):
            read_xmc(path, **kwargs)


# ---- what is accepted --------------------------------------------------------------------------------------------

def test_small_file_every_field(tmp_path):
    path = write(tmp_path, "4 6 5\n0,3 0:1.5 5:-2\n 4:0.25\n2\n1:3 2:4\n")
    data = read_xmc(path)
    assert (data.path, data.n_rows, data.n_labels, data.features[0].dim) == (str(path), 4, 5, 6)
    assert rows_of(data) == [([0, 3], [0, 5], [1.5, -2.0]), ([], [4], [0.25]), ([2], [], []),
                             ([], [1, 2], [3.0, 4.0])]
    m = data.features[0]
    assert m.indptr.dtype == np.int64 and m.indices.dtype == np.int32 and m.values.dtype == np.float32
    assert data.label_indptr.dtype == np.int64 and data.label_ids.dtype == np.int32
    assert m.max_row_nnz == 2 and m.is_sparse


def test_header_or_not_gives_the_same_arrays(tmp_path):
    body = "1 0:1 3:2\n0,2 1:0.5\n"
    with_header = read_xmc(write(tmp_path, "2 4 3\n" + body, "a.txt"))
    without = read_xmc(write(tmp_path, body, "b.txt"), n_features=4, n_labels=3)
    guessed = read_xmc(write(tmp_path, body, "c.txt"))
    assert rows_of(with_header) == rows_of(without) == rows_of(guessed)
    assert (with_header.features[0].dim, with_header.n_labels) == (4, 3)
    assert (without.features[0].dim, without.n_labels) == (4, 3)
    assert (guessed.features[0].dim, guessed.n_labels) == (4, 3)  # largest id + 1
    # a header that agrees with the caller is fine; without one, the caller's sizes stand
    assert read_xmc(write(tmp_path, "2 4 3\n" + body, "d.txt"), n_features=4, n_labels=3).n_rows == 2
    assert read_xmc(write(tmp_path, body, "e.txt"), n_features=100, n_labels=9).features[0].dim == 100


def test_crlf_and_missing_last_newline(tmp_path):
    lf = "2 4 3\n1 0:1 3:2\n\n0,2 1:0.5\n"
    expected = rows_of(read_xmc(write(tmp_path, lf, "lf.txt")))
    assert rows_of(read_xmc(write(tmp_path, lf.replace("\n", "\r\n"), "crlf.txt"))) == expected
    assert rows_of(read_xmc(write(tmp_path, lf.rstrip("\n"), "cut.txt"))) == expected
    assert rows_of(read_xmc(write(tmp_path, lf.replace("\n", "\r\n").rstrip("\n"), "cut2.txt"))) == expected


def test_empty_label_field_and_plain_libsvm(tmp_path):
    data = read_xmc(write(tmp_path, " 1:0.5 2:1\n\t3:2\n4:1 0:1\n2 1:1\n"))
    assert rows_of(data) == [([], [1, 2], [0.5, 1.0]), ([], [3], [2.0]), ([], [0, 4], [1.0, 1.0]),
                             ([2], [1], [1.0])]
    unlabelled = read_xmc(write(tmp_path, " 1:0.5\n2:1\n", "u.txt"), n_features=3, n_labels=4)
    assert unlabelled.label_ids is None and unlabelled.label_indptr is None and not unlabelled.has_labels
    assert unlabelled.n_labels == 4
    libsvm = read_xmc(write(tmp_path, "1 1:0.5 7:2\n0 2:1\n1,0 3:1\n", "l.txt"))
    assert rows_of(libsvm) == [([1], [1, 7], [0.5, 2.0]), ([0], [2], [1.0]), ([0, 1], [3], [1.0])]


def test_blanks_tabs_and_a_byte_order_mark(tmp_path):
    data = read_xmc(write(tmp_path, b"\xef\xbb\xbf1 2 3\n2\t0:1   1:2 \t\n"))
    assert data.n_rows == 1 and rows_of(data) == [([2], [0, 1], [1.0, 2.0])]


def test_unsorted_rows_come_back_sorted(tmp_path):
    data = read_xmc(write(tmp_path, "3,0,2 9:0.9 1:0.1 5:0.5 0:0\n"))
    labels, ids, values = rows_of(data)[0]
    assert (labels, ids) == ([0, 2, 3], [0, 1, 5, 9])
    assert values == np.float32([0, 0.1, 0.5, 0.9]).tolist()  # each value moved with its id


def test_number_syntax(tmp_path):
    tokens = ["0", "1", "-1", "+2", "0.5", ".5", "5.", "-.25", "1e3", "1E-3", "2.5e+2", "1e-50", "3.4028234e38",
              "-0", "0.000000000000000000000000000001", "123456789012345678901234567890", "1.17549435e-38",
              "1e-45", "7.006e-46", "0.1", "0.30000000000000004", "16777217", "00012.500", "6.02214076e23"]
    line = "0 " + " ".join(f"{i}:{t}" for i, t in enumerate(tokens)) + "\n"
    data = read_xmc(write(tmp_path, line))
    got = data.features[0].values
    want = np.array([float(t) for t in tokens], dtype=np.float64).astype(np.float32)
    assert got.tobytes() == want.tobytes()  # exact, bit for bit (signed zero included)


def test_ids_at_the_int32_limit(tmp_path):
    data = read_xmc(write(tmp_path, "2147483647 2147483647:1 0000000000007:2\n"))
    assert rows_of(data) == [([2147483647], [7, 2147483647], [2.0, 1.0])]
    assert data.features[0].dim == 2**31 and data.n_labels == 2**31
    error = read_error(tmp_path, "0 2147483647:1\n", n_features=2**31 - 1)
    assert error.message == "feature id 2147483647 is out of range (n_features = 2147483647)"


def test_no_sizes_at_all(tmp_path):
    error = read_error(tmp_path, "3\n1\n")
    assert error.message.startswith("no header, no feature entries and no n_features")
    data = read_xmc(write(tmp_path, "3\n1\n", "ok.txt"), n_features=5)
    assert rows_of(data) == [([3], [], []), ([1], [], [])] and data.n_labels == 4


# ---- round trips -------------------------------------------------------------------------------------------------

def random_file(rng, path, n_rows, n_features, n_labels, *, header=True, crlf=False, shuffle=False):
    """Writes a random file; returns the truth: (label lists, id arrays, value arrays as float32)."""
    labels, ids, values, lines = [], [], [], []
    for r in range(n_rows):
        k = int(rng.integers(0, min(n_features, 40) + 1))
        m = int(rng.integers(0, 4))
        if k == 0 and m == 0:
            m = 1  # a row with neither labels nor features would be a blank line, which readers skip
        row_ids = np.sort(rng.choice(n_features, size=k, replace=False))
        row_values = rng.standard_normal(k).astype(np.float32) * np.float32(10.0) ** rng.integers(-6, 7, size=k)
        row_values = row_values.astype(np.float32)
        row_labels = sorted(rng.choice(n_labels, size=m, replace=False).tolist())
        order = rng.permutation(k) if shuffle else np.arange(k)
        texts = [repr(float(v)) if r % 2 else f"{v:.9g}" for v in row_values]  # two spellings of one float32
        feats = " ".join(f"{row_ids[j]}:{texts[j]}" for j in order)
        label_field = ",".join(map(str, row_labels))
        lines.append(f"{label_field} {feats}".rstrip() if label_field else f" {feats}")
        labels.append(row_labels)
        ids.append(row_ids)
        values.append(row_values)
    eol = "\r\n" if crlf else "\n"
    text = (f"{n_rows} {n_features} {n_labels}{eol}" if header else "") + eol.join(lines) + eol
    path.write_text(text, newline="")
    return labels, ids, values


def assert_matches(data, labels, ids, values):
    m = data.features[0]
    counts = [len(i) for i in ids]
    assert m.indptr.tolist() == np.concatenate([[0], np.cumsum(counts)]).tolist()
    assert m.indices.tolist() == np.concatenate(ids).tolist()
    assert m.values.tobytes() == np.concatenate(values).astype(np.float32).tobytes()
    label_counts = [len(x) for x in labels]
    assert data.label_indptr.tolist() == np.concatenate([[0], np.cumsum(label_counts)]).tolist()
    assert data.label_ids.tolist() == [x for row in labels for x in row]
    assert m.max_row_nnz == max(counts)


@pytest.mark.parametrize("header, crlf, shuffle", [(True, False, False), (False, False, False),
                                                   (True, True, True), (False, True, False)])
def test_random_round_trip(tmp_path, header, crlf, shuffle):
    rng = np.random.default_rng(7 + header + 2 * crlf + 4 * shuffle)
    path = tmp_path / "random.txt"
    labels, ids, values = random_file(rng, path, 500, 300, 20, header=header, crlf=crlf, shuffle=shuffle)
    data = read_xmc(path, n_features=300, n_labels=20)
    assert data.n_rows == 500 and data.features[0].dim == 300 and data.n_labels == 20
    assert_matches(data, labels, ids, values)


def test_big_file_in_chunks_any_thread_count(tmp_path):
    """100,000 rows: several MB, cut into many chunks; every thread count must give the same arrays."""
    rng = np.random.default_rng(3)
    n = 100_000
    counts = rng.integers(0, 12, size=n)
    ids = [np.sort(rng.choice(5000, size=c, replace=False)) for c in counts]
    values = [rng.random(c).astype(np.float32) for c in counts]
    labels = [[int(x)] for x in rng.integers(0, 100, size=n)]
    lines = [f"{labels[r][0]} " + " ".join(f"{i}:{v:.9g}" for i, v in zip(ids[r], values[r])) for r in range(n)]
    path = tmp_path / "big.txt"
    path.write_text(f"{n} 5000 100\n" + "\n".join(lines) + "\n")
    assert path.stat().st_size > 4 * 256 * 1024  # enough for several chunks
    for threads in (1, 3, 0):
        data = read_xmc(path, n_features=5000, n_labels=100, threads=threads)
        assert_matches(data, labels, ids, values)
    # an error deep in a later chunk still gets its line number, whichever thread finds it
    lines[87_654] = lines[87_654] + " 17:oops"
    lines[95_000] = "x 1:1"
    path.write_text(f"{n} 5000 100\n" + "\n".join(lines) + "\n")
    for threads in (1, 4):
        with pytest.raises(DataError) as caught:
            read_xmc(path, threads=threads)
        assert (caught.value.line, caught.value.message) == (87_656, "value 'oops' of feature 17 is not a number")


# ---- arrays ------------------------------------------------------------------------------------------------------

def test_from_dense_array_and_class_ids():
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    data = from_arrays(X, np.array([2, 0, 1, 2]), n_features=3, n_labels=3)
    m = data.features[0]
    assert not m.is_sparse and m.dense.dtype == np.float32 and m.dense.flags.c_contiguous
    assert m.dense.tolist() == X.tolist() and m.max_row_nnz == 3
    assert data.label_indptr.tolist() == [0, 1, 2, 3, 4] and data.label_ids.tolist() == [2, 0, 1, 2]
    assert data.path is None and data.n_rows == 4


def test_from_scipy_csr_and_multi_label():
    rows, cols = [0, 0, 2, 2, 2], [4, 1, 3, 3, 0]  # unsorted, and (2, 3) twice: scipy sums repeats
    X = sp.coo_matrix((np.array([1.0, 2.0, 3.0, 4.0, 5.0]), (rows, cols)), shape=(3, 6))
    y = [[3, 1], (), {0, 4, 2}]
    data = from_arrays(X, y, n_features=6, n_labels=5)
    m = data.features[0]
    assert m.indptr.tolist() == [0, 2, 2, 4] and m.indices.tolist() == [1, 4, 0, 3]
    assert m.values.tolist() == [2.0, 1.0, 5.0, 7.0]
    assert (m.indptr.dtype, m.indices.dtype, m.values.dtype) == (np.int64, np.int32, np.float32)
    assert data.label_indptr.tolist() == [0, 2, 2, 5] and data.label_ids.tolist() == [1, 3, 0, 2, 4]
    assert m.max_row_nnz == 2
    # a CSR matrix with unsorted columns is sorted in a copy: the caller's matrix is left as it was
    unsorted = sp.csr_matrix((np.array([1.0, 2.0]), np.array([4, 1]), np.array([0, 2])), shape=(1, 6))
    data = from_arrays(unsorted, [[0]], n_features=6, n_labels=5)
    assert data.features[0].indices.tolist() == [1, 4] and data.features[0].values.tolist() == [2.0, 1.0]
    assert unsorted.indices.tolist() == [4, 1] and unsorted.data.tolist() == [1.0, 2.0]


def test_from_arrays_matches_the_file_reader(tmp_path):
    rng = np.random.default_rng(11)
    path = tmp_path / "r.txt"
    labels, ids, values = random_file(rng, path, 200, 50, 8)
    from_file = read_xmc(path)
    m = from_file.features[0]
    X = sp.csr_matrix((m.values, m.indices, m.indptr), shape=(200, 50))
    indicator = sp.csr_matrix((np.ones(len(from_file.label_ids)), from_file.label_ids, from_file.label_indptr),
                              shape=(200, 8))
    for y in (labels, indicator):
        data = from_arrays(X, y, n_features=50, n_labels=8)
        assert_matches(data, labels, ids, values)


def test_from_dict_of_inputs_follows_names():
    text = np.zeros((3, 2), dtype=np.float32)
    image = sp.identity(3, format="csr") * 2.0
    X = {"image": image, "text": text}
    data = from_arrays(X, [0, 1, 1], n_features=[2, 3], n_labels=2, names=["text", "image"])
    assert [f.dim for f in data.features] == [2, 3]
    assert not data.features[0].is_sparse and data.features[1].is_sparse
    same = from_arrays(X, None, n_features={"image": 3, "text": 2}, n_labels=2, names=("text", "image"))
    assert [f.dim for f in same.features] == [2, 3] and same.label_ids is None
    with pytest.raises(UsageError, match="pass names"):
        from_arrays(X, n_features=[2, 3], n_labels=2)
    with pytest.raises(UsageError, match="each key of X exactly once"):
        from_arrays(X, n_features=[2, 3], n_labels=2, names=["text", "text"])
    with pytest.raises(DataError) as caught:
        from_arrays({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))}, n_features=[2, 2], n_labels=2, names="ab")
    assert caught.value.path == "X['b']" and caught.value.message == "has 4 rows but X['a'] has 3"


ARRAY_ERRORS = [
    # (X, y, n_features, array name, row, message)
    (np.array([[1.0, 2.0], [3.0, np.nan], [np.inf, 0.0]]), None, 2, "X", 2,
     "row 2, column 1: value nan is NaN, infinite or beyond the float32 range"),
    (np.array([[1.0, 2.0], [1e300, 0.0]]), None, 2, "X", 2,
     "row 2, column 0: value 1e+300 is NaN, infinite or beyond the float32 range"),
    (sp.csr_matrix(np.array([[0.0, 1.0], [0.0, 0.0], [np.inf, 0.0]])), None, 2, "X", 3,
     "row 3, column 0: value inf is NaN, infinite or beyond the float32 range"),
    (np.zeros((2, 3)), None, 2, "X", None, "has 3 columns but n_features is 2"),
    (sp.csr_matrix((2, 3)), None, 2, "X", None, "has 3 columns but n_features is 2"),
    (np.zeros(3), None, 3, "X", None, "must be 2-D [rows, features], got shape (3,)"),
    (np.array([["a", "b"]]), None, 2, "X", None, "holds <U1 values; expected numbers"),
    (np.zeros((3, 2)), np.array([0, 1]), 2, "y", None, "has 2 entries but X has 3 rows"),
    (np.zeros((3, 2)), np.array([0, 4, 1]), 2, "y", 2, "row 2: label id 4 is out of range (n_labels = 4)"),
    (np.zeros((3, 2)), np.array([0, -1, 1]), 2, "y", 2, "row 2: label id -1 is negative"),
    (np.zeros((3, 2)), np.array([0.0, 1.0, 1.0]), 2, "y", None, "class ids must be integers, got float64"),
    (np.zeros((3, 2)), [[0], [1, 3, 1], [2]], 2, "y", 2, "row 2: label id 1 appears twice"),
    (np.zeros((3, 2)), [[0], [1], [2, 9]], 2, "y", 3, "row 3: label id 9 is out of range (n_labels = 4)"),
    (np.zeros((3, 2)), [[0], [1.5], []], 2, "y", None, "label ids must be integers, got float64"),
    (np.zeros((2, 2)), [[0], [1], [2]], 2, "y", None, "has 3 label lists but X has 2 rows"),
    (np.zeros((2, 2)), sp.csr_matrix(np.array([[0, 1, 0, 0], [2, 0, 0, 0]])), 2, "y", 2,
     "row 2, column 0: indicator value 2 is neither 0 nor 1"),
    (np.zeros((2, 2)), sp.csr_matrix((2, 5)), 2, "y", None,
     "is a 2 x 5 indicator matrix; expected 2 x 4 (rows x n_labels)"),
    (np.zeros((2, 2)), np.zeros((2, 4)), 2, "y", None,
     "y must be a 1-D integer array of class ids, a list of label-id lists, or a scipy sparse indicator matrix; "
     "got a 2-D array"),
    (np.zeros((0, 2)), None, 2, "X", None, "holds no rows"),
]


@pytest.mark.parametrize("X, y, n_features, name, row, message", ARRAY_ERRORS)
def test_array_errors(X, y, n_features, name, row, message):
    with pytest.raises(DataError) as caught:
        from_arrays(X, y, n_features=n_features, n_labels=4)
    assert (caught.value.path, caught.value.line, caught.value.message) == (name, row, message)


def test_indicator_ignores_explicit_zeros():
    y = sp.csr_matrix((np.array([1, 0, 1]), np.array([2, 0, 1]), np.array([0, 2, 3])), shape=(2, 3))
    data = from_arrays(np.zeros((2, 1)), y, n_features=1, n_labels=3)
    assert data.label_indptr.tolist() == [0, 1, 2] and data.label_ids.tolist() == [2, 1]


def test_feature_matrix_checks_its_arrays():
    with pytest.raises(ValueError):
        FeatureMatrix(dim=3, dense=np.zeros((2, 3)))  # float64
    with pytest.raises(ValueError):
        FeatureMatrix(dim=3, indptr=np.array([0, 2]), indices=np.array([0], dtype=np.int32),
                      values=np.array([1.0], dtype=np.float32))
    m = FeatureMatrix(dim=4, indptr=np.array([0, 3, 3, 4]), indices=np.array([0, 1, 3, 2], dtype=np.int32),
                      values=np.ones(4, dtype=np.float32))
    assert m.max_row_nnz == 3 and m.n_rows == 3


# ---- mutated files -------------------------------------------------------------------------------------------------

MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(
        [b":", b",", b" ", b"\n", b"\r", b"\0", b"-", b"nan", b"inf", b"1e99", b"99999999999", b":1:", b"\xff\xfe",
         b"\xc3\x28", b"0x1f", b"2147483648", b"-0", b"\t", b"3 7 5\n"])),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
)


def mutated(text: bytes, mutations) -> bytes:
    for kind, at, what in mutations:
        at = at % (len(text) + 1)
        if kind == "flip" and text:
            at = min(at, len(text) - 1)
            text = text[:at] + bytes([what]) + text[at + 1:]
        elif kind == "insert":
            text = text[:at] + what + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + what:]
        elif kind == "truncate":
            text = text[:at]
    return text


@settings(max_examples=examples(400), deadline=None)
@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=6), seed=st.integers(0, 3),
       sizes=st.sampled_from([None, (50, 9)]), threads=st.sampled_from([1, 2]), skip=st.booleans())
def test_mutated_files_give_rows_or_an_error_with_its_line(tmp_path_factory, mutations, seed, sizes, threads, skip):
    folder = tmp_path_factory.mktemp("mutated")
    path = folder / "data.txt"
    random_file(np.random.default_rng(seed), path, 12, 50, 9, header=seed % 2 == 0, crlf=seed == 3)
    text = mutated(path.read_bytes(), mutations)
    path.write_bytes(text)
    n_features, n_labels = sizes or (None, None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped rows are warned about
            data = read_xmc(path, n_features, n_labels, threads=threads, skip_bad_rows=skip)
    except DataError as error:
        assert error.path == str(path)
        assert error.line is None or 1 <= error.line <= text.count(b"\n") + 1
        assert error.message
    else:
        matrix = data.features[0]
        assert matrix.indptr[0] == 0 and np.all(np.diff(matrix.indptr) >= 0)
        assert matrix.indptr[-1] == len(matrix.indices) == len(matrix.values)
        assert np.all((matrix.indices >= 0) & (matrix.indices < matrix.dim)) and np.all(np.isfinite(matrix.values))
        if data.label_ids is not None:
            assert np.all((data.label_ids >= 0) & (data.label_ids < data.n_labels))
        assert skip or data.skipped_rows == 0


def test_a_utf16_file_is_refused_at_its_first_byte(tmp_path):
    path = tmp_path / "u16.txt"
    path.write_bytes("2 5 3\n0 1:1\n1 2:1\n".encode("utf-16"))
    with pytest.raises(DataError) as caught:
        read_xmc(path)
    assert str(caught.value) == f"{path}:1: unexpected byte 0xFF: a data file must be ASCII text"


def test_a_huge_row_and_a_huge_token(tmp_path):
    huge = tmp_path / "huge.txt"
    huge.write_text("2 300000 2\n0 " + " ".join(f"{i}:{i % 7}" for i in range(300_000)) + "\n1 5:2\n")
    data = read_xmc(huge, threads=2)
    matrix = data.features[0]
    assert np.diff(matrix.indptr).tolist() == [300_000, 1] and data.label_ids.tolist() == [0, 1]
    np.testing.assert_array_equal(matrix.indices[:300_000], np.arange(300_000))
    np.testing.assert_array_equal(matrix.values[:300_000], np.arange(300_000) % 7)
    token = tmp_path / "token.txt"
    token.write_text("0 " + "9" * 10_000_000 + ":1\n")
    with pytest.raises(DataError) as caught:
        read_xmc(token)
    assert caught.value.line == 1 and caught.value.message.startswith("feature id 9999")
    assert caught.value.message.endswith("... does not fit in int32 (largest 2147483647)")
    assert len(str(caught.value)) < 300  # the message quotes the start of the token, not all of it


# ---- skip_bad_rows -------------------------------------------------------------------------------------------------

BAD_ROWS = [  # (line, why it is bad): each replaces a good row of the file
    ("0 3:1 x:2", "feature id 'x' is not a non-negative integer"),
    ("1 60:1", "feature id 60 is out of range (n_features = 50)"),
    ("2 7:1 3:1 7:2", "feature id 7 appears twice in this row"),  # not neighbours: only a sort finds it
    ("2,5,2 4:1", "label id 2 appears twice in this row"),
    ("1 4:nan", "value 'nan' of feature 4 is not finite"),
    ("0 -3:1", "feature id -3 is negative"),
]


def _with_bad_rows(rng, path, n_rows, every):
    """A file whose every `every`-th row is one of BAD_ROWS; returns the good rows' truth and the bad lines."""
    labels, ids, values = random_file(rng, path, n_rows, 50, 9, header=True)
    lines = path.read_text().splitlines()
    bad_lines = {}
    for number, row in enumerate(range(0, n_rows, every)):
        text, _ = BAD_ROWS[number % len(BAD_ROWS)]
        lines[1 + row] = text
        bad_lines[2 + row] = number % len(BAD_ROWS)
    path.write_text("\n".join(lines) + "\n")
    good = [row for row in range(n_rows) if row % every]
    return [labels[r] for r in good], [ids[r] for r in good], [values[r] for r in good], bad_lines


def test_every_bad_row_is_an_error_of_its_own(tmp_path):
    for text, message in BAD_ROWS:
        error = read_error(tmp_path, f"3 50 9\n1 2:1\n{text}\n0 1:1\n")
        assert (error.line, error.message) == (3, message)


@pytest.mark.parametrize(("n_rows", "threads"), [(40, 1), (40, 2), (30_000, 3)])
def test_skip_bad_rows_leaves_them_out_and_counts_them(tmp_path, n_rows, threads):
    path = tmp_path / "bad.txt"
    labels, ids, values, bad_lines = _with_bad_rows(np.random.default_rng(n_rows), path, n_rows, every=7)
    with pytest.warns(UserWarning) as warned:
        data = read_xmc(path, 50, 9, threads=threads, skip_bad_rows=True)
    assert_matches(data, labels, ids, values)
    first_line = min(bad_lines)
    first = f"line {first_line}: {BAD_ROWS[bad_lines[first_line]][1]}"
    assert (data.skipped_rows, data.first_skipped) == (len(bad_lines), first)
    assert [str(w.message) for w in warned] == [f"{path}: skipped {len(bad_lines)} bad rows (the first, {first})"]
    with pytest.raises(DataError) as caught:  # without the option, the first bad row stops the read
        read_xmc(path, 50, 9, threads=threads)
    assert (caught.value.line, caught.value.message) == (first_line, BAD_ROWS[bad_lines[first_line]][1])


def test_skip_bad_rows_keeps_a_bad_header_and_an_all_bad_file_as_errors(tmp_path):
    assert read_error(tmp_path, "2 50\n0 1:1\n0 2:1\n", skip_bad_rows=True).message == \
        "header has 2 fields; expected 3: rows features labels"
    error = read_error(tmp_path, "0 x:1\n1 2:nan\n", skip_bad_rows=True)
    assert error.message == ("the file holds no data rows that could be read (2 skipped; the first, line 1: feature "
                             "id 'x' is not a non-negative integer)")
    with pytest.warns(UserWarning):  # the header's row count includes the rows left out
        assert read_xmc(write(tmp_path, "2 5 3\n0 x:1\n1 2:1\n"), skip_bad_rows=True).n_rows == 1


# ---- compressed files and many files ------------------------------------------------------------------------------

def parts_of(rng, directory: Path, n_parts: int, n_rows: int, *, header: bool):
    """`n_parts` random files in `directory`, named so that name order is part order; the truth of all their rows."""
    directory.mkdir()
    truth = ([], [], [])
    for k in range(n_parts):
        for whole, part in zip(truth, random_file(rng, directory / f"part-{k:02d}.txt", n_rows + k, 300, 20,
                                                  header=header)):
            whole.extend(part)
    return truth


@pytest.mark.parametrize("header", [True, False])
def test_a_directory_or_a_pattern_reads_its_files_in_name_order_one_after_another(tmp_path, header):
    labels, ids, values = parts_of(np.random.default_rng(3 + header), tmp_path / "parts", 3, 40, header=header)
    (tmp_path / "parts" / ".hidden").write_text("not data\n")
    for source in (tmp_path / "parts", str(tmp_path / "parts" / "part-*.txt")):
        data = read_xmc(source, n_features=300, n_labels=20)
        assert (data.path, data.n_rows) == (str(source), len(labels))
        assert_matches(data, labels, ids, values)
    # without sizes, a part's header or its largest ids say them: the largest over all parts holds every row
    data = read_xmc(tmp_path / "parts")
    assert data.features[0].dim == (300 if header else 1 + max(int(i.max()) for i in ids if len(i)))
    assert data.n_labels == (20 if header else 1 + max(max(x) for x in labels if x))


def test_patterns_and_directories_that_name_no_file_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    for source, message in ((tmp_path / "empty", "the directory holds no data files"),
                            (str(tmp_path / "part-*.txt"), "no file matches this pattern")):
        with pytest.raises(DataError) as caught:
            read_xmc(source, n_features=10, n_labels=10)
        assert (caught.value.path, caught.value.message) == (str(source), message)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_compressed_file_reads_as_its_text_whatever_its_name(tmp_path, compression):
    rng = np.random.default_rng(11)
    plain = tmp_path / "plain.txt"
    labels, ids, values = random_file(rng, plain, 300, 300, 20)
    if compression == "gzip":
        import gzip

        # two members, as concatenated .gz files are: both are read
        text = plain.read_bytes()
        packed = gzip.compress(text[:len(text) // 2]) + gzip.compress(text[len(text) // 2:])
    else:
        zstandard = pytest.importorskip("zstandard")
        packed = zstandard.ZstdCompressor().compress(plain.read_bytes())
    for name in ("data.txt.gz", "data.txt"):  # the magic number decides, not the name
        data = read_xmc(write(tmp_path, packed, name), n_features=300, n_labels=20)
        assert_matches(data, labels, ids, values)
    # cut inside its last frame (a streaming reader would stop there quietly)
    error = read_error(tmp_path, packed[:len(packed) * 3 // 4], n_features=300, n_labels=20)
    assert error.message.startswith(f"cannot decompress the {compression} file: ") and error.line is None


@pytest.mark.parametrize("damage, message", [
    (lambda packed: packed[:len(packed) // 2], "cannot decompress the gzip file: Compressed file ended before the "
                                               "end-of-stream marker was reached"),
    # zlib words what it found in its own way (its versions differ): only where the message comes from is fixed
    (lambda packed: packed[:10] + bytes(len(packed) - 10), "cannot decompress the gzip file: Error -3 while "
                                                           "decompressing data: "),
])
def test_a_damaged_gzip_file_is_a_data_error(tmp_path, damage, message):
    import gzip

    packed = gzip.compress(b"3 10 10\n1 2:1\n2 3:1\n3 4:1\n" * 50)
    error = read_error(tmp_path, damage(packed), n_features=10, n_labels=10)
    assert error.message.startswith(message) and error.line is None
