"""Typed columns: the generated C featurizers against a plain-Python reference (Python's csv module, hashlib-free
FNV-1a, datetime), the label vocabulary, and exact errors for bad files and specs."""

from __future__ import annotations

import csv
import datetime
import io
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import boltc
from boltc.cli import main
from boltc.diagnostics import DataError, SpecErrors, UsageError
from boltc.pipeline import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fuzzing import examples  # noqa: E402

SPEC = """model shop {
    input title:  text(ngrams=2, features=5003)
    input pairs:  text(pairs=true, lowercase=false, features=997, column="title")
    input brand:  categorical(features=101, delimiter="|", column="Brand")
    input price:  numerical(bins=8, range=(0, 200))
    input added:  date()
    input recent: sequence(delimiter=" ", features=1009)
    target section: multilabel[6, delimiter=";"]

    t = dense(title, 16, activation=relu)
    q = dense(pairs, 4, activation=relu)
    b = dense(brand, 4, activation=relu)
    p = dense(price, 4, activation=relu)
    d = dense(added, 4, activation=relu)
    r = dense(recent, 4, activation=relu)
    h = concat(t, q, b, p, d, r)
    scores = dense(h, 6, activation=softmax)
    loss cross_entropy(scores, section)
    train { batch_size = 4, epochs = 30 }
    metrics precision@1
}
"""

TRICKY = (
    'title,Brand,price,added,recent,section\r\n'
    '"Red running shoes, size 42",Acme|Bolt,59.90,2024-03-15,a1 b2 c3,shoes;sale\r\n'
    'Blue JEANS jeans,Denimco, 45 ,2024-02-29,b2,clothes\n'
    '\n'
    '"The ""best"" kettle\nTWO litres",HomeX,-3,2023-12-31,,kitchen\n'
    'Ünïcode tëa pot — 茶壶,,,,k9  k9,kitchen ; sale\n'
    ',Acme,500,2024-06-01,a1,shoes\n'
)

MASK = (1 << 64) - 1
ABC_HASH = 0x0DD490490804B508  # FNV-1a of "abc", finalised: a change here changes every hashed feature


def mix64(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def hash_bytes(data: bytes, lower: bool) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte + 32 if lower and 65 <= byte <= 90 else byte
        h = (h * 0x100000001B3) & MASK
    return mix64(h)


def hash_pair(first: int, second: int) -> int:
    return mix64((first * 0x9E3779B97F4A7C15 + second) & MASK)


def tokens(text: str) -> list[bytes]:
    out, word = [], bytearray()
    for byte in text.encode():
        if chr(byte).isascii() and (chr(byte).isalnum() or byte == 95) or byte >= 0x80:
            word.append(byte)
        elif word:
            out.append(bytes(word))
            word = bytearray()
    return out + ([bytes(word)] if word else [])


def parts(field: str, delimiter: str) -> list[bytes]:
    pieces = field.split(delimiter) if delimiter else [field]
    return [p.strip(" \t\r").encode() for p in pieces if p.strip(" \t\r")]


def reference(field: str, kind: str, **o) -> dict[int, float]:
    """What one field should become: {feature id: value}."""
    found: dict[int, float] = {}

    def add(value: int, modulus: int) -> None:
        found[value % modulus] = found.get(value % modulus, 0.0) + 1.0

    if kind == "text":
        hashes = [hash_bytes(t, o["lowercase"]) for t in tokens(field)]
        for k, h in enumerate(hashes):
            add(h, o["features"])
            if o["ngrams"] == 2 and k:
                add(hash_pair(hashes[k - 1], h), o["features"])
            if o["pairs"] and k < 64:
                for earlier in hashes[:k]:
                    add(hash_pair(min(earlier, h), max(earlier, h)), o["features"])
    elif kind == "categorical":
        for part in parts(field, o["delimiter"]):
            add(hash_bytes(part, False), o["features"])
    elif kind == "sequence":
        elements = parts(field, o["delimiter"])
        for position, element in enumerate(elements):
            add(hash_pair(hash_bytes(element, False), len(elements) - 1 - position), o["features"])
    elif kind == "numerical" and field.strip():
        place = math.floor((float(field) - o["low"]) / (o["high"] - o["low"]) * o["bins"])
        add(min(max(place, 0), o["bins"] - 1), o["bins"])
    elif kind == "date" and field.strip():
        day = datetime.date.fromisoformat(field.strip()[:10])
        for place in (day.weekday(), 7 + day.month - 1, 19 + (day.day - 1) // 7,
                      24 + (day.timetuple().tm_yday - 1) // 7):
            add(place, 77)
    return found


COLUMNS = [
    ("title", "text", dict(ngrams=2, pairs=False, lowercase=True, features=5003)),
    ("title", "text", dict(ngrams=1, pairs=True, lowercase=False, features=997)),
    ("Brand", "categorical", dict(delimiter="|", features=101)),
    ("price", "numerical", dict(bins=8, low=0.0, high=200.0)),
    ("added", "date", {}),
    ("recent", "sequence", dict(delimiter=" ", features=1009)),
]


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("columns") / "shop.bolt"
    path.write_text(SPEC)
    return path


@pytest.fixture()
def model(spec_path):
    return boltc.load(spec_path, tune=False)


def write(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_every_featurizer_matches_the_python_reference_on_tricky_csv(model, tmp_path):
    dataset = model.prepare_data(write(tmp_path, TRICKY), labelled=True, learn_labels=True)
    rows = list(csv.DictReader(io.StringIO(TRICKY.replace("\r\n", "\n"))))
    rows = [r for r in rows if any(v for v in r.values())]
    assert dataset.n_rows == len(rows) == 5
    for matrix, (header, kind, options) in zip(dataset.features, COLUMNS):
        for r, row in enumerate(rows):
            start, end = matrix.indptr[r], matrix.indptr[r + 1]
            got = dict(zip(matrix.indices[start:end].tolist(), matrix.values[start:end].tolist()))
            assert got == reference(row[header], kind, **options), (kind, r)
            assert list(matrix.indices[start:end]) == sorted(got)


def test_labels_are_learned_in_order_of_first_appearance(model, tmp_path):
    dataset = model.prepare_data(write(tmp_path, TRICKY), labelled=True, learn_labels=True)
    assert model.label_names == ("shoes", "sale", "clothes", "kitchen")
    assert [sorted(dataset.labels_of(r).tolist()) for r in range(5)] == [[0, 1], [2], [3], [1, 3], [0]]


def test_a_tsv_file_reads_the_same_as_its_csv(model, tmp_path):
    csv_text = "title,Brand,price,added,recent,section\nA b,X,1,2020-01-01,p q,one\n"
    tsv_text = csv_text.replace(",", "\t")
    from_csv = model.prepare_data(write(tmp_path, csv_text), labelled=True, learn_labels=True)
    from_tsv = model.prepare_data(write(tmp_path, tsv_text, "data.tsv"), labelled=True)
    for a, b in zip(from_csv.features, from_tsv.features):
        assert a.indices.tolist() == b.indices.tolist() and a.indptr.tolist() == b.indptr.tolist()


def test_hashes_are_pinned():
    """Featurized files and saved models must mean the same on every platform and in every release."""
    assert hash_bytes(b"abc", False) == ABC_HASH
    assert hash_bytes(b"ABC", True) == ABC_HASH != hash_bytes(b"ABC", False)


def test_training_predicting_and_names_survive_save_and_load(model, tmp_path, capsys):
    data = write(tmp_path, TRICKY)
    model.fit(data, epochs=300, progress=False)
    assert model.evaluate(data, progress=False)["precision@1"] == 1.0  # five rows, learnt by heart
    saved = tmp_path / "shop.boltm"
    model.save(saved)
    again = load_model(saved)
    assert again.label_names == model.label_names
    ids, _ = again.predict(data, top_k=1)
    assert ids[:, 0].tolist() == model.predict(data, top_k=1)[0][:, 0].tolist()
    capsys.readouterr()
    assert main(["predict", str(saved), "--data", str(data)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == [again.label_names[i] for i in ids[:, 0]]


def test_labels_not_seen_in_training_are_left_out_with_a_warning(model, tmp_path):
    model.prepare_data(write(tmp_path, TRICKY), labelled=True, learn_labels=True)
    other = write(tmp_path, "title,Brand,price,added,recent,section\nx,y,1,,,kitchen;garden\n", "other.csv")
    with pytest.warns(UserWarning, match="1 labels of column 'section' were not seen in training"):
        dataset = model.prepare_data(other, labelled=True)
    assert dataset.labels_of(0).tolist() == [3]


def test_more_labels_than_declared_says_how_many(model, tmp_path):
    rows = "".join(f"t,b,1,,,l{k};m{k}\n" for k in range(10))
    path = write(tmp_path, "title,Brand,price,added,recent,section\n" + rows)
    with pytest.raises(DataError, match=r"column 'section' holds 20 distinct labels, but the target declares "
                                        r"multilabel\[6\]"):
        model.prepare_data(path, labelled=True, learn_labels=True)


def test_evaluating_before_any_label_is_known_is_refused(model, tmp_path):
    with pytest.raises(UsageError, match="has not learned its label names yet"):
        model.evaluate(write(tmp_path, TRICKY), progress=False)


@pytest.mark.parametrize("text, line, message", [
    ("title,Brand,price,recent,section\n", 1, "no column 'added' for input 'added' (the header has 'title', "
                                              "'Brand', 'price', 'recent', 'section')"),
    ("title,Brand,price,added,recent,section\nA,B,1,2020-01-01,x\n", 2, "5 fields, but the header has 6"),
    ("title,Brand,price,added,recent,section\nA,B,1,,,s\nA,B,cheap,,,s\n", 3,
     "column 'price': expected a finite number, got 'cheap'"),
    ("title,Brand,price,added,recent,section\nA,B,nan,,,s\n", 2, "column 'price': expected a finite number, got 'nan'"),
    ("title,Brand,price,added,recent,section\nA,B,1,2023-02-29,,s\n", 2, "column 'added': no such date: 2023-02-29"),
    ("title,Brand,price,added,recent,section\nA,B,1,15/03/2024,,s\n", 2,
     "column 'added': expected a date as YYYY-MM-DD, got '15/03/2024'"),
    ("title,Brand,price,added,recent,section\nA,B,1,,,s\n\"open,B,1,,,s\n", 3,
     "a quoted field opened on line 3 never closes"),
    ("title,Brand,price,added,recent,section\n\"A\"x,B,1,,,s\n", 2,
     "field 1: expected a delimiter or the end of the line after a closing quote, got 'x' (a file whose quotes are "
     "ordinary characters reads with quoting 'tsv')"),
    ("title,Brand,price,added,recent,section\nA,B,1,,,\xff\n", 2, "column 'section': a label is not UTF-8 text"),
])
def test_bad_files_name_the_line_and_column(model, tmp_path, text, line, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(text.encode("utf-8", "surrogateescape") if "\xff" not in text
                     else text.encode("latin-1"))
    with pytest.raises(DataError) as caught:
        model.prepare_data(path, labelled=True, learn_labels=True)
    assert (caught.value.line, caught.value.message) == (line, message)


@pytest.mark.parametrize("change, message", [
    (("input recent: sequence(delimiter=\" \", features=1009)", "input recent: sparse[10]"),
     "input 'recent' reads feature ids, but input 'title' reads a typed column: a model reads either columns of a "
     "CSV/TSV file or feature ids, not both"),
    (("numerical(bins=8, range=(0, 200))", "numerical(bins=8, range=(0, 200), binning=quantile)"),
     "quantile bins are learned from the training data: drop range, or choose binning=equal"),
    (("numerical(bins=8, range=(0, 200))", "numerical(bins=8, binning=even)"),
     "binning must be quantile or equal, got 'even'"),
    (("range=(0, 200)", "range=(5, 5)"), "range's low end must be below its high end, got (5, 5)"),
    (("delimiter=\"|\"", "delimiter=\"||\""), "delimiter must be one ASCII character other than a quote or a line "
                                             "break, got '||'"),
    (("categorical(features=101", "category(features=101"), "a column's type must be text, categorical, numerical, "
                                                          "date, sequence, history or neighbours, got 'category'"),
    (("date()", "date(column=\"section\")"), "input 'added' reads column 'section', which holds the target 'section'"),
    (("text(ngrams=2", "text(ngrams=3"), "ngrams must be between 1 and 2, got 3"),
])
def test_spec_mistakes_are_reported_where_they_are(tmp_path, change, message):
    path = tmp_path / "bad.bolt"
    path.write_text(SPEC.replace(*change))
    with pytest.raises(SpecErrors) as caught:
        boltc.load(path, tune=False)
    assert [problem.message for problem in caught.value.errors] == [message]


def test_target_options_need_typed_columns(tmp_path):
    path = tmp_path / "ids.bolt"
    path.write_text("model m {\n input x: sparse[10]\n target y: classes[3, column=\"y\"]\n"
                    " s = dense(x, 3, activation=softmax)\n loss cross_entropy(s, y)\n}\n")
    with pytest.raises(SpecErrors) as caught:
        boltc.load(path, tune=False)
    problem = caught.value.errors[0]
    assert (problem.span.line, problem.span.column) == (3, 23)
    assert problem.message == "options of a target are for models that read typed columns (inputs such as text(...) " \
                              "or categorical(...))"


def test_the_generated_c_holds_no_text_of_the_spec(spec_path):
    from boltc.emit import emit
    from boltc.pipeline import plan_spec

    source = spec_path.read_text().replace('column="Brand"', 'column="*/ int injected; /*"')
    path = spec_path.with_name("hostile.bolt")
    path.write_text(source)
    assert "injected" not in emit(plan_spec(path)).c_text


def test_explain_shows_each_column_with_the_values_filled_in(spec_path):
    from boltc.explain import render_plan
    from boltc.pipeline import plan_spec

    text = render_plan(plan_spec(spec_path))
    assert "brand: sparse[101] (categorical(features=101, delimiter='|') of column 'Brand')" in text
    assert "title: sparse[5003] (text(ngrams=2, pairs=false, lowercase=true, features=5003) of column 'title')" in text
    assert "multilabel[6] from column 'section' split at ';'" in text


def test_boltc_train_learns_the_names_from_the_training_file_before_reading_the_test_file(spec_path, tmp_path):
    train = write(tmp_path, TRICKY)
    test = write(tmp_path, "title,Brand,price,added,recent,section\nTrail shoes,Acme,1,,,shoes;garden\n", "test.csv")
    saved = tmp_path / "shop.boltm"
    with pytest.warns(UserWarning, match="1 labels of column 'section' were not seen in training"):
        assert main(["train", str(spec_path), "--train", str(train), "--test", str(test), "--epochs", "1",
                     "--save", str(saved)]) == 0
    assert load_model(saved).label_names == ("shoes", "sale", "clothes", "kitchen")


# ---- history inputs ---------------------------------------------------------------------------------------------

HISTORY_SPEC = """model next_movie {
    input seen: history(of=movie, by=user, last=3, order=timestamp, features=1009)
    target movie: classes[8]
    h = dense(seen, 16, activation=relu)
    scores = dense(h, 8, activation=softmax)
    loss cross_entropy(scores, movie)
    train { batch_size = 4, epochs = 200 }
    metrics accuracy
}
"""


@pytest.fixture(scope="module")
def history_model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("history") / "next.bolt"
    path.write_text(HISTORY_SPEC)
    return path


def expected_history(events: list[tuple[int, int, int]], row: int, past: list[tuple[int, int, int]], last: int,
                     features: int) -> dict[int, float]:
    """Brute force: the items of `past` for the row's user, in (order, position), then of the rows before it in
    (order, position) with its user, the newest `last` of them, each as itself and at its position from the newest."""
    user, _, order = events[row]
    earlier = [item for _, (u, item, _) in sorted(enumerate(past), key=lambda e: (e[1][2], e[0])) if u == user and item]
    earlier += [item for k, (u, item, o) in sorted(enumerate(events), key=lambda e: (e[1][2], e[0]))
                if u == user and item and (o, k) < (order, row)]
    found: dict[int, float] = {}
    for position, item in enumerate(reversed(earlier[-last:])):
        for feature in (item % features, hash_pair(item, position) % features):
            found[feature] = found.get(feature, 0.0) + 1.0
    return found


def history_of(matrix, row: int) -> dict[int, float]:
    start, end = matrix.indptr[row], matrix.indptr[row + 1]
    return dict(zip(matrix.indices[start:end].tolist(), matrix.values[start:end].tolist()))


def as_keys(events):
    from boltc.columns import HistoryKeys

    users, items, orders = zip(*events) if events else ((), (), ())
    return HistoryKeys(np.array(users, np.uint64), np.array(items, np.uint64), np.array(orders, np.float64))


event = st.tuples(st.integers(1, 4), st.sampled_from([0, 11, 22, 33, 44, 2**63 + 5]), st.integers(0, 5))


@settings(max_examples=examples(60), deadline=None)
@given(past=st.lists(event, max_size=12), events=st.lists(event, min_size=1, max_size=16))
def test_a_history_holds_exactly_the_rows_before_it_never_later_ones(history_model_path, past, events):
    from boltc.columns import HistoryState, history_features

    library = boltc.load(history_model_path, tune=False).library
    _, state = history_features(as_keys(past), HistoryState.empty(), 3, 1009, library)
    matrix, after = history_features(as_keys(events), state, 3, 1009, library)
    for row in range(len(events)):
        assert history_of(matrix, row) == expected_history(events, row, past, 3, 1009)
    for user in {u for u, _, _ in past + events}:  # the state keeps each user's newest three items, oldest first
        place = np.searchsorted(after.users, user)
        kept = after.items[after.indptr[place]:after.indptr[place + 1]].tolist() \
            if place < len(after.users) and after.users[place] == user else []
        ordered = sorted([(-1, k, e) for k, e in enumerate(past)] + [(0, k, e) for k, e in enumerate(events)],
                         key=lambda x: (x[0], x[2][2], x[1]))
        assert kept == [e[1] for _, _, e in ordered if e[0] == user and e[1]][-3:]


def test_histories_continue_from_training_into_prediction_and_survive_save(history_model_path, tmp_path):
    train = write(tmp_path, "user,movie,timestamp\nu1,m1,1\nu1,m2,2\nu2,m2,1\nu2,m3,2\nu1,m3,3\nu2,m4,3\n")
    model = boltc.load(history_model_path, tune=False)
    model.fit(train, progress=False)
    assert model.evaluate(train, progress=False)["accuracy"] >= 4 / 6  # the rows with a history are learnt
    # rows to predict have no item: each user's history is its training items, newest first
    queries = write(tmp_path, "user,timestamp\nu1,9\nu2,9\n", "next.csv")
    ids, _ = model.predict(queries, top_k=1)
    saved = tmp_path / "next.boltm"
    model.save(saved)
    again = load_model(saved)
    assert again.predict(queries, top_k=1)[0].tolist() == ids.tolist()
    for index, state in model.histories.items():
        for part in ("users", "indptr", "items"):
            assert getattr(again.histories[index], part).tolist() == getattr(state, part).tolist()
    # what predict absorbs when asked moves the next prediction's history on
    seen = write(tmp_path, "user,movie,timestamp\nu1,m4,10\n", "seen.csv")
    before = model.histories[0].items.tolist()
    model.predict(seen, top_k=1)
    assert model.histories[0].items.tolist() == before
    model.predict(seen, top_k=1, update_history=True)
    assert model.histories[0].items.tolist() != before


def test_a_file_read_again_sees_the_history_from_before_it(history_model_path, tmp_path):
    train = write(tmp_path, "user,movie,timestamp\nu1,m1,1\nu1,m2,2\nu1,m3,3\n")
    model = boltc.load(history_model_path, tune=False)
    first = model.prepare_data(train, labelled=True, learn_labels=True)
    again = model.prepare_data(train, labelled=True, learn_labels=True)  # as a second fit() would read it
    assert first.features[0].indptr.tolist() == again.features[0].indptr.tolist() == [0, 0, 2, 6]


# ---- neighbours inputs ------------------------------------------------------------------------------------------

GRAPH_SPEC = """model sections {
    input words: text(features=211, column="description")
    input near:  neighbours(of=words, id=package, links=depends, delimiter="|", aggregate=AGGREGATE,
                            direction=DIRECTION)
    target section: classes[4]
    a = dense(words, 16, activation=relu)
    b = dense(near, 16, activation=relu)
    h = concat(a, b)
    scores = dense(h, 4, activation=softmax)
    loss cross_entropy(scores, section)
    train { batch_size = 4, epochs = 150 }
    metrics accuracy
}
"""


def graph_model(tmp_path, aggregate="mean", direction="both"):
    path = tmp_path / f"graph_{aggregate}_{direction}.bolt"
    path.write_text(GRAPH_SPEC.replace("AGGREGATE", aggregate).replace("DIRECTION", direction))
    return boltc.load(path, tune=False)


def dense_rows(matrix) -> np.ndarray:
    out = np.zeros((len(matrix.indptr) - 1, matrix.dim))
    for row in range(len(matrix.indptr) - 1):
        span = slice(matrix.indptr[row], matrix.indptr[row + 1])
        np.add.at(out[row], matrix.indices[span], matrix.values[span])
    return out


@pytest.mark.parametrize("aggregate, direction", [("mean", "both"), ("sum", "out"), ("mean", "in")])
def test_neighbour_aggregation_matches_numpy(tmp_path, aggregate, direction):
    rng = np.random.default_rng(7)
    words = [f"w{k}" for k in range(30)]
    names = [f"p{k}" for k in range(25)]
    lines = ["package,description,depends,section"]
    adjacency = np.zeros((25, 25))
    for k, name in enumerate(names):
        links = sorted(set(rng.choice(names + ["absent"], size=rng.integers(0, 4)).tolist()))
        for link in links:
            if link != "absent" and link != name:
                adjacency[k, names.index(link)] = 1
        lines.append(f"{name},{' '.join(rng.choice(words, size=3))},{'|'.join(links)},s{k % 3}")
    model = graph_model(tmp_path, aggregate, direction)
    dataset = model.prepare_data(write(tmp_path, "\n".join(lines) + "\n"), labelled=True, learn_labels=True)
    own, near = dense_rows(dataset.features[0]), dense_rows(dataset.features[1])
    linked = {"out": adjacency, "in": adjacency.T, "both": np.maximum(adjacency, adjacency.T)}[direction]
    expected = linked @ own
    if aggregate == "mean":
        expected /= np.maximum(linked.sum(axis=1, keepdims=True), 1)
    np.testing.assert_allclose(near, expected, rtol=1e-6)


def test_an_unseen_node_is_described_by_the_nodes_it_links_to(tmp_path):
    train = write(tmp_path, "package,description,depends,section\n"
                            "libfoo,c library,,libs\nlibbar,c library,,libs\n"
                            "foo-utils,command tools,libfoo,utils\nbar-utils,command tools,libbar,utils\n"
                            "python3-foo,module,python3,python\npython3-bar,module,python3,python\n"
                            "python3,interpreter,,interpreters\n")
    model = graph_model(tmp_path)
    model.fit(train, progress=False)
    saved = tmp_path / "graph.boltm"
    model.save(saved)
    again = load_model(saved)
    # the new node's own words say nothing; only its neighbour (python3, from training) does
    new = write(tmp_path, "package,description,depends\npython3-baz,baz,python3\n", "new.csv")
    dataset = again.prepare_data(new, labelled=False)
    python3 = model.prepare_data(train, labelled=True).features[0]
    assert dense_rows(dataset.features[1])[0].tolist() == dense_rows(python3)[6].tolist()
    ids, _ = again.predict(new, top_k=1)
    assert again.label_names[ids[0, 0]] == "python"


@pytest.mark.parametrize("change, message", [
    (("of=words", "of=word"), "neighbours() aggregates the features of another input read from a column (text, "
                              "categorical, numerical, date or sequence), got 'word'"),
    (("links=depends, ", ""), "neighbours() needs 'of' (the input to aggregate), 'id' (the column of each row's node "
                              "id) and 'links' (the column listing the ids it links to), e.g. neighbours(of=words, "
                              "id=package, links=depends)"),
    (("aggregate=mean", "aggregate=max"), "aggregate must be mean or sum, got 'max'"),
])
def test_neighbour_mistakes_are_reported(tmp_path, change, message):
    path = tmp_path / "bad_graph.bolt"
    path.write_text(GRAPH_SPEC.replace("AGGREGATE", "mean").replace("DIRECTION", "both").replace(*change))
    with pytest.raises(SpecErrors) as caught:
        boltc.load(path, tune=False)
    assert [problem.message for problem in caught.value.errors] == [message]


@settings(max_examples=examples(150), deadline=None)
@given(body=st.binary(max_size=300), cut=st.integers(0, len(TRICKY.encode())), skip=st.booleans(),
       quoting=st.sampled_from(["csv", "tsv"]))
def test_any_bytes_give_rows_or_a_data_error_never_a_crash(spec_path, tmp_path_factory, body, cut, skip, quoting):
    model = boltc.load(spec_path, tune=False)
    model.skip_bad_rows = skip
    path = tmp_path_factory.mktemp("fuzz") / "data.csv"
    for text in (TRICKY.encode()[:cut] + body, b"title,Brand,price,added,recent,section\n" + body):
        path.write_bytes(text)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # skipped rows are warned about
                dataset = model.prepare_data(boltc.TextFile(path, quoting=quoting), labelled=True, learn_labels=True)
        except DataError as error:
            assert error.path == str(path)
        else:
            assert dataset.n_rows >= 1
            for matrix in dataset.features:
                assert np.all(np.diff(matrix.indptr) >= 0) and np.all(matrix.indices < matrix.dim)
        model.label_names = None


def test_explain_names_the_input_a_neighbourhood_aggregates(tmp_path):
    from boltc.explain import render_plan

    text = render_plan(graph_model(tmp_path, "sum", "out").plan)
    assert "near: sparse[211] (neighbours(of=words, id='package', links='depends', delimiter='|', aggregate=sum, " \
           "direction=out))" in text


UTF8_CASES = [b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
              b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xe2\x82", b"\x80",
              b"\xc2\x80", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf",
              "€ 茶 😀".encode()]


@settings(max_examples=examples(200), deadline=None)
@given(label=st.one_of(st.sampled_from(UTF8_CASES), st.binary(min_size=1, max_size=6)))
def test_labels_are_utf8_exactly_when_python_says_so(spec_path, tmp_path_factory, label):
    """The C reader's UTF-8 check against Python's strict decoder: overlong forms, surrogates, code points past
    U+10FFFF and cut sequences are refused, everything else is read back as the same text."""
    if any(byte in label for byte in b'\n\r,";') or label.strip(b" \t") != label:
        return  # CSV syntax, the label delimiter or blanks trimmed: not what this test is about
    model = boltc.load(spec_path, tune=False)
    path = tmp_path_factory.mktemp("utf8") / "labels.csv"
    path.write_bytes(b"title,Brand,price,added,recent,section\nkettle,HomeX,3,2024-01-01,a1," + label + b"\n")
    try:
        expected = label.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(DataError) as caught:
            model.prepare_data(path, labelled=True, learn_labels=True)
        assert "a label is not UTF-8 text" in str(caught.value) and caught.value.line == 2
    else:
        model.prepare_data(path, labelled=True, learn_labels=True)
        assert model.label_names == (expected,)


BAD_RECORDS = [  # each a record with one bad field, and what reading it says (as the table above checks)
    ("A,B,1,2020-01-01,x\n", "5 fields, but the header has 6"),
    ("A,B,cheap,,,s\n", "column 'price': expected a finite number, got 'cheap'"),
    ("A,B,1,2023-02-29,,s\n", "column 'added': no such date: 2023-02-29"),
    ("A,B,1,,,s\udcff\n", "column 'section': a label is not UTF-8 text"),  # the byte 0xFF, written below
]


def test_skip_bad_rows_reads_a_csv_as_if_its_bad_records_were_not_there(spec_path, tmp_path):
    header, good = TRICKY.split("\r\n", 1)
    records = good.replace('\nTWO', '\x00TWO').splitlines(keepends=True)  # the quoted line break stays in its record
    records = [r.replace('\x00', '\n') for r in records]
    dirty = [header + "\r\n"]
    for number, record in enumerate(records):
        dirty += [record, BAD_RECORDS[number % len(BAD_RECORDS)][0]]
    clean_path, dirty_path = write(tmp_path, header + "\r\n" + "".join(records), "clean.csv"), tmp_path / "dirty.csv"
    dirty_path.write_bytes("".join(dirty).encode("utf-8", "surrogateescape"))
    clean = boltc.load(spec_path, tune=False).prepare_data(clean_path, labelled=True, learn_labels=True)
    model = boltc.load(spec_path, tune=False)
    model.skip_bad_rows = True
    with pytest.warns(UserWarning) as warned:
        read = model.prepare_data(dirty_path, labelled=True, learn_labels=True)
    first_line = 1 + "".join(dirty[:2]).count("\n")  # the record after the first good one
    bad = len(records)
    assert (read.n_rows, read.skipped_rows) == (clean.n_rows, bad)
    assert read.first_skipped == f"line {first_line}: {BAD_RECORDS[0][1]}"
    assert [str(w.message) for w in warned] == [f"{dirty_path}: skipped {bad} bad rows (the first, "
                                                f"{read.first_skipped})"]
    for got, expected in zip(read.features, clean.features):
        for part in ("indptr", "indices", "values"):
            np.testing.assert_array_equal(getattr(got, part), getattr(expected, part))
    np.testing.assert_array_equal(read.label_ids, clean.label_ids)
    assert model.label_names == ("shoes", "sale", "clothes", "kitchen")


def test_skip_bad_rows_skips_a_record_with_broken_quoting_to_the_end_of_its_line(model, tmp_path):
    model.skip_bad_rows = True
    header = "title,Brand,price,added,recent,section\n"
    path = write(tmp_path, header + 'A,B,1,,,s\n"A"x,B,1,,,s\n"open,B,2,,,s\nC,D,3,,,t\n')
    with pytest.warns(UserWarning, match="skipped 2 bad rows"):
        read = model.prepare_data(path, labelled=True, learn_labels=True)
    assert (read.n_rows, read.skipped_rows) == (2, 2)
    assert read.first_skipped == ("line 3: field 1: expected a delimiter or the end of the line after a closing "
                                  "quote, got 'x' (a file whose quotes are ordinary characters reads with quoting "
                                  "'tsv')")
    assert model.label_names == ("s", "t")
    price = read.features[3]
    assert price.indices.tolist() == [0, 0]  # the two good rows' prices, 1 and 3, both in the first of 8 bins
    path = write(tmp_path, header + "A,B,x,,,s\n", "all_bad.csv")
    with pytest.raises(DataError) as caught:
        model.prepare_data(path, labelled=True, learn_labels=True)
    assert caught.value.message == ("the file holds no data rows after its header that could be read (1 skipped; the "
                                    "first, line 2, column 'price': expected a finite number, got 'x')")


# Fields as users have them: quotes that are not CSV quoting, apostrophes, backslashes, tabs and line breaks
# inside a field, the delimiters of the other formats, and non-ASCII text.
AWKWARD = [
    {"title": '"Being disintegrated makes me ve-ry an-gry!" <huff, huff>', "Brand": "Acme|Bolt", "price": "59.90",
     "added": "2024-03-15", "recent": "a1 b2", "section": "shoes;sale"},
    {"title": "it's a \"quote\" inside", "Brand": "O'Neil", "price": "12", "added": "", "recent": "",
     "section": "clothes"},
    {"title": "tab\there and a\nline break\r\nand back\\slash C:\\new\\table", "Brand": "x;y,z",
     "price": "", "added": "2023-12-31", "recent": "k9", "section": "kitchen"},
    {"title": "Ünïcode tëa pot — 茶壶 | semi; colon, comma", "Brand": "", "price": "-3", "added": "",
     "recent": "b2 b2", "section": "kitchen ; sale"},
]


def tsv_field(text: str) -> str:
    """A field as TSV writers (PostgreSQL COPY, IANA) write it."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def assert_reads_as(model, source, rows: list[dict[str, str]]) -> None:
    """`source` read by `model` gives each row's features as the Python reference makes them from the row's text."""
    dataset = model.prepare_data(source, labelled=True, learn_labels=True)
    assert dataset.n_rows == len(rows)
    for matrix, (header, kind, options) in zip(dataset.features, COLUMNS):
        for r, row in enumerate(rows):
            start, end = matrix.indptr[r], matrix.indptr[r + 1]
            got = dict(zip(matrix.indices[start:end].tolist(), matrix.values[start:end].tolist()))
            assert got == reference(row[header], kind, **options), (header, r)
    names = [[name.strip() for name in row["section"].split(";") if name.strip()] for row in rows]
    assert [sorted(model.label_names[i] for i in dataset.labels_of(r)) for r in range(len(rows))] == \
        [sorted(n) for n in names]


def test_a_tsv_of_raw_text_reads_its_quotes_as_text_and_decodes_its_escapes(spec_path, tmp_path):
    header = "\t".join(AWKWARD[0])
    lines = ["\t".join(tsv_field(value) for value in row.values()) for row in AWKWARD]
    path = write(tmp_path, header + "\n" + "\n".join(lines) + "\n", "raw.tsv")
    assert_reads_as(boltc.load(spec_path, tune=False), path, AWKWARD)
    # a backslash before anything but t, n, r or another backslash is kept, as tools that do not escape write it
    path = write(tmp_path, header + "\nC:\\data\\x\\\tB\t1\t\t\ts\n", "unescaped.tsv")
    assert_reads_as(boltc.load(spec_path, tune=False), path, [
        {"title": "C:\\data\\x\\", "Brand": "B", "price": "1", "added": "", "recent": "", "section": "s"}])


@pytest.mark.parametrize("delimiter", [",", ";", "|", "\t"])
@pytest.mark.parametrize("writer", ["csv", "pandas"])
def test_files_written_by_python_csv_and_pandas_read_back_field_for_field(spec_path, tmp_path, writer, delimiter):
    path = tmp_path / ("rows.tsv" if delimiter == "\t" else "rows.csv")
    if writer == "csv":
        with open(path, "w", newline="", encoding="utf-8") as out:
            table = csv.DictWriter(out, fieldnames=list(AWKWARD[0]), delimiter=delimiter)
            table.writeheader()
            table.writerows(AWKWARD)
    else:
        pandas = pytest.importorskip("pandas")
        pandas.DataFrame(AWKWARD, dtype=str).to_csv(path, sep=delimiter, index=False)
    # the delimiter is found from the header; a tab-separated file is TSV unless CSV quoting is asked for
    source = boltc.TextFile(path, quoting="csv") if delimiter == "\t" else path
    assert_reads_as(boltc.load(spec_path, tune=False), source, AWKWARD)


def test_csv_quoting_in_a_tsv_is_refused_unless_asked_for_and_quotes_in_a_csv_can_be_text(spec_path, tmp_path):
    path = write(tmp_path, 'title\tBrand\tprice\tadded\trecent\tsection\n"a\tb"\tB\t1\t\t\ts\n', "quoted.tsv")
    model = boltc.load(spec_path, tune=False)
    with pytest.raises(DataError) as caught:
        model.prepare_data(path, labelled=True, learn_labels=True)
    assert (caught.value.line, caught.value.message) == (2, "more than 6 fields (quotes are text in TSV: a file with "
                                                            "CSV quoting reads with quoting 'csv')")
    assert_reads_as(model, boltc.TextFile(path, quoting="csv"), [
        {"title": "a\tb", "Brand": "B", "price": "1", "added": "", "recent": "", "section": "s"}])
    path = write(tmp_path, 'title,Brand,price,added,recent,section\n"Hi" she said,B,1,,,s\n', "said.csv")
    assert_reads_as(boltc.load(spec_path, tune=False), boltc.TextFile(path, quoting="tsv"), [
        {"title": '"Hi" she said', "Brand": "B", "price": "1", "added": "", "recent": "", "section": "s"}])


@pytest.mark.parametrize("options, message", [
    (dict(delimiter="ab"), "delimiter 'ab': expected one ASCII character other than a quote or a line break"),
    (dict(delimiter='"'), "delimiter '\"': expected one ASCII character other than a quote or a line break"),
    (dict(quoting="excel"), "quoting 'excel': expected one of csv, tsv"),
    (dict(delimiter="\\", quoting="tsv"),
     "a backslash cannot separate the fields of a file whose fields hold backslash escapes"),
])
def test_a_text_file_with_a_format_that_cannot_be_read_is_refused(options, message):
    with pytest.raises(UsageError) as caught:
        boltc.TextFile("rows.csv", **options)
    assert str(caught.value) == message


def test_the_command_line_reads_a_csv_quoted_tsv_when_told(spec_path, tmp_path, capsys):
    rows = "".join(f'"item\t{k}"\tAcme\t{k}\t\t\t{"shoes" if k % 2 else "sale"}\n' for k in range(8))
    data = write(tmp_path, "title\tBrand\tprice\tadded\trecent\tsection\n" + rows, "quoted.tsv")
    saved = tmp_path / "shop.boltm"
    assert main(["train", str(spec_path), "--train", str(data), "--validation", str(data), "--epochs", "1",
                 "--save", str(saved), "--quoting", "csv", "--delimiter", "tab"]) == 0
    capsys.readouterr()
    assert main(["predict", str(saved), "--data", str(data), "--quoting", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 8
    assert main(["predict", str(saved), "--data", str(data)]) != 0
    assert "more than 6 fields (quotes are text in TSV" in capsys.readouterr().err


def test_one_table_as_csv_gzipped_csv_and_a_directory_of_parts_gives_the_same_rows(spec_path, tmp_path):
    import gzip

    header, *records = TRICKY.replace('\nTWO', '\x00TWO').replace("\r\n", "\n").split("\n")
    records = [r.replace('\x00', '\n') for r in records if r]
    records.append('"A new section",Acme,1,2024-01-01,a1,garden')  # a label only the last part holds
    whole = write(tmp_path, header + "\n" + "\n".join(records) + "\n", "whole.csv")
    packed = tmp_path / "whole.csv.gz"
    packed.write_bytes(gzip.compress(whole.read_bytes()))
    (tmp_path / "parts").mkdir()
    for k, chunk in enumerate((records[:2], records[2:4], records[4:])):
        write(tmp_path / "parts", header + "\n" + "\n".join(chunk) + "\n", f"part-{k}.csv")
    read = {}
    for source in (whole, packed, tmp_path / "parts", str(tmp_path / "parts" / "part-*.csv")):
        model = boltc.load(spec_path, tune=False)
        read[str(source)] = (model.prepare_data(source, labelled=True, learn_labels=True), model.label_names)
    expected, names = read.pop(str(whole))
    assert names == ("shoes", "sale", "clothes", "kitchen", "garden") and expected.n_rows == 6
    for source, (dataset, learned) in read.items():
        assert (learned, dataset.n_rows, dataset.path) == (names, 6, source)
        for got, want in zip(dataset.features, expected.features):
            for part in ("indptr", "indices", "values"):
                np.testing.assert_array_equal(getattr(got, part), getattr(want, part))
        np.testing.assert_array_equal(dataset.label_indptr, expected.label_indptr)
        np.testing.assert_array_equal(dataset.label_ids, expected.label_ids)


def parquet_of(rows: list[dict[str, str]], path: Path) -> Path:
    """`rows` as a typed table: numbers, dates, and lists for the multi-valued columns."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")

    def listed(text: str, delimiter: str) -> list[str]:
        return [part.strip() for part in text.split(delimiter) if part.strip()]

    table = pa.table({
        "title": [row["title"] for row in rows],
        "Brand": pa.array([listed(row["Brand"], "|") for row in rows], pa.list_(pa.string())),
        "price": pa.array([float(row["price"]) if row["price"] else None for row in rows], pa.float64()),
        "added": pa.array([datetime.date.fromisoformat(row["added"]) if row["added"] else None for row in rows],
                          pa.date32()),
        "recent": [row["recent"] for row in rows],
        "section": pa.array([listed(row["section"], ";") for row in rows], pa.list_(pa.string())),
        "unused": pa.array([{"a": 1}] * len(rows)),  # a type boltc cannot read, in a column the model does not read
    })
    pq.write_table(table, path)
    return path


def test_one_table_as_parquet_and_as_csv_gives_the_same_features_and_the_same_training(spec_path, tmp_path):
    source = parquet_of(AWKWARD, tmp_path / "rows.parquet")
    assert_reads_as(boltc.load(spec_path, tune=False), source, AWKWARD)
    csv_path = tmp_path / "rows.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as out:
        table = csv.DictWriter(out, fieldnames=list(AWKWARD[0]))
        table.writeheader()
        table.writerows(AWKWARD)
    trained = []
    for path in (source, csv_path):
        model = boltc.load(spec_path, tune=False)
        model.fit(path, epochs=2, progress=False)
        trained.append(model.parameters())
    for name, array in trained[0].items():
        np.testing.assert_array_equal(array, trained[1][name], err_msg=name)


def test_a_bad_value_in_a_parquet_file_is_reported_at_its_row(spec_path, tmp_path):
    rows = AWKWARD + [dict(AWKWARD[1], price="-1e999")]  # a float that is infinite in the table too
    source = parquet_of(rows, tmp_path / "bad.parquet")
    with pytest.raises(DataError) as caught:
        boltc.load(spec_path, tune=False).prepare_data(source, labelled=True, learn_labels=True)
    assert (caught.value.line, caught.value.message) == (None, "row 5: column 'price': expected a finite number, "
                                                               "got '-inf'")
    with pytest.raises(DataError, match="a Parquet file has no delimiter or quoting to choose"):
        boltc.load(spec_path, tune=False).prepare_data(boltc.TextFile(source, quoting="csv"), labelled=True,
                                                       learn_labels=True)


def test_a_quote_inside_an_unquoted_field_does_not_end_the_room_made_for_a_long_quoted_field(spec_path, tmp_path):
    # the room for a record's decoded fields is found by a scan that must read quotes as the reader does: a quote
    # inside `5" screen` is text, and the quoted field after it spans lines (this overflowed the heap before)
    brand = "multi\n" + "y" * 100_000
    text = f'title,Brand,price,added,recent,section\n5" screen,"{brand}",1,,,s\n'
    assert_reads_as(boltc.load(spec_path, tune=False), write(tmp_path, text), [
        {"title": '5" screen', "Brand": brand, "price": "1", "added": "", "recent": "", "section": "s"}])


def matrices_equal(got, want) -> None:
    for a, b in zip(got.features, want.features):
        for part in ("indptr", "indices", "values"):
            np.testing.assert_array_equal(getattr(a, part), getattr(b, part))


def test_histories_and_neighbourhoods_over_a_directory_are_those_of_one_file(history_model_path, tmp_path):
    rows = ["u1,m1,1", "u2,m2,1", "u1,m3,2", "u1,m4,3", "u2,m1,4", "u1,m2,5"]
    whole = write(tmp_path, "user,movie,timestamp\n" + "\n".join(rows) + "\n", "whole.csv")
    (tmp_path / "parts").mkdir()
    for k, chunk in enumerate((rows[:3], rows[3:])):
        write(tmp_path / "parts", "user,movie,timestamp\n" + "\n".join(chunk) + "\n", f"part-{k}.csv")
    write(tmp_path / "parts", "", "_SUCCESS")  # Spark's marker: not data
    one, many = boltc.load(history_model_path, tune=False), boltc.load(history_model_path, tune=False)
    for reading in ({"learn_labels": True}, {"learn_labels": True}, {"absorb_history": False}):  # fit, fit, predict
        matrices_equal(many.prepare_data(tmp_path / "parts", labelled=True, **reading),
                       one.prepare_data(whole, labelled=True, **reading))
    lines = ["package,description,depends,section", "p0,a b,p3|p1,s0", "p1,b c,p2,s1", "p2,c d,,s0", "p3,d a,p0,s1"]
    whole = write(tmp_path, "\n".join(lines) + "\n", "graph.csv")
    (tmp_path / "graph").mkdir()
    for k, chunk in enumerate((lines[1:3], lines[3:])):
        write(tmp_path / "graph", "\n".join([lines[0]] + chunk) + "\n", f"part-{k}.csv")
    matrices_equal(graph_model(tmp_path).prepare_data(tmp_path / "graph", labelled=True, learn_labels=True),
                   graph_model(tmp_path).prepare_data(whole, labelled=True, learn_labels=True))


def test_a_directory_with_a_bad_file_teaches_the_model_nothing(history_model_path, tmp_path):
    (tmp_path / "parts").mkdir()
    write(tmp_path / "parts", "user,movie,timestamp\nu1,m1,1\nu1,m2,2\n", "a.csv")
    bad = write(tmp_path / "parts", "user,movie,timestamp\nu1,m3,x\n", "b.csv")
    model = boltc.load(history_model_path, tune=False)
    with pytest.raises(DataError):
        model.prepare_data(tmp_path / "parts", labelled=True, learn_labels=True)
    assert (model.label_names, model.histories) == (None, {})
    bad.write_text("user,movie,timestamp\nu1,m3,3\n")
    model.prepare_data(tmp_path / "parts", labelled=True, learn_labels=True)
    assert model.label_names == ("m1", "m2", "m3")


def test_parquet_nulls_are_empty_fields_and_empty_parts(spec_path, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({
        "title": ["red shoe", None, "blue hat"], "Brand": pa.array([["a", None, "b"], None, []]),
        "price": [1.0, None, 2.0], "added": pa.array([None, None, None], pa.string()), "recent": [None, "x", None],
        "section": pa.array([["s"], ["t", None], ["s"]])}), path)
    assert_reads_as(boltc.load(spec_path, tune=False), path, [
        {"title": "red shoe", "Brand": "a||b", "price": "1", "added": "", "recent": "", "section": "s"},
        {"title": "", "Brand": "", "price": "", "added": "", "recent": "x", "section": "t;"},
        {"title": "blue hat", "Brand": "", "price": "2", "added": "", "recent": "", "section": "s"}])
