"""The Python model API at its edges: empty rows, bad data sets, non-finite losses, resumable shuffles, misuse."""

from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest
import scipy.sparse as sp

import boltc
from boltc.data import read_xmc
from boltc.diagnostics import DataError, UsageError
from boltc.training import TrainingError

SPARSE = """\
model s {
    input  words: sparse[30]
    target topic: classes[4]
    h = dense(words, 8, activation=relu)
    o = dense(h, 4, activation=softmax)
    loss cross_entropy(o, topic)
    train { batch_size = 8, seed = 1 }
}
"""
TWO_INPUTS = """\
model two {
    input  a: dense[3]
    input  b: dense[2]
    target y: classes[2]
    c = concat(a, b)
    o = dense(c, 2, activation=softmax)
    loss cross_entropy(o, y)
}
"""


@pytest.fixture
def sparse_model(write_spec):
    return boltc.load(write_spec(SPARSE, "s.bolt"))


def test_rows_without_features_train_the_biases_only(sparse_model):
    before = {k: v.copy() for k, v in sparse_model.parameters().items()}
    empty = sp.csr_matrix((5, 30), dtype=np.float32)
    sparse_model.fit((empty, np.array([0, 1, 2, 3, 0])), epochs=1)
    after = sparse_model.parameters()
    assert np.array_equal(after["l0.weights"], before["l0.weights"])
    assert not np.array_equal(after["l1.bias"], before["l1.bias"])


def test_a_data_set_built_for_another_model_is_refused(sparse_model, tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text("2 30 100\n0 1:1\n99 2:1\n")
    with pytest.raises(UsageError, match=r"wide.txt: label id 99 is outside 0..3 of this model"):
        sparse_model.fit(read_xmc(path))


def test_non_finite_loss_stops_before_the_update(write_spec):
    model = boltc.load(write_spec(SPARSE.replace("sparse[30]", "dense[30, standardize=false]"), "d.bolt"))
    x = np.zeros((8, 30), dtype=np.float32)
    x[0, :] = 3e38  # sums past the float range: the forward pass produces inf and nan
    before = {k: v.copy() for k, v in model.parameters().items()}
    with pytest.raises(TrainingError, match=r"the loss became (nan|inf) at batch 1 of epoch 1; training stopped "
                                            r"before that batch's update"):
        model.fit((x, np.zeros(8, dtype=np.int64)))
    for name, array in model.parameters().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)


class _CountingLibrary:
    """The compiled library, counting the training batches it ran to the end; after `interrupt_after` of them it
    sends Ctrl-C, which Python delivers right after the call returns: between the update and its bookkeeping."""

    def __init__(self, lib, interrupt_after: int):
        self._lib, self.updates, self.interrupt_after = lib, 0, interrupt_after

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def bolt_train_batch(self, *args):
        status = self._lib.bolt_train_batch(*args)
        self.updates += status == 0
        if self.updates == self.interrupt_after:
            os.kill(os.getpid(), signal.SIGINT)
        return status


def test_ctrl_c_stops_fit_at_a_batch_boundary_with_a_usable_model(write_spec, tmp_path):
    # Python's own Ctrl-C handling, as a terminal gives it (a shell's background job starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_stops_at_batch_boundaries(write_spec, tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_stops_at_batch_boundaries(write_spec, tmp_path):
    model = boltc.load(write_spec(SPARSE, "s.bolt"))
    x = sp.random(400, 30, density=0.2, format="csr", dtype=np.float32, random_state=1)
    data = model.prepare_data((x, np.random.default_rng(0).integers(0, 4, size=400)), labelled=True)
    batches_per_epoch = 400 // 8
    # mid-epoch, on an epoch's last batch, on the first batch of the next
    for stop_after in (73, 2 * batches_per_epoch, 2 * batches_per_epoch + 1):
        model = boltc.load(write_spec(SPARSE, "s.bolt"))
        counting = _CountingLibrary(model.library.lib, stop_after)
        model.compiled.library = dataclasses.replace(model.library, lib=counting)
        history = model.fit(data, epochs=100, progress=False, learning_rate=0.001)  # no rate race to count
        assert model.step == counting.updates == stop_after  # Adam's step count matches the updates applied
        assert len(history.epochs) == model.epochs_trained == stop_after // batches_per_epoch
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    model.save(tmp_path / "after.boltm")
    restored = boltc.load_model(tmp_path / "after.boltm")
    np.testing.assert_array_equal(restored.predict(x, top_k=2)[0], model.predict(x, top_k=2)[0])
    model.fit(data, epochs=1, progress=False)  # and it trains on


def test_training_in_pieces_equals_training_at_once(write_spec):
    spec = write_spec(SPARSE, "s.bolt")
    rng = np.random.default_rng(0)
    x = sp.random(40, 30, density=0.2, format="csr", dtype=np.float32, random_state=1)
    y = rng.integers(0, 4, size=40)
    whole, pieces = boltc.load(spec), boltc.load(spec)
    whole.fit((x, y), epochs=2)
    pieces.fit((x, y), epochs=1)
    pieces.fit((x, y), epochs=1)
    for name, array in whole.parameters().items():
        np.testing.assert_array_equal(pieces.arrays[name], array, err_msg=name)


@pytest.mark.parametrize("metric", ["precision", "precision@x", "precision@0", "recall@-1", "accuracy@3",
                                    "recall@5", "f1"])
def test_unusable_metrics_are_refused(sparse_model, metric):
    x = sp.random(4, 30, density=0.3, format="csr", dtype=np.float32, random_state=2)
    with pytest.raises(UsageError) as caught:
        sparse_model.evaluate((x, np.arange(4)), [metric])
    assert str(caught.value) == (f"cannot compute metric '{metric}': use accuracy, loss, or precision@k / recall@k "
                                 "with k from 1 to 4")


def test_batch_larger_than_compiled_is_refused(sparse_model):
    with pytest.raises(UsageError) as caught:
        sparse_model.fit((sp.csr_matrix((2, 30), dtype=np.float32), np.array([0, 1])), batch_size=9)
    assert str(caught.value) == ("batch_size must be between 1 and 8, the size the model was compiled for (change "
                                 "train { batch_size = ... } in the spec for larger batches)")


def test_several_inputs_need_a_dict(write_spec):
    model = boltc.load(write_spec(TWO_INPUTS, "two.bolt"))
    with pytest.raises(UsageError, match=r"model 'two' has 2 inputs \(a, b\): pass the features as a dict"):
        model.predict(np.zeros((3, 5), dtype=np.float32))
    ids, scores = model.predict({"b": np.ones((3, 2), np.float32), "a": np.zeros((3, 3), np.float32)}, top_k=2)
    assert ids.shape == (3, 2) and np.allclose(scores.sum(axis=1), 1, atol=1e-6)
    assert not model.plan.layers[1].needs_input_gradient  # a concat of inputs carries no gradient


def test_serial_build_is_reported_as_such(write_spec, monkeypatch):
    monkeypatch.setenv("BOLTC_OPENMP", "0")
    model = boltc.load(write_spec(TWO_INPUTS, "two.bolt"))
    assert model.plan.openmp is False
    assert "-fopenmp" not in (model.library.so_path.parent / "meta.json").read_text()


def test_uncached_builds_leave_nothing_behind(write_spec, monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("BOLTC_CACHE_DIR", str(cache))
    monkeypatch.setenv("BOLTC_CACHE", "0")
    model = boltc.load(write_spec(TWO_INPUTS.replace("dense[2]", "dense[4]"), "two.bolt"))
    assert model.predict({"a": np.zeros((1, 3), np.float32), "b": np.zeros((1, 4), np.float32)})[0].shape == (1, 1)
    assert [p for p in cache.rglob("*") if p.is_file()] == [p for p in cache.rglob("*.json")]  # only the probe


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident set from /proc")
def test_memory_stays_flat_across_twenty_epochs(write_spec):
    model = boltc.load(write_spec(SPARSE.replace("classes[4]", "classes[3000]").replace("(h, 4,", "(h, 3000,")
                                  .replace("activation=softmax)", "activation=softmax, sparsity=0.02)"), "wide.bolt"))
    rng = np.random.default_rng(4)
    x = sp.random(3000, 30, density=0.2, format="csr", dtype=np.float32, random_state=4)
    data = model.prepare_data((x, rng.integers(0, 3000, size=3000)), labelled=True)
    resident = []
    for _ in range(20):
        model.fit(data, epochs=1, progress=False)  # rebuilds its tables on the way and at the end
        model.predict(x, top_k=5, sparse=True)
        resident.append(_resident_bytes())
    # after the first epochs' allocations (workspace, tables, numpy's pools), nothing grows per epoch
    assert resident[-1] - resident[2] < 4 * 2**20, [f"{r / 2**20:.1f} MiB" for r in resident]


def test_skip_bad_rows_applies_to_training_and_evaluation_but_never_to_predict(sparse_model, tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("3 30 4\n0 1:1 2:1\n1 x:1\n2 5:1\n")
    sparse_model.skip_bad_rows = True
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        sparse_model.fit(path, epochs=1, progress=False)
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        assert sparse_model.prepare_data(path, labelled=True).n_rows == 2
    with pytest.raises(DataError) as caught:  # a left-out row would shift every prediction after it
        sparse_model.predict(path)
    assert caught.value.line == 3
