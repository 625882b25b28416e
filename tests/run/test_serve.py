"""``boltc serve``: the server started as users start it, on a free loopback port, called over HTTP with httpx. Its
answers equal ``model.predict`` of the same rows (XMC and typed-column models, one request or many at once), bad
requests get a 4xx naming the field, and it stops cleanly on SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import boltc
from boltc.data import read_xmc

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

# a small XMC model, and rows whose labels follow a topic their features hint at
from test_export import XMC_SPEC, _xmc_file  # noqa: E402 (tests/run is on the path)

SHOP_SPEC = """\
model shop {
    input title:  text(ngrams=2, features=4001)
    input brand:  categorical(features=101, column="Brand")
    input price:  numerical(bins=8, range=(0, 200))
    target section: classes[auto]
    t = dense(title, 16, activation=relu)
    b = dense(brand, 4, activation=relu)
    p = dense(price, 4, activation=relu)
    h = concat(t, b, p)
    scores = dense(h, auto, activation=softmax)
    loss cross_entropy(scores, section)
    train { batch_size = 8, epochs = 20, seed = 1 }
}
"""

SHOP_ROWS = [
    {"title": "red running shoes", "Brand": "Acme", "price": 59.9, "section": "shoes"},
    {"title": "blue denim jeans", "Brand": "Denimco", "price": 45, "section": "clothes"},
    {"title": "steel kettle two litres", "Brand": "HomeX", "price": 30, "section": "kitchen"},
    {"title": "trail shoes waterproof", "Brand": "Acme", "price": 89, "section": "shoes"},
    {"title": "linen shirt", "Brand": "Denimco", "price": 35, "section": "clothes"},
    {"title": "tea pot ceramic", "Brand": "HomeX", "price": 25, "section": "kitchen"},
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`boltc serve MODEL` in a child process on a free loopback port."""

    def __init__(self, model_path, *options: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "boltc.cli", "serve", str(model_path), "--host", "127.0.0.1", "--port",
             str(self.port), *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # bounded: a server that never comes up fails the test
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.process.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError("the server did not answer /health within 120 s")

    def post(self, body, **kwargs):
        return httpx.post(f"{self.url}/predict", timeout=30, **({"json": body} if body is not None else kwargs))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="module")
def xmc_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve")
    spec = folder / "small_xmc.bolt"
    spec.write_text(XMC_SPEC)
    _xmc_file(folder / "train.txt", 4000, 0)
    _xmc_file(folder / "test.txt", 200, 1)
    model = boltc.load(spec, tune=False)
    model.fit(str(folder / "train.txt"), learning_rate=0.005, validation=False)
    model.save(folder / "model.boltm")
    server = Server(folder / "model.boltm", "--max-wait-ms", "20")
    yield boltc.load_model(folder / "model.boltm"), read_xmc(str(folder / "test.txt"), n_features=500,
                                                            n_labels=900), server
    assert server.stop() == 0, server.process.stderr.read()


def _rows_of(dataset, first: int, count: int, as_objects: bool) -> list:
    matrix = dataset.features[0]
    rows = []
    for r in range(first, first + count):
        ids = matrix.indices[matrix.indptr[r]:matrix.indptr[r + 1]].tolist()
        values = matrix.values[matrix.indptr[r]:matrix.indptr[r + 1]].tolist()
        rows.append({str(i): v for i, v in zip(ids, values)} if as_objects else ids)
    return rows


def _subset(dataset, first: int, count: int, ones: bool):
    from boltc.data import Dataset, FeatureMatrix

    matrix = dataset.features[0]
    start, end = matrix.indptr[first], matrix.indptr[first + count]
    values = np.ones(end - start, np.float32) if ones else matrix.values[start:end]
    sliced = FeatureMatrix(matrix.dim, indptr=matrix.indptr[first:first + count + 1] - start,
                           indices=matrix.indices[start:end], values=values)
    return Dataset(None, count, (sliced,), dataset.n_labels, None, None)


def _answer(response) -> tuple[np.ndarray, np.ndarray]:
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    return (np.array([[p["label"] for p in row] for row in predictions]),
            np.array([[p["score"] for p in row] for row in predictions], dtype=np.float32))


@pytest.mark.parametrize("as_objects", [True, False], ids=["id-value objects", "id lists"])
def test_answers_equal_predict_for_an_xmc_model(xmc_server, as_objects):
    model, test, server = xmc_server
    response = server.post({"rows": _rows_of(test, 0, 50, as_objects), "top_k": 5})
    ids, scores = _answer(response)
    want_ids, want_scores = model.predict(_subset(test, 0, 50, ones=not as_objects), top_k=5, sparse=True)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


@pytest.mark.xdist_group("cores")  # not beside Ray's workers (tests/run/test_distributed.py): they take the cores
def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(xmc_server):
    """Each answer is the row's prediction alone, whatever shares its batch: sparse inference's top-ups follow a row's
    keys, not its place in a batch, and requests of different top_k are not batched together."""
    model, test, server = xmc_server
    # top_k near the most sparse inference scores: rows whose candidates are fewer are topped up
    alone = [model.predict(_subset(test, r, 1, ones=False), top_k=120 + r % 3, sparse=True) for r in range(64)]

    async def ask_all():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await asyncio.gather(*(client.post("/predict", json={"rows": _rows_of(test, r, 1, True),
                                                                        "top_k": 120 + r % 3})
                                          for r in range(64)))

    responses = asyncio.run(ask_all())
    for r, response in enumerate(responses):
        ids, scores = _answer(response)
        np.testing.assert_array_equal(ids, alone[r][0])
        np.testing.assert_array_equal(scores, alone[r][1])
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    batches = int(next(line.split()[1] for line in metrics.splitlines() if line.startswith("boltc_batch_rows_count")))
    rows = int(next(line.split()[1] for line in metrics.splitlines() if line.startswith("boltc_batch_rows_sum")
                    ).split(".")[0])
    assert rows >= 64 and batches < rows, "64 concurrent requests were scored one call each"


@pytest.mark.parametrize(("body", "status", "field", "message"), [
    (b"{not json", 400, "body", "expected a JSON object"),
    ([1, 2], 400, "body", "expected a JSON object"),
    ({"rows": []}, 400, "rows", "expected a non-empty list of rows"),
    ({"rows": [[1, 2], [3, 999]]}, 400, "rows[1]", "feature id 999 is outside 0..499"),
    ({"rows": [[1, 1]]}, 400, "rows[0]", "feature id 1 appears twice"),
    ({"rows": [{"7": "x"}]}, 400, "rows[0]", "expected a number for each feature id"),
    ({"rows": [{"seven": 1.0}]}, 400, "rows[0]", "expected feature ids as the object's keys"),
    ({"rows": [[1.5]]}, 400, "rows[0]", "expected feature ids as integers"),
    ({"rows": [[10 ** 30]]}, 400, "rows[0]", f"feature id {10 ** 30} is outside 0..499"),
    ({"rows": [{"7": 1e39}]}, 400, "rows[0]", "expected a number for each feature id"),
    ({"rows": [{"1_0": 1.0}]}, 400, "rows[0]", "expected feature ids as the object's keys"),
    ({"rows": ["words"]}, 400, "rows[0]", "expected a list of feature ids or an object {id: value}"),
    ({"rows": [[1]], "top_k": 0}, 400, "top_k", "expected an integer from 1 to 122"),  # the plan's inference_active
    ({"rows": [[1]], "limit": 3}, 400, "limit", "unknown field (expected rows, top_k, update_history)"),
    ({"rows": [[1]], "update_history": True}, 403, "update_history",
     "this server does not add requests to history inputs (start it with --allow-history-updates)"),
])
def test_bad_requests_get_a_4xx_naming_the_field(xmc_server, body, status, field, message):
    _, _, server = xmc_server
    response = server.post(None, content=body) if isinstance(body, bytes) else server.post(body)
    assert response.status_code == status
    assert response.json() == {"error": message, "field": field}
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "ok"}


def test_metadata_describes_the_model(xmc_server):
    model, _, server = xmc_server
    described = httpx.get(f"{server.url}/metadata", timeout=10).json()
    assert described["model"] == "small_xmc"
    assert described["inputs"] == [{"name": "words", "kind": "sparse", "dim": 500}]
    assert (described["outputs"], described["sparse"], described["labels"]) == (900, True, None)
    assert described["top_k_most"] == model.plan.output.lsh.inference_active


def test_a_typed_column_model_answers_with_label_names(tmp_path):
    spec = tmp_path / "shop.bolt"
    spec.write_text(SHOP_SPEC)
    train = tmp_path / "train.csv"
    train.write_text("title,Brand,price,section\n" + "".join(
        f"{row['title']},{row['Brand']},{row['price']},{row['section']}\n" for row in SHOP_ROWS * 5))
    model = boltc.load(spec, tune=False)
    model.fit(str(train), learning_rate=0.01, validation=False)
    model.save(tmp_path / "shop.boltm")
    asked = [{k: v for k, v in row.items() if k != "section"} for row in SHOP_ROWS]
    asked[1]["price"] = None  # an empty field
    server = Server(tmp_path / "shop.boltm")
    try:
        response = server.post({"rows": asked, "top_k": 2})
        assert response.status_code == 200, response.text
        want_ids, want_scores = model.predict(boltc.Records(asked), top_k=2)
        got = response.json()["predictions"]
        assert [[p["label"] for p in row] for row in got] == \
            [[model.label_names[i] for i in row] for row in want_ids.tolist()]
        np.testing.assert_array_equal(np.array([[p["score"] for p in row] for row in got], np.float32), want_scores)
        assert [row[0]["label"] for row in got] == [row["section"] for row in SHOP_ROWS]
        bad = server.post({"rows": [{"title": "x", "colour": "red"}]})
        assert bad.status_code == 400
        assert bad.json() == {"error": "rows[0]: the model reads no column 'colour' (it reads title, Brand, price, "
                                       "section)", "field": "rows"}
        bad = server.post({"rows": [{"title": "x", "price": "cheap"}]})
        assert bad.status_code == 400 and "row 1: column 'price'" in bad.json()["error"], bad.text
    finally:
        assert server.stop() == 0


def test_records_predict_as_the_same_rows_in_a_csv_file(tmp_path):
    spec = tmp_path / "shop.bolt"
    spec.write_text(SHOP_SPEC)
    train = tmp_path / "train.csv"
    text = "title,Brand,price,section\n" + "".join(
        f"{row['title']},{row['Brand']},{row['price']},{row['section']}\n" for row in SHOP_ROWS)
    train.write_text(text)
    model = boltc.load(spec, tune=False)
    model.fit(str(train), epochs=2, learning_rate=0.01, validation=False)
    from_file = model.predict(str(train), top_k=2)
    from_records = model.predict(boltc.Records(SHOP_ROWS), top_k=2)
    for a, b in zip(from_file, from_records):
        np.testing.assert_array_equal(a, b)


def test_serve_without_its_extra_says_what_to_install(tmp_path):
    script = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
              "from boltc.cli import main; sys.exit(main(['serve', 'missing.boltm']))")
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ}, check=False, timeout=60)
    assert ran.returncode == 1
    assert "boltc serve needs starlette and uvicorn: pip install 'boltc[serve]'" in ran.stderr


HISTORY_SPEC = """\
model next_movie {
    input seen: history(of=movie, by=user, last=3, order=timestamp, features=1009)
    target movie: classes[auto]
    h = dense(seen, 16, activation=relu)
    scores = dense(h, auto, activation=softmax)
    loss cross_entropy(scores, movie)
    train { batch_size = 4, epochs = 50, seed = 2 }
}
"""


def test_history_updates_only_where_allowed_and_as_predict_makes_them(tmp_path):
    spec = tmp_path / "next.bolt"
    spec.write_text(HISTORY_SPEC)
    train = tmp_path / "train.csv"
    train.write_text("user,movie,timestamp\nu1,m1,1\nu1,m2,2\nu2,m2,1\nu2,m3,2\nu1,m3,3\nu2,m4,3\nu3,m1,1\n"
                     "u3,m4,2\n")
    model = boltc.load(spec, tune=False)
    model.fit(str(train), learning_rate=0.01, validation=False)
    model.save(tmp_path / "next.boltm")
    seen = [{"user": "u3", "movie": "m2", "timestamp": 10}, {"user": "u3", "movie": "m3", "timestamp": 11}]
    query = [{"user": "u3", "timestamp": 12}, {"user": "u1", "timestamp": 12}]
    server = Server(tmp_path / "next.boltm", "--allow-history-updates", "--dense")
    try:
        assert server.post({"rows": seen, "update_history": True}).status_code == 200
        got = server.post({"rows": query, "top_k": 3}).json()["predictions"]
    finally:
        assert server.stop() == 0
    model.predict(boltc.Records(seen), update_history=True)
    want_ids, want_scores = model.predict(boltc.Records(query), top_k=3)
    assert [[p["label"] for p in row] for row in got] == [[model.label_names[i] for i in row]
                                                          for row in want_ids.tolist()]
    np.testing.assert_array_equal(np.array([[p["score"] for p in row] for row in got], np.float32), want_scores)
    untouched = boltc.load_model(tmp_path / "next.boltm")  # and the answers differ from those without the update
    assert not np.array_equal(untouched.predict(boltc.Records(query), top_k=3)[1], want_scores)


TWO_INPUT_SPEC = """\
model two_inputs {
    input  words: sparse[300]
    input  price: dense[4]
    target item:  classes[200]
    w = dense(words, 16, activation=relu)
    p = dense(price, 4, activation=relu)
    h = concat(w, p)
    scores = dense(h, 200, activation=softmax, sparsity=0.1)
    loss cross_entropy(scores, item)
    train { batch_size = 32, epochs = 3, seed = 9 }
}
"""


def test_rows_of_several_inputs_are_objects_keyed_by_input_name(tmp_path):
    from scipy import sparse as sp

    rng = np.random.default_rng(4)
    items = rng.integers(0, 200, size=800)
    words = sp.csr_matrix((np.ones(800 * 3, np.float32), (np.repeat(np.arange(800), 3),
                                                          (items[:, None] + np.arange(3)).ravel() % 300)),
                          shape=(800, 300))
    price = (rng.normal(size=(800, 4)) + items[:, None] / 50).astype(np.float32)
    spec = tmp_path / "two.bolt"
    spec.write_text(TWO_INPUT_SPEC)
    model = boltc.load(spec, tune=False)
    model.fit(({"words": words, "price": price}, items), learning_rate=0.01, validation=False)
    model.save(tmp_path / "two.boltm")
    asked = [{"words": sorted(int(i) for i in words[r].indices), "price": price[r].tolist()} for r in range(20)]
    server = Server(tmp_path / "two.boltm")
    try:
        got = _answer(server.post({"rows": asked, "top_k": 3}))
        missing = server.post({"rows": [{"words": [1]}]})
        unknown = server.post({"rows": [{"words": [1], "price": [0, 0, 0, 0], "colour": 1}]})
        short = server.post({"rows": [{"words": [1], "price": [0, 0]}]})
    finally:
        assert server.stop() == 0
    want = model.predict({"words": words[:20], "price": price[:20]}, top_k=3, sparse=True)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert missing.json() == {"error": "missing input", "field": "rows[0].price"}
    assert unknown.json() == {"error": "the model has no such input", "field": "rows[0].colour"}
    assert short.json() == {"error": "expected a list of 4 numbers (a dense input)", "field": "rows[0].price"}
