"""What training decides for the user: the learning rate raced on the data, held-out validation rows, early stopping
with the best epoch's parameters, the rate schedule, standardised dense inputs, and the check of sparse inference."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import boltc
import boltc.sparse_check
from boltc import rates
from boltc.data import from_arrays, learn_scaling, take_rows
from boltc.diagnostics import UsageError
from boltc import training
from boltc.sparse_check import LSH_CANDIDATE_LADDER
from boltc.training import TrainingError

AUTO = """\
model auto {
    input  x: dense[12]
    target y: classes[3]
    h = dense(x, 16, activation=relu)
    o = dense(h, 3, activation=softmax)
    loss cross_entropy(o, y)
    optimizer adam()
    train { batch_size = 16, epochs = auto, seed = 3 }
    metrics accuracy
}
"""


def _blobs(rows: int, seed: int, offset: float = 5.0, noise: float = 1.0):
    """Three Gaussian classes in 12 dimensions, far from the origin (standardisation has work to do)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=rows)
    centres = np.random.default_rng(99).normal(0, 1.5, size=(3, 12))
    x = (offset + centres[y] + rng.normal(0, noise, size=(rows, 12))).astype(np.float32)
    return x, y


def _walk(losses: dict[float, float]) -> list[rates.RateTrial]:
    trials: list[rates.RateTrial] = []
    while (rate := rates.next_rate(rates.GRID["adam"], trials)) is not None:
        trials.append(rates.RateTrial(rate, losses[rate], 0.0))
    return trials


def test_rate_walk_finds_the_fastest_rate_and_chooses_a_step_below():
    assert rates.progressive_loss([9.0, 9.0, 2.0, 4.0]) == 3.0
    assert rates.progressive_loss([1.0, 2.0, float("nan")]) == float("inf")
    grid = rates.GRID["adam"]
    assert grid == (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1) and grid[rates.START] == 0.001
    # up from the default while the loss falls, until the best rate's neighbours are both tried
    rising = _walk({0.0001: 5.0, 0.0003: 4.0, 0.001: 3.0, 0.003: 2.0, 0.01: 1.5, 0.03: 1.8, 0.1: math.inf})
    assert [t.learning_rate for t in rising] == [0.001, 0.003, 0.01, 0.03]
    assert rates.fastest(rising) == 0.01 and rates.step_below(grid, 0.01) == 0.003
    # the default fastest: one step up, one down
    settled = _walk({0.0001: 5.0, 0.0003: 4.0, 0.001: 3.0, 0.003: 3.5, 0.01: 4.0, 0.03: 5.0, 0.1: math.inf})
    assert [t.learning_rate for t in settled] == [0.001, 0.003, 0.0003] and rates.fastest(settled) == 0.001
    # every rate diverging walks down to the grid's end, and nothing is fastest
    diverged = _walk(dict.fromkeys(grid, math.inf))
    assert [t.learning_rate for t in diverged] == [0.001, 0.0003, 0.0001] and rates.fastest(diverged) is None
    assert rates.step_below(grid, 0.0001) == pytest.approx(0.0001 / 3)
    # a tie within half a percent goes to the lower neighbour, and only to it
    tied = _walk({0.0001: 5.0, 0.0003: 4.0, 0.001: 3.0, 0.003: 2.009, 0.01: 2.0, 0.03: 2.5, 0.1: math.inf})
    assert rates.fastest(tied) == 0.003
    close = _walk({0.0001: 5.0, 0.0003: 4.0, 0.001: 2.009, 0.003: 2.005, 0.01: 2.0, 0.03: 2.5, 0.1: math.inf})
    assert rates.fastest(close) == 0.003
    apart = _walk({0.0001: 5.0, 0.0003: 4.0, 0.001: 3.0, 0.003: 2.011, 0.01: 2.0, 0.03: 2.5, 0.1: math.inf})
    assert rates.fastest(apart) == 0.01
    assert rates.trial_batches(8) == 8 and rates.trial_batches(320) == 80 and rates.trial_batches(5000) == 256


def test_race_picks_the_rate_of_the_lowest_loss_and_leaves_the_model_fresh(write_spec):
    path = write_spec(AUTO, "auto.bolt")
    x, y = _blobs(600, 0)
    model = boltc.load(path, tune=True)
    fresh = boltc.load(path, tune=False)
    history = model.fit((x, y), epochs=1, validation=False)
    choice = model.rate_choice
    assert choice is not None and not choice.cached
    assert [t.learning_rate for t in choice.trials] == [t.learning_rate for t in _walk(
        {t.learning_rate: t.loss for t in choice.trials})]  # the walk, as its own losses lead it
    assert choice.fastest == min(choice.trials, key=lambda t: t.loss).learning_rate
    assert choice.learning_rate == rates.step_below(rates.GRID["adam"], choice.fastest)
    assert history.learning_rate == choice.learning_rate
    # after the race the model trained one epoch from the same start as a model that never raced
    fresh.fit((x, y), epochs=1, validation=False, learning_rate=choice.learning_rate)
    for name, array in model.parameters().items():
        np.testing.assert_array_equal(array, fresh.parameters()[name])
    again = boltc.load(path, tune=True)
    again.fit((x, y), epochs=1, validation=False)
    assert again.rate_choice.cached and again.rate_choice.learning_rate == choice.learning_rate


def test_after_the_race_a_sparse_model_trains_as_a_fresh_one_would(write_spec):
    """Between trials the tables and hash functions are copied back, not drawn and rebuilt: the same state."""
    path = write_spec(SPARSE_OUT.replace("adam(learning_rate=0.005)", "adam()"), "raced.bolt")
    x, labels = _wide_data(600)
    raced = boltc.load(path, tune=False)  # the LSH values of the formula, as the fresh model's (timed tuning may not)
    raced.measure_learning_rate = True
    raced.fit((x, labels), epochs=1, validation=False)
    assert len(raced.rate_choice.trials) >= 3
    fresh = boltc.load(path, tune=False)
    fresh.fit((x, labels), epochs=1, validation=False, learning_rate=raced.rate_choice.learning_rate)
    for buffer in raced.buffers:
        if buffer.kind != "scratch":
            np.testing.assert_array_equal(raced.arrays[buffer.name], fresh.arrays[buffer.name], err_msg=buffer.name)


def test_the_race_puts_back_exactly_the_input_rows_its_trials_trained(write_spec):
    """Trials train on a quarter of the first epoch: the input layer's rows of the features they saw are put back,
    and those of features only later rows have must be untouched too, for the epoch that follows to see them fresh."""
    spec = SPARSE_OUT.replace("adam(learning_rate=0.005)", "adam()").replace("sparse[200]", "sparse[5000]")
    path = write_spec(spec, "rows.bolt")
    x, labels = _wide_data(4096)
    # a feature of each row's own besides its label's: the trials' 1,024 rows see a fifth of them
    own = sp.csr_matrix((np.ones(4096, dtype=np.float32), 200 + np.arange(4096) % 4800, np.arange(4097)),
                        shape=(4096, 5000))
    x = sp.csr_matrix(sp.hstack([x, sp.csr_matrix((4096, 4800))]) + own)
    raced = boltc.load(path, tune=False)  # the LSH values of the formula, as the fresh model's (timed tuning may not)
    raced.measure_learning_rate = True
    trained = training.rows_trained_by(raced, raced.prepare_data((x, labels), labelled=True), np.arange(1024))
    assert set(trained[0]) == set(np.unique(x[:1024].indices))
    raced.fit((x, labels), epochs=1, validation=False)
    assert raced.rate_choice.batches == 16 and len(raced.rate_choice.trials) >= 3
    fresh = boltc.load(path, tune=False)
    fresh.fit((x, labels), epochs=1, validation=False, learning_rate=raced.rate_choice.learning_rate)
    for buffer in raced.buffers:
        if buffer.kind != "scratch":
            np.testing.assert_array_equal(raced.arrays[buffer.name], fresh.arrays[buffer.name], err_msg=buffer.name)


def test_the_race_runs_every_trial_at_a_constant_rate(write_spec, monkeypatch):
    """Warm-up and decay belong to training: a trial under them would be scored at rates it never tried."""
    path = write_spec(AUTO.replace("epochs = auto", "epochs = 1, schedule = cosine, warmup = 4"), "w.bolt")
    model = boltc.load(path, tune=True)
    scheduled = []
    rate_at = training.rate_at
    monkeypatch.setattr(training, "rate_at", lambda *args: scheduled.append(model.rate_choice) or rate_at(*args))
    model.fit(_blobs(600, 0), validation=False)
    assert scheduled and all(choice is not None for choice in scheduled)  # only after the race


def test_a_race_that_fails_leaves_the_rate_to_choose(write_spec):
    model = boltc.load(write_spec(AUTO.replace("dense[12]", "dense[12, standardize=false]"), "d.bolt"), tune=True)
    x, y = _blobs(200, 1)
    x[:] = 3e38  # sums past the float range at every rate
    with pytest.raises(TrainingError, match="the loss diverged at every learning rate down to 0.0001"):
        model.fit((x, y), epochs=1, validation=False)
    assert model.learning_rate is None and model.step == 0


def test_fit_refuses_empty_validation_rows_and_accepts_numpy_epoch_counts(write_spec):
    model = boltc.load(write_spec(AUTO, "auto.bolt"), tune=False)
    nothing = take_rows(model.prepare_data(_blobs(10, 1), labelled=True), np.zeros(0, dtype=np.int64))
    with pytest.raises(UsageError, match=r"the validation rows \(the validation set given\) are empty"):
        model.fit(_blobs(100, 1), validation=nothing)
    assert len(model.fit(_blobs(100, 1), epochs=np.int64(2), validation=False).epochs) == 2


def test_without_measuring_auto_is_the_optimizers_usual_rate(write_spec):
    model = boltc.load(write_spec(AUTO, "auto.bolt"), tune=False)
    x, y = _blobs(200, 1)
    history = model.fit((x, y), epochs=1, validation=False)
    assert model.rate_choice is None and history.learning_rate == 0.001


def test_held_out_rows_are_disjoint_seeded_and_capped(write_spec):
    model = boltc.load(write_spec(AUTO, "auto.bolt"), tune=False)
    x, y = _blobs(1000, 2)
    dataset = model.prepare_data((x, y), labelled=True, scaled=False)
    kept, held, source = training.split_validation(model, dataset, 0.1, auto=False)
    assert len(kept) == 900 and held.n_rows == 100 and "100 training rows held out (10.0%, seed 3)" in source
    held_rows = np.setdiff1d(np.arange(1000), kept)
    np.testing.assert_array_equal(held.features[0].dense, x[held_rows])
    again, _, _ = training.split_validation(model, dataset, 0.1, auto=False)
    np.testing.assert_array_equal(kept, again)
    big = model.prepare_data(_blobs(60_000, 3), labelled=True, scaled=False)
    kept, held, _ = training.split_validation(model, big, None, auto=True)  # epochs=auto's default: 5%, at most 2,000
    assert held.n_rows == 2000 and len(kept) == 58_000


def test_auto_epochs_stop_on_the_validation_metric_and_end_with_the_best_epoch(write_spec):
    path = write_spec(AUTO.replace("epochs = auto", "epochs = auto, max_epochs = 30, patience = 2"), "auto.bolt")
    model = boltc.load(path, tune=False)
    x, y = _blobs(800, 4, noise=3.0)
    history = model.fit((x, y), learning_rate=0.05)
    scores = [record.validation["accuracy"] for record in history.epochs]
    best = int(np.argmax(scores)) + 1
    assert history.best_epoch == best and history.best_metric == max(scores)
    improved = [score > max(scores[:epoch], default=-math.inf) for epoch, score in enumerate(scores)]
    assert history.epochs_without_improvement == improved.count(False)
    if history.stopped_early:  # at the second epoch that did not improve, in a row or not
        assert improved.count(False) == 2 and not improved[-1] and len(history.epochs) < 30
    else:
        assert improved.count(False) < 2 and len(history.epochs) == 30
    assert history.validation_rows == 40
    # the model ends with the best epoch's parameters: its validation accuracy is the best epoch's again
    dataset = model.prepare_data((x, y), labelled=True, scaled=False)
    _, held, _ = training.split_validation(model, dataset, None, auto=True)
    assert model.evaluate(held, ["accuracy"])["accuracy"] == history.best_metric
    assert history.restored_epoch == (best if best != len(history.epochs) else 0)


def test_after_a_worse_epoch_training_goes_on_from_the_best_epoch_at_a_tenth_of_the_rate(write_spec, monkeypatch):
    path = write_spec(AUTO.replace("epochs = auto", "epochs = auto, max_epochs = 12, patience = 3"), "auto.bolt")
    model = boltc.load(path, tune=False)
    starts, ends, rates_used = [], [], []
    run_epoch = training.run_epoch_parts

    def watched(*args, **kwargs):
        starts.append({k: v.copy() for k, v in model.parameters().items()})
        rates_used.append(model.learning_rate)
        record = run_epoch(*args, **kwargs)
        ends.append({k: v.copy() for k, v in model.parameters().items()})
        return record

    monkeypatch.setattr(training, "run_epoch_parts", watched)
    history = model.fit(_blobs(800, 4, noise=3.0), learning_rate=0.05)
    assert history.returns_to_best >= 1
    best = 0
    for epoch in range(1, len(history.epochs)):
        improved = history.epochs[epoch - 1].validation["accuracy"] > history.epochs[best].validation["accuracy"] \
            or epoch - 1 == 0
        best = epoch - 1 if improved else best
        came_from = ends[epoch - 1] if improved else ends[best]
        assert rates_used[epoch] == (rates_used[epoch - 1] if improved else rates_used[epoch - 1] * 0.1)
        for name, array in came_from.items():
            np.testing.assert_array_equal(starts[epoch][name], array, err_msg=f"epoch {epoch + 1}: {name}")


def test_restore_best_false_keeps_the_last_epoch(write_spec):
    path = write_spec(AUTO.replace("epochs = auto", "epochs = 4, validation = 0.2, restore_best = false"), "a.bolt")
    model = boltc.load(path, tune=False)
    x, y = _blobs(300, 5)
    history = model.fit((x, y))
    assert len(history.epochs) == 4 and history.restored_epoch == 0 and history.validation_rows == 60
    assert history.best_epoch >= 1


def test_a_fixed_epoch_count_given_to_fit_trains_on_every_row_to_the_last_epoch(write_spec):
    """The held-out rows and the best epoch are epochs=auto's: a count given to fit() overrides both."""
    path = write_spec(AUTO, "auto.bolt")
    x, y = _blobs(300, 8)
    counted = boltc.load(path, tune=False).fit((x, y), epochs=2)
    assert counted.validation_rows == 0 and counted.best_epoch == 0 and counted.restored_epoch == 0
    checked = boltc.load(path, tune=False).fit((x, y), epochs=2, validation=0.2)
    assert checked.validation_rows == 60 and checked.restored_epoch == 0


def test_validation_and_test_rows_are_standardised_once(write_spec):
    """fit() scales the rows it checks on as evaluate() does afterwards: once, with the statistics it learned."""
    spec = AUTO.replace("epochs = auto", "epochs = 2").replace("metrics accuracy", "metrics loss, accuracy")
    model = boltc.load(write_spec(spec, "l.bolt"), tune=False)
    checked = _blobs(100, 10)
    history = model.fit(_blobs(400, 9), validation=checked, test=checked, learning_rate=0.01)
    after = model.evaluate(checked, ["loss"])["loss"]
    assert history.epochs[-1].validation["loss"] == pytest.approx(after, rel=1e-6)
    assert history.epochs[-1].test["loss"] == pytest.approx(after, rel=1e-6)
    scaled = model.prepare_data(checked, labelled=True)
    assert model.evaluate(scaled, ["loss"])["loss"] == pytest.approx(after, rel=1e-6)


def test_auto_epochs_need_validation_rows(write_spec):
    model = boltc.load(write_spec(AUTO, "auto.bolt"), tune=False)
    with pytest.raises(UsageError, match="epochs=auto stops on a validation metric"):
        model.fit(_blobs(100, 6), validation=False)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_and_warmup_shape_the_rate(write_spec, schedule):
    path = write_spec(AUTO.replace("epochs = auto", f"epochs = 2, schedule = {schedule}, warmup = 4"), "s.bolt")
    model = boltc.load(path, tune=False)
    model.learning_rate = 0.01
    model.step = 1  # the second batch of warm-up
    assert training.rate_at(model, 0, 100) == pytest.approx(0.01 * 2 / 4)
    model.step = 10
    decay = {"linear": 1 - 0.25, "cosine": 0.5 * (1 + math.cos(math.pi * 0.25))}[schedule]
    assert training.rate_at(model, 25, 100) == pytest.approx(0.01 * decay)


def test_dense_inputs_are_standardised_with_training_statistics_and_kept_in_the_model_file(write_spec, tmp_path):
    path = write_spec(AUTO.replace("epochs = auto", "epochs = 2"), "auto.bolt")
    model = boltc.load(path, tune=False)
    x, y = _blobs(500, 7)
    model.fit((x, y), learning_rate=0.01)
    scale = model.input_scaling[0]
    np.testing.assert_allclose(scale.mean, x.astype(np.float64).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(scale.inverse_std, 1 / np.sqrt(x.astype(np.float64).var(axis=0).mean()), rtol=1e-4)
    seen = model.prepare_data((x[:5], y[:5]), labelled=True).features[0].dense
    np.testing.assert_allclose(seen, (x[:5] - scale.mean) * scale.inverse_std, rtol=1e-5)
    model.save(tmp_path / "m.boltm")
    loaded = boltc.load_model(tmp_path / "m.boltm")
    np.testing.assert_array_equal(loaded.predict(x[:50], top_k=3)[0], model.predict(x[:50], top_k=3)[0])
    raw = boltc.load(write_spec(AUTO.replace("dense[12]", "dense[12, standardize=false]")
                                .replace("epochs = auto", "epochs = 1"), "raw.bolt"), tune=False)
    raw.fit((x, y), learning_rate=0.01)
    assert raw.input_scaling == {}


def test_scaling_statistics_come_from_the_given_rows_only():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    dataset = from_arrays(x, np.array([0, 1, 0, 1]), n_features=3, n_labels=2)
    scale = learn_scaling(dataset, [0], np.array([0, 1]))[0]
    np.testing.assert_allclose(scale.mean, [1.5, 2.5, 3.5])
    np.testing.assert_allclose(scale.inverse_std, 1 / 1.5)
    assert take_rows(dataset, np.array([2])).n_rows == 1


SPARSE_OUT = """\
model wide {
    input  words: sparse[200]
    target labels: multilabel[2000]
    h = dense(words, 32, activation=relu)
    o = dense(h, 2000, activation=softmax, sparsity=0.05)
    loss cross_entropy(o, labels)
    optimizer adam(learning_rate=0.005)
    train { batch_size = 64, epochs = 2, validation = 0.1, seed = 2 }
    metrics precision@1
}
"""


def _wide_data(rows: int):
    """Rows of SPARSE_OUT's shape: each of 2,000 labels owns a few of 200 features."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2000, size=rows)
    features = [np.unique((labels[r] * 7 + rng.integers(0, 5, size=6)) % 200) for r in range(rows)]
    indptr = np.cumsum([0] + [len(f) for f in features])
    x = sp.csr_matrix((np.ones(indptr[-1], dtype=np.float32), np.concatenate(features), indptr), shape=(rows, 200))
    return x, [[int(v)] for v in labels]


def test_fit_measures_how_often_sparse_inference_finds_dense_inferences_best(write_spec, tmp_path):
    x, wide_labels = _wide_data(1200)
    labels = [row[0] for row in wide_labels]
    model = boltc.load(write_spec(SPARSE_OUT, "wide.bolt"), tune=False)
    model.fit((x, [[int(v)] for v in labels]))
    check = model.sparse_check
    assert check is not None and check["rows"] == 120
    dataset = model.prepare_data((x, [[int(v)] for v in labels]), labelled=True)
    _, held, _ = training.split_validation(model, dataset, None, auto=True)
    dense_top, _ = model.predict(held, top_k=1)
    ids, counts = model.candidate_sets(held)
    assert check["dense_top1_recall"] == pytest.approx(float((ids == dense_top).any(axis=1).mean()))
    # the fewest LSH candidates that keep dense's top-1 (or all of them): fewer found it less often
    lsh = model.plan.output.lsh
    room = lsh.inference_active - lsh.heavy
    ladder = [None if share == 1 else int(share * room) for share in LSH_CANDIDATE_LADDER]
    assert model.lsh_candidates in ladder
    assert check["lsh_candidates"] == (-1 if model.lsh_candidates is None else model.lsh_candidates)
    assert counts.max() <= lsh.heavy + (room if model.lsh_candidates is None else model.lsh_candidates)
    chosen = model.lsh_candidates
    for fewer in ladder[: ladder.index(chosen)]:
        model.lsh_candidates = fewer
        assert model.measure_sparse_recall(held)["dense_top1_recall"] < 0.99
    model.lsh_candidates = chosen
    model.save(tmp_path / "w.boltm")
    loaded = boltc.load_model(tmp_path / "w.boltm")
    assert loaded.sparse_check == check and loaded.lsh_candidates == chosen
    # a check that found sparse inference losing: it warns, once
    loaded.sparse_check = {**check, "dense_top1_recall": 0.5, "dense_metric": 0.5, "sparse_metric": 0.0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded.predict(x[:10], sparse=True)
        loaded.predict(x[:10], sparse=True)
    assert len(caught) == 1 and "for only 50.0% of 120 validation rows" in str(caught[0].message)
    # a fit without validation rows leaves no check of weights it no longer has
    loaded.fit((x, [[int(v)] for v in labels]), epochs=1, validation=False)
    assert loaded.sparse_check is None and loaded.lsh_candidates is None


def test_sparse_inference_scores_every_output_where_no_lsh_candidate_count_keeps_denses_best(write_spec, tmp_path,
                                                                                             monkeypatch):
    x, labels = _wide_data(1200)
    model = boltc.load(write_spec(SPARSE_OUT, "wide.bolt"), tune=False)
    monkeypatch.setattr(boltc.sparse_check, "SPARSE_RECALL_KEPT", 1.01)  # out of every rung's reach
    monkeypatch.setattr(boltc.sparse_check, "SPARSE_METRIC_KEPT", -1.0)
    model.fit((x, labels))
    check = model.sparse_check
    assert model.sparse_scores_all and check["scores_all"] == 1.0 and check["lsh_candidates"] == -1
    dense_ids, dense_scores = model.predict(x[:300], top_k=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sparse_ids, sparse_scores = model.predict(x[:300], top_k=3, sparse=True)
        model.predict(x[:10], sparse=True)
    assert len(caught) == 1 and "scores every output of this model, at dense inference's speed" in \
        str(caught[0].message) and f"for only {check['dense_top1_recall']:.1%} of 120 validation rows" in \
        str(caught[0].message)
    np.testing.assert_array_equal(sparse_ids, dense_ids)
    np.testing.assert_array_equal(sparse_scores, dense_scores)
    model.save(tmp_path / "w.boltm")
    loaded = boltc.load_model(tmp_path / "w.boltm")
    assert loaded.sparse_scores_all and loaded.sparse_check == check
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        np.testing.assert_array_equal(loaded.evaluate((x[:300], labels[:300]), sparse=True)["precision@1"],
                                      loaded.evaluate((x[:300], labels[:300]))["precision@1"])
    monkeypatch.setattr(boltc.sparse_check, "SPARSE_RECALL_KEPT", 0.0)  # the fewest candidates keep it
    loaded.fit((x, labels), epochs=1)
    assert not loaded.sparse_scores_all and loaded.lsh_candidates == 0


def test_sparse_inference_is_kept_where_its_metric_on_the_validation_rows_keeps_denses(write_spec, monkeypatch):
    x, labels = _wide_data(1200)
    model = boltc.load(write_spec(SPARSE_OUT, "wide.bolt"), tune=False)
    monkeypatch.setattr(boltc.sparse_check, "SPARSE_RECALL_KEPT", 1.01)  # dense's top-1 held never counts: the metric decides
    model.fit((x, labels), epochs=5, validation=0.1)  # far from converged: the rungs' metrics differ
    _, held, _ = training.split_validation(model, model.prepare_data((x, labels), labelled=True), 0.1, auto=False)
    lsh = model.plan.output.lsh
    room = lsh.inference_active - lsh.heavy
    dense = model.evaluate(held, ["precision@1"])["precision@1"]
    sparse_by_rung = []
    for share in LSH_CANDIDATE_LADDER:
        model.lsh_candidates = None if share == 1 else int(share * room)
        sparse_by_rung.append(model.evaluate(held, ["precision@1"], sparse=True)["precision@1"])
    assert len(set(sparse_by_rung)) > 1  # the rungs differ, so the choice below is a choice
    for tolerance in sorted({dense - value for value in sparse_by_rung}):
        monkeypatch.setattr(boltc.sparse_check, "SPARSE_METRIC_KEPT", tolerance)
        check = model.choose_lsh_candidates(held)
        rung = next(i for i, value in enumerate(sparse_by_rung) if value >= dense - tolerance)
        assert check["dense_metric"] == dense and check["sparse_metric"] == sparse_by_rung[rung]
        assert check["scores_all"] == 0.0 and model.lsh_candidates == (
            None if LSH_CANDIDATE_LADDER[rung] == 1 else int(LSH_CANDIDATE_LADDER[rung] * room))
    monkeypatch.setattr(boltc.sparse_check, "SPARSE_METRIC_KEPT", min(dense - value for value in sparse_by_rung) - 1e-6)
    assert model.choose_lsh_candidates(held)["scores_all"] == 1.0 and model.sparse_scores_all
