"""Streams: XMC files read in chunks give exactly the rows, errors and line numbers of the whole file read at once;
a stream of one chunk trains bit for bit as the file held in memory; many chunks visit every row once an epoch;
evaluation and prediction of a stream equal those of the file."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

import boltc
from boltc.cli import main
from boltc.data import concatenated, read_xmc
from boltc.diagnostics import DataError, UsageError
from boltc.streaming import ChunkReader, Stream

SPEC = """model topics {
    input  words: sparse[400]
    target topic: classes[20]
    hidden = dense(words, 16, activation=relu)
    scores = dense(hidden, 20, activation=softmax)
    loss cross_entropy(scores, topic)
    train { batch_size = 16, epochs = 2 }
    metrics accuracy, precision@1, loss
}
"""


def xmc_text(rows: int, seed: int = 0, header: bool = True) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(rows):
        topic = int(rng.integers(20))
        features = sorted({int(f) for f in (rng.integers(20, size=6) + topic * 20) % 400})
        lines.append(f"{topic} " + " ".join(f"{f}:{rng.integers(1, 4)}" for f in features))
    return (f"{rows} 400 20\n" if header else "") + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    (folder / "train.txt").write_text(xmc_text(600))
    (folder / "spec.bolt").write_text(SPEC)
    return folder


def read_whole_in_chunks(path, chunk_bytes: int):
    parts = [dataset for dataset, _ in ChunkReader(Stream(path, chunk_bytes), 400, 20).chunks()]
    return concatenated(str(path), parts), len(parts)


def assert_same_rows(got, expected):
    assert got.n_rows == expected.n_rows
    for a, b in ((got.features[0].indptr, expected.features[0].indptr),
                 (got.features[0].indices, expected.features[0].indices),
                 (got.features[0].values, expected.features[0].values),
                 (got.label_indptr, expected.label_indptr), (got.label_ids, expected.label_ids)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("chunk_bytes", [1, 7, 100, 4096, 1 << 20])
def test_chunks_hold_exactly_the_rows_of_the_whole_file(files, chunk_bytes):
    got, count = read_whole_in_chunks(files / "train.txt", chunk_bytes)
    assert_same_rows(got, read_xmc(files / "train.txt", 400, 20))
    assert (count > 1) == (chunk_bytes < 1 << 20)


def test_compressed_files_and_a_directory_of_parts_stream_too(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(xmc_text(300, seed=1).encode()))
    (tmp_path / "b.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(xmc_text(200, seed=2).encode()))
    got, count = read_whole_in_chunks(tmp_path, 1000)
    assert_same_rows(got, read_xmc(tmp_path, 400, 20))
    assert count > 2


def test_an_error_in_a_later_chunk_names_the_files_line(tmp_path):
    lines = xmc_text(200).splitlines()
    lines[150] = "3 12:1 oops"
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as whole:
        read_xmc(path, 400, 20)
    with pytest.raises(DataError) as streamed:
        read_whole_in_chunks(path, 500)
    assert (streamed.value.line, streamed.value.message) == (whole.value.line, whole.value.message) == (
        151, whole.value.message)


def test_a_header_whose_row_count_is_wrong_is_reported(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text(xmc_text(50).replace("50 400 20", "60 400 20", 1))
    with pytest.raises(DataError) as caught:
        read_whole_in_chunks(path, 300)
    assert (caught.value.line, caught.value.message) == (1, "header says 60 rows but the file has 50")


def test_a_stream_of_one_chunk_trains_exactly_as_the_file_in_memory(files):
    held = boltc.load(files / "spec.bolt", tune=False)
    held.fit(files / "train.txt", learning_rate=0.01, progress=False)
    streamed = boltc.load(files / "spec.bolt", tune=False)
    streamed.fit(Stream(files / "train.txt", 1 << 30), learning_rate=0.01, progress=False)
    for name, array in held.parameters().items():
        np.testing.assert_array_equal(streamed.parameters()[name], array, err_msg=name)


def test_many_chunks_visit_every_row_once_an_epoch_and_evaluate_and_predict_as_the_file(files):
    model = boltc.load(files / "spec.bolt", tune=False)
    history = model.fit(Stream(files / "train.txt", 2000), learning_rate=0.01, progress=False)
    assert [record.samples for record in history.epochs] == [600, 600]
    stream = Stream(files / "train.txt", 1500)
    assert model.evaluate(stream) == model.evaluate(files / "train.txt")
    assert model.last_eval_rows == (600, 0)
    for got, expected in zip(model.predict(stream, top_k=3), model.predict(files / "train.txt", top_k=3)):
        np.testing.assert_array_equal(got, expected)


def test_a_file_over_the_memory_budget_streams_by_itself(files, monkeypatch):
    model = boltc.load(files / "spec.bolt", tune=False)
    assert not isinstance(model.data_source(files / "train.txt"), Stream)
    monkeypatch.setenv("BOLTC_MEMORY_BUDGET", "1K")
    assert model.data_source(files / "train.txt") == Stream(files / "train.txt")
    monkeypatch.setenv("BOLTC_MEMORY_BUDGET", "lots")
    with pytest.raises(UsageError, match="BOLTC_MEMORY_BUDGET must be a number of bytes"):
        model.data_source(files / "train.txt")


def test_a_label_count_of_auto_is_the_streams_header(files, tmp_path):
    spec = tmp_path / "auto.bolt"
    spec.write_text(SPEC.replace("classes[20]", "classes[auto]").replace("dense(hidden, 20,", "dense(hidden, auto,"))
    model = boltc.load(spec, tune=False)
    model.fit(Stream(files / "train.txt", 3000), epochs=1, learning_rate=0.01, progress=False)
    assert model.plan.target_dim == 20
    headless = tmp_path / "headless.txt"
    headless.write_text(xmc_text(40, header=False))
    with pytest.raises(UsageError, match="states it in its first file's header"):
        boltc.load(spec, tune=False).fit(Stream(headless), progress=False)


def test_the_command_line_streams_and_predicts_line_for_line(files, tmp_path, capsys):
    saved = tmp_path / "m.boltm"
    assert main(["train", str(files / "spec.bolt"), "--train", str(files / "train.txt"), "--stream", "--chunk-mb",
                 "1", "--epochs", "1", "--learning-rate", "0.01", "--save", str(saved)]) == 0
    assert "streamed (1 MB chunks) training rows" in capsys.readouterr().out
    assert main(["predict", str(saved), "--data", str(files / "train.txt"), "--top-k", "2"]) == 0
    whole = capsys.readouterr().out
    assert main(["predict", str(saved), "--data", str(files / "train.txt"), "--top-k", "2", "--stream"]) == 0
    assert capsys.readouterr().out == whole and len(whole.splitlines()) == 600
    assert os.path.getsize(saved) > 0


@pytest.mark.parametrize("shards", [2, 3, 7])
def test_shards_of_one_file_hold_every_row_once_in_order(tmp_path, shards):
    """Byte ranges cut at line breaks: whatever the cut points, lines crossing them included, the shards together
    hold the file's rows, each once, in file order; only the first reads the header."""
    from boltc.streaming import ChunkReader, Stream

    rng = np.random.default_rng(shards)
    lines = [f"{r % 5} " + " ".join(f"{int(f)}:{r}" for f in sorted(set(rng.integers(0, 50, size=1 + r % 9))))
             for r in range(300)]
    path = tmp_path / "data.txt"
    path.write_text("300 50 5\n" + "\n".join(lines) + "\n")
    whole = [(dataset.features[0].indices.tolist(), dataset.label_ids.tolist())
             for dataset, _ in ChunkReader(Stream(path, chunk_bytes=256), 50, 5).chunks()]
    parts = []
    for index in range(shards):
        reader = ChunkReader(Stream(path, chunk_bytes=97, shard=(index, shards)), 50, 5)
        parts.append([(dataset.features[0].indices.tolist(), dataset.label_ids.tolist())
                      for dataset, _ in reader.chunks()])
    flat = lambda chunks: ([i for ids, _ in chunks for i in ids], [label for _, labels in chunks for label in labels])
    assert flat([chunk for part in parts for chunk in part]) == flat(whole)
    assert all(parts), "a shard of 300 rows got none"


def test_files_are_dealt_to_shards_and_errors_name_the_files_line(tmp_path):
    from boltc.diagnostics import DataError
    from boltc.streaming import ChunkReader, Stream

    folder = tmp_path / "parts"
    folder.mkdir()
    for k in range(3):
        (folder / f"part-{k}.txt").write_text(f"1 10 3\n{k} {k}:1.0\n")
    got = [[dataset.label_ids.tolist() for dataset, _ in ChunkReader(Stream(folder, shard=(i, 2)), 10, 3).chunks()]
           for i in range(2)]
    assert got == [[[0], [2]], [[1]]]
    bad = tmp_path / "bad.txt"
    bad.write_text("4 10 3\n0 1:1\n1 2:1\n2 3:x\n0 4:1\n")
    with pytest.raises(DataError) as caught:
        for index in range(2):
            list(ChunkReader(Stream(bad, shard=(index, 2)), 10, 3).chunks())
    assert caught.value.line == 4
