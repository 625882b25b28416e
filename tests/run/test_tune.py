"""Measured planning (boltc tune): the formula's configuration is measured first, the winner is cached per data,
the first fit of a model adopts it, and a saved model keeps it."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

import boltc
from boltc import tune as tuning
from boltc.pipeline import load, load_model, plan_spec, tune_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_sparse_task import SPEC, documents  # noqa: E402

BUDGET = 8.0


def values(config) -> tuple:
    """A configuration without its note."""
    return tuple(value for name, value in dataclasses.asdict(config).items() if name != "note")


def test_tune_measures_the_formula_first_and_caches_the_choice(write_spec):
    spec = write_spec(SPEC, "task.bolt")
    train = documents(3000, seed=1)
    load(spec, tune=False)  # the formula's build cached: the budget then holds a comparison however slow compiling is
    found = tune_spec(spec, train, budget=BUDGET, progress=False)
    formula = plan_spec(spec).output.lsh
    first = found.trials[0]
    assert not found.cached and first.label == "formula"
    assert (first.config.family, first.config.hashes, first.config.tables, first.config.bucket_cap) == \
        (formula.family, formula.hashes, formula.tables, formula.bucket_cap)
    for trial in found.trials:
        assert 0 <= trial.recall <= 1 and 0 <= trial.label_recall <= 1 and 0 < trial.chance <= 1
        assert trial.batch_ms > 0 and trial.cost_ms >= trial.batch_ms
    chosen = found.measured[1]
    winner = next(t for t in found.trials if values(t.config) == values(chosen))  # the choice was measured
    if winner is not first:
        assert winner.recall >= tuning.RECALL_KEPT * first.recall and winner.cost_ms < first.cost_ms
        assert winner.label_recall >= tuning.RECALL_KEPT * first.label_recall
    again = tune_spec(spec, train, budget=BUDGET, progress=False)
    assert again.cached and again.measured == found.measured and again.trials == found.trials
    other_data = tune_spec(spec, documents(3000, seed=3), budget=1.0, progress=False)
    assert not other_data.cached


def test_a_budget_that_holds_no_comparison_keeps_the_formula_unmeasured_and_tune_measures_later(write_spec):
    spec = write_spec(SPEC, "task.bolt")
    train = documents(3000, seed=1)
    starved = tune_spec(spec, train, budget=0.001, progress=False)
    formula = plan_spec(spec).output.lsh
    chosen = starved.measured[1]
    assert not starved.complete and starved.trials == () and starved.sample_rows == 0
    assert (chosen.family, chosen.hashes, chosen.tables, chosen.bucket_cap) == \
        (formula.family, formula.hashes, formula.tables, formula.bucket_cap)
    assert chosen.note.startswith("boltc tune: formula kept, not measured (a 0.001 s budget holds no comparison")
    model = load(spec, tune=True)
    model.fit(train, epochs=1)
    assert model.tuning == dataclasses.replace(starved, cached=True)  # a first fit takes it from the cache...
    measured = tune_spec(spec, train, budget=BUDGET, progress=False)  # ...boltc tune measures again
    assert measured.complete and not measured.cached and measured.trials[0].label == "formula"


def test_measured_values_shape_the_plan_and_the_spec_still_wins(write_spec):
    measured = {1: boltc.plan.MeasuredLsh("dwta", 3, 9, 12, 5, 8, "test")}
    spec = write_spec(SPEC, "task.bolt")
    lsh = plan_spec(spec, measured=measured).output.lsh
    assert (lsh.hashes, lsh.tables, lsh.bucket_cap, lsh.prefetch_rows) == (3, 9, 12, 8)
    assert lsh.update_parts <= 5 and lsh.update_parts << lsh.update_part_shift >= 1000
    assert lsh.origin.startswith("measured (test)")
    pinned = write_spec(SPEC.replace("sparsity=0.05", "sparsity=0.05, sampling=dwta(tables=7)"), "pinned.bolt")
    lsh = plan_spec(pinned, measured=measured).output.lsh
    assert (lsh.hashes, lsh.tables, lsh.bucket_cap) == (3, 7, 12)
    assert lsh.origin.startswith("spec (tables, family), measured for the rest")


def test_candidate_sets_hold_what_sparse_inference_ranks(write_spec):
    model = load(write_spec(SPEC, "task.bolt"), tune=False)
    train, test = documents(2000, seed=1), documents(300, seed=2)
    model.fit(train, epochs=1)
    ids, counts = model.candidate_sets(test)
    top, _ = model.predict(test, top_k=1, sparse=True)
    width = model.plan.output.lsh.inference_active
    assert ids.shape == (300, width) and (counts <= width).all()
    for row in range(300):
        chosen = ids[row, :counts[row]]
        assert len(set(chosen.tolist())) == counts[row] and (chosen >= 0).all() and (chosen < 1000).all()
        assert (ids[row, counts[row]:] == -1).all()
        if counts[row]:
            assert top[row, 0] in chosen


def test_candidate_sets_list_the_heavy_rows_first(write_spec):
    """The tuner judges hashing on what follows the heavy rows in each set."""
    model = load(write_spec(SPEC, "task.bolt"), tune=False)
    model.fit(documents(2000, seed=1), epochs=1)
    ids, counts = model.candidate_sets(documents(50, seed=2))
    heavy = model.arrays[f"l{model.plan.output.index}.heavy_ids"]
    output = model.plan.output.index
    bounds = np.linalg.norm(model.arrays[f"l{output}.weights"], axis=1) + model.arrays[f"l{output}.bias"]
    assert 0 < len(heavy) < counts.min()
    assert set(heavy.tolist()) == set(np.argsort(-bounds, kind="stable")[:len(heavy)].tolist())
    assert all(set(ids[row, :len(heavy)].tolist()) == set(heavy.tolist()) for row in range(50))


def test_hashing_recall_leaves_out_the_heavy_rows():
    heavy = np.array([7, 8])
    ids = np.array([[7, 8, 1, 2, -1], [8, 7, 3, -1, -1], [7, 8, 9, 4, 5]], dtype=np.int32)
    counts = np.array([4, 3, 5])
    wanted = [np.array([7, 1, 5]), np.array([8]), np.array([4, 6, 8])]
    # row 0: 1 of {1, 5} found; row 1: nothing outside the heavy rows; row 2: 4 of {4, 6}
    assert tuning._hashing_recall(ids, counts, heavy, wanted) == 2 / 4
    # a wanted neuron past a row's count is not scored
    assert tuning._hashing_recall(ids, np.array([3, 3, 3]), heavy, wanted) == 1 / 4
    assert tuning._hashing_recall(ids, counts, heavy, [np.array([7]), np.array([8]), np.array([])]) == 0.0
    # a row whose set ends inside the heavy rows has no LSH candidates; with no heavy rows every entry counts
    assert tuning._hashing_recall(ids, np.array([1, 3, 5]), heavy, wanted) == 1 / 4
    assert tuning._hashing_recall(ids, counts, np.array([], dtype=np.int32), wanted) == 5 / 7


def test_first_fit_adopts_the_measured_plan_and_a_saved_model_keeps_it(write_spec, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "DEFAULT_BUDGET_SECONDS", BUDGET)
    spec = write_spec(SPEC, "task.bolt")
    model = load(spec, tune=True, tune_budget=BUDGET)
    assert model.tuner is not None and not model.plan.measured
    train, test = documents(3000, seed=1), documents(500, seed=2)
    model.fit(train, epochs=3)
    assert model.tuning is not None and model.tuner is None
    assert model.plan.measured == model.tuning.measured
    assert model.plan.output.lsh.origin.startswith("measured (boltc tune")
    assert model.evaluate(test, ["precision@1"])["precision@1"] > 0.5
    path = tmp_path / "tuned.boltm"
    model.save(path)
    restored = load_model(path)
    assert restored.plan.measured == model.plan.measured
    np.testing.assert_array_equal(restored.predict(test, top_k=3)[0], model.predict(test, top_k=3)[0])
