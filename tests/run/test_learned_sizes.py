"""Sizes a spec leaves to its training data: classes[auto] / multilabel[auto] (and units=auto on the output layer)
take the training data's label count, numerical columns without range= take bins learned from the training values
(quantile edges, or the values' range for binning=equal). Checked against counts and bins computed here in numpy and
bisect, through fit, save, load and explain, and the checker's errors at their positions."""

from __future__ import annotations

import bisect
import csv
import math

import numpy as np
import pytest

import boltc
from boltc import ir
from boltc.check import check
from boltc.cli import main
from boltc.diagnostics import DataError, ModelFileError, SpecErrors, UsageError
from boltc.facts import quantile_edges, value_range
from boltc.parse import parse
from boltc.pipeline import load_model

SPEC = """model shop {
    input price: numerical(bins=8)
    input size:  numerical(bins=6, binning=equal, column="Size")
    input brand: categorical(features=64)
    target kind: classes[auto]

    hp = dense(price, 8, activation=relu)
    hs = dense(size, 8, activation=relu)
    hb = dense(brand, 8, activation=relu)
    joined = concat(hp, hs, hb)
    scores = dense(joined, auto, activation=softmax)
    loss cross_entropy(scores, kind)
    train { batch_size = 16, epochs = 2 }
    metrics accuracy, precision@1
}
"""


def write_rows(path, rows, header=("price", "Size", "brand", "kind")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def skewed_rows(seed: int, count: int, kinds=("a", "b", "c", "d", "e")):
    rng = np.random.default_rng(seed)
    prices = np.exp(rng.normal(3.0, 1.5, count))
    sizes = rng.pareto(1.2, count) * 10
    return [(f"{price:.4f}", "" if row % 7 == 0 else f"{size:.3f}", f"b{row % 5}", kinds[int(price) % len(kinds)])
            for row, (price, size) in enumerate(zip(prices, sizes))]


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("learned") / "shop.bolt"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def trained(spec_path, tmp_path_factory):
    """A model fitted on two part files of skewed rows (a directory), with the rows it read."""
    folder = tmp_path_factory.mktemp("parts")
    rows = skewed_rows(0, 300, kinds=("a", "b", "c")) + skewed_rows(1, 200, kinds=("c", "d", "e", "f"))
    write_rows(folder / "part-0.csv", rows[:300])
    write_rows(folder / "part-1.csv", rows[300:])
    model = boltc.load(spec_path, tune=False)
    model.fit(folder, learning_rate=0.01, progress=False)
    return model, rows, folder


def test_the_label_count_and_output_width_are_the_training_datas(trained):
    model, rows, _ = trained
    names = list(dict.fromkeys(row[3] for row in rows))
    assert model.label_names == tuple(names) and len(names) == 6
    assert model.plan.target_dim == model.plan.output.out_dim == 6
    assert model.plan.learned.labels == 6 and not model.plan.provisional
    assert model.parameters()[f"l{model.plan.output_layer}.bias"].shape == (6,)


def test_quantile_and_equal_bins_are_learned_over_every_file(trained):
    model, rows, _ = trained
    prices = np.array([float(row[0]) for row in rows])
    sizes = np.array([float(row[1]) for row in rows if row[1]])
    price, size = model.plan.inputs[0].column, model.plan.inputs[1].column
    assert price.edges == quantile_edges(prices, 8) and len(price.edges) == 7
    assert (size.low, size.high) == (sizes.min(), sizes.max())
    counts = np.bincount([bisect.bisect_right(price.edges, p) for p in prices], minlength=8)
    assert counts.min() >= len(prices) // 8 - 1  # equal shares: what quantile bins are for


def test_the_compiled_featurizers_put_each_value_in_the_bin_numpy_says(trained, tmp_path):
    model, _, _ = trained
    price, size = model.plan.inputs[0].column, model.plan.inputs[1].column
    at_edges = [(repr(edge), repr(size.low), "b1", "a") for edge in price.edges]  # an edge opens its bin
    rows = skewed_rows(5, 120) + at_edges + [("1e9", "-4", "b1", "a"), ("-1e9", repr(size.high), "b1", "a")]
    dataset = model.prepare_data(write_rows(tmp_path / "new.csv", rows), labelled=False)
    for r, row in enumerate(rows):
        def bin_of(matrix):
            found = matrix.indices[matrix.indptr[r]:matrix.indptr[r + 1]].tolist()
            return found[0] if found else None
        assert bin_of(dataset.features[0]) == bisect.bisect_right(price.edges, float(row[0]))
        expected = None if not row[1] else min(max(math.floor((float(row[1]) - size.low) /
                                                               (size.high - size.low) * 6), 0), 5)
        assert bin_of(dataset.features[1]) == expected


def test_ties_merge_quantile_bins_and_no_bin_sits_below_the_least_value():
    values = np.array([0.0] * 60 + list(range(1, 41)), dtype=float)
    edges = quantile_edges(values, 10)
    assert edges[0] > 0 and list(edges) == sorted(set(edges))
    assert sum(1 for v in values if bisect.bisect_right(edges, v) == 0) == 60
    assert value_range(np.array([0.0, 0.0])) == (0.0, 1.0)
    low, high = value_range(np.array([1e16, 1e16]))  # one unit is below a double's precision there
    assert low == 1e16 < high


def test_edges_of_values_near_the_largest_double_stay_finite_and_so_does_the_generated_c(spec_path, tmp_path):
    assert all(math.isfinite(edge) for edge in quantile_edges(np.array([-1.7e308, 1.7e308, 1.7e308]), 4))
    rows = [("-1.7e308", "-1.7e308", "b1", "a"), ("1.7e308", "1.7e308", "b2", "b"), ("1.7e308", "0", "b1", "a")]
    model = boltc.load(spec_path, tune=False)
    model.fit(write_rows(tmp_path / "huge.csv", rows * 4), epochs=1, learning_rate=0.01, progress=False)
    size = model.plan.inputs[1].column
    assert (size.low, size.high) == (-1.7e308, 1.7e308)  # its width overflows a double: the featurizer halves it
    dataset = model.prepare_data(write_rows(tmp_path / "probe.csv", rows), labelled=False)
    bins = [dataset.features[1].indices[dataset.features[1].indptr[r]] for r in range(3)]
    assert bins == [0, 5, 3]


def test_saving_keeps_what_was_learned_and_loading_compiles_the_same(trained, tmp_path, capsys):
    model, rows, folder = trained
    path = tmp_path / "shop.boltm"
    model.save(path)
    loaded = load_model(path)
    assert loaded.plan.learned == model.plan.learned and loaded.label_names == model.label_names
    assert loaded.library.key == model.library.key
    probe = write_rows(tmp_path / "probe.csv", rows[:50])
    np.testing.assert_array_equal(loaded.predict(probe, top_k=3)[0], model.predict(probe, top_k=3)[0])
    assert main(["explain", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "classes[6: learned from the training data]" in shown
    edges = ", ".join(f"{edge:g}" for edge in model.plan.inputs[0].column.edges)
    assert f"bins=8, binning=quantile, 7 inner edges learned from the training data: {edges}" in shown
    size = model.plan.inputs[1].column
    assert f"range=({size.low:g}, {size.high:g}) learned from the training data" in shown


def test_a_model_that_has_not_read_its_training_data_can_only_fit(spec_path, tmp_path, capsys):
    model = boltc.load(spec_path, tune=False)
    assert model.plan.provisional
    with pytest.raises(UsageError) as caught:
        model.predict(write_rows(tmp_path / "rows.csv", skewed_rows(0, 10)))
    assert str(caught.value) == ("model 'shop' learns sizes its spec leaves to the data (a label count or numerical "
                                 "bins) from its training data: fit it first")
    assert main(["explain", str(spec_path)]) == 0
    shown = capsys.readouterr().out
    assert "classes[auto: the training data's label count, learned at the first fit]" in shown
    assert "numerical(bins=8, binning=quantile: learned from the training data at the first fit)" in shown


def test_a_column_with_no_numbers_cannot_say_its_bins(spec_path, tmp_path):
    rows = [(row[0], "", row[2], row[3]) for row in skewed_rows(0, 20)]
    path = write_rows(tmp_path / "empty.csv", rows)
    with pytest.raises(DataError) as caught:
        boltc.load(spec_path, tune=False).fit(path, progress=False)
    assert caught.value.message == "column 'Size' holds no numbers to learn input 'size''s bins from"


def test_a_bad_number_is_reported_at_its_line_while_learning(spec_path, tmp_path):
    rows = skewed_rows(0, 20)
    rows[6] = ("12.5", "big", "b1", "a")
    with pytest.raises(DataError) as caught:
        boltc.load(spec_path, tune=False).fit(write_rows(tmp_path / "bad.csv", rows), progress=False)
    assert (caught.value.line, caught.value.message) == (8, "column 'Size': expected a finite number, got 'big'")


def test_multilabel_auto_takes_an_xmc_files_header_count(tmp_path):
    spec = tmp_path / "xmc.bolt"
    spec.write_text("model x {\n input words: sparse[20]\n target labels: multilabel[auto]\n"
                    " scores = dense(words, auto, activation=softmax)\n loss cross_entropy(scores, labels)\n"
                    " train { batch_size = 4, epochs = 1 }\n metrics precision@1\n}\n")
    data = tmp_path / "train.txt"
    data.write_text("6 20 37\n0,36 1:1 2:1\n5 3:1\n2,7 4:1 19:1\n1 0:1\n4 5:1\n3 6:1\n")
    model = boltc.load(spec, tune=False)
    model.fit(data, learning_rate=0.01, progress=False)
    assert model.plan.target_dim == model.plan.output.out_dim == 37


def test_arrays_cannot_say_a_label_count(tmp_path):
    spec = tmp_path / "arrays.bolt"
    spec.write_text("model a {\n input x: dense[3]\n target y: classes[auto]\n s = dense(x, auto, activation=softmax)"
                    "\n loss cross_entropy(s, y)\n}\n")
    model = boltc.load(spec, tune=False)
    with pytest.raises(UsageError) as caught:
        model.fit((np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])), progress=False)
    assert str(caught.value) == ("model 'a' learns its target's label count from its training data: pass a data file "
                                 "or a Dataset, or declare the count in the spec (e.g. classes[10])")


def positions(source: str, learned: ir.Learned | None = None) -> list[tuple[int, int, str]]:
    with pytest.raises(SpecErrors) as caught:
        check(parse(source, "m.bolt"), learned)
    return [(e.span.line, e.span.column, e.message) for e in caught.value.errors]


def test_learned_counts_are_checked_where_the_spec_asks_for_them():
    source = SPEC.replace("metrics accuracy, precision@1", "metrics accuracy, precision@5")
    assert check(parse(source, "m.bolt")).provisional  # placeholders pass: nothing is known yet
    bins = (("price", (1.0,)), ("size", (0.0, 1.0)))
    assert positions(source, ir.Learned(labels=3, bins=bins)) == [
        (14, 33, "the k of precision@k must be between 1 and 3, got 5")]
    model = check(parse(source, "m.bolt"), ir.Learned(labels=9, bins=bins))
    assert (model.target.dim, model.output.units, model.inputs[0].column.edges) == (9, 9, (1.0,))


@pytest.mark.parametrize("change, expected", [
    (("classes[auto]", "classes[lots]"), (5, 26, "a target's size must be an integer or auto, got 'lots'")),
    (("hp = dense(price, 8,", "hp = dense(price, auto,"),
     (7, 5, "units=auto is the target's count: it is for the layer the loss reads ('scores'), not 'hp'")),
    (("classes[auto]", "classes[4]"), None),
])
def test_auto_sizes_are_refused_where_they_mean_nothing(change, expected):
    source = SPEC.replace(*change)
    if expected is None:  # a declared count: the output's units=auto takes it
        assert check(parse(source, "m.bolt")).output.units == 4
    else:
        assert positions(source)[0] == expected


def test_a_model_file_with_unreadable_learned_values_is_refused(trained, tmp_path):
    from boltc import checkpoint

    model, _, _ = trained
    path = tmp_path / "shop.boltm"
    model.save(path)
    header, arrays = checkpoint.read_model_file(path)
    header["learned"] = {"labels": "six", "bins": {}}
    checkpoint.write_model_file(tmp_path / "bad.boltm", header, arrays)
    with pytest.raises(ModelFileError) as caught:
        load_model(tmp_path / "bad.boltm")
    assert str(caught.value) == f"{tmp_path / 'bad.boltm'}: model file has unreadable learned values"


def test_a_declared_count_is_still_enforced_when_only_bins_are_learned(spec_path, tmp_path):
    spec = tmp_path / "declared.bolt"
    spec.write_text(SPEC.replace("classes[auto]", "classes[3]").replace("dense(joined, auto,", "dense(joined, 3,"))
    model = boltc.load(spec, tune=False)
    with pytest.raises(DataError) as caught:
        model.fit(write_rows(tmp_path / "five.csv", skewed_rows(0, 50)), progress=False)
    assert caught.value.message == "column 'kind' holds 5 distinct labels, but the target declares classes[3]"
    assert model.plan.provisional and model.label_names is None  # nothing learned from the refused file


def test_an_auto_target_asks_for_units_auto_on_the_output():
    errors = positions(SPEC.replace("dense(joined, auto,", "dense(joined, 6,"))
    assert errors == [(11, 5, "target 'kind' learns its count from the training data: give layer 'scores' units=auto "
                              "rather than 6")]


def test_learning_skips_the_rows_the_training_read_skips(spec_path, tmp_path):
    rows = skewed_rows(0, 40)
    rows[5] = ("oops", "1", "b1", "zzz")  # its label must not be learned either
    model = boltc.load(spec_path, tune=False)
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        model.prepare_data(write_rows(tmp_path / "one_bad.csv", rows), labelled=True, learn_labels=True,
                           skip_bad_rows=True)
    assert "zzz" not in model.label_names and len(model.label_names) == 5


def test_evaluating_before_the_first_fit_says_to_fit(spec_path, tmp_path):
    model = boltc.load(spec_path, tune=False)
    with pytest.raises(UsageError, match="from its training data: fit it first"):
        model.evaluate(write_rows(tmp_path / "rows.csv", skewed_rows(0, 10)), metrics=["precision@3"])
