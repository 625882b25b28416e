"""Compiled kernels against the numpy reference (tests/reference.py): forward scores, one Adam step, lazy updates
of sparse-input rows, thread-count independence. Awkward sizes on purpose (1, 7, 17, 33: no SIMD multiples)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import boltc
from boltc.data import from_arrays

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference  # noqa: E402

RTOL, ATOL = 2e-4, 2e-5  # float32 kernels vs float64 reference

SPECS = {
    "relu-softmax": ("dense[17, standardize=false]", "classes[7]", """\
    h = dense(x, 33, activation=relu)
    o = dense(h, 7, activation=softmax)
    loss cross_entropy(o, y)"""),
    "tanh-sigmoid-multilabel": ("dense[7, standardize=false]", "multilabel[17]", """\
    h = dense(x, 1, activation=tanh)
    g = dense(h, 33, activation=sigmoid, bias=false)
    o = dense(g, 17, activation=sigmoid)
    loss binary_cross_entropy(o, y)"""),
    "sparse-input-concat": ("sparse[33]", "multilabel[7]", """\
    a = dense(x, 17, activation=relu)
    b = dense(x, 1, activation=linear)
    c = concat(a, b)
    o = dense(c, 7, activation=softmax)
    loss cross_entropy(o, y)"""),
    "wide-output-tiles": ("dense[7, standardize=false]", "classes[1100]", """\
    o = dense(x, 1100, activation=softmax)
    loss cross_entropy(o, y)"""),
}


def make_spec(write_spec, name: str, batch: int = 16) -> Path:
    """The kernels as they see their inputs (not standardised) at a rate the reference is given."""
    input_kind, target_kind, body = SPECS[name]
    return write_spec(f"model k {{\n    input x: {input_kind}\n    target y: {target_kind}\n{body}\n"
                      f"    optimizer adam(learning_rate=0.001)\n"
                      f"    train {{ batch_size = {batch}, seed = 3 }}\n}}\n", f"{name}.bolt")


def make_data(plan, rows: int, seed: int, as_csr: bool):
    rng = np.random.default_rng(seed)
    dim = plan.inputs[0].dim
    x = rng.normal(size=(rows, dim)).astype(np.float32)
    x[rng.random((rows, dim)) < 0.4] = 0  # zeros exercise the skip-zero paths
    if plan.target_kind == "classes":
        labels = [[int(v)] for v in rng.integers(0, plan.target_dim, size=rows)]
    else:
        labels = [sorted(set(rng.integers(0, plan.target_dim, size=rng.integers(0, 4)).tolist())) for _ in range(rows)]
    features = sp.csr_matrix(x) if as_csr else x
    return features, labels


def full_scores(model, features):
    out = model.plan.output.out_dim
    ids, scores = model.predict(from_arrays(features, None, n_features=model.plan.inputs[0].dim,
                                            n_labels=model.plan.target_dim), top_k=out)
    full = np.zeros((ids.shape[0], out))
    np.put_along_axis(full, ids.astype(np.int64), scores, axis=1)
    return full


def assert_forward_matches(model, features) -> None:
    params = {k: v.copy() for k, v in model.parameters().items()}
    values, _ = reference.forward(model.plan, params, reference.dense_inputs([features]))
    np.testing.assert_allclose(full_scores(model, features), values[model.plan.output_layer], rtol=RTOL, atol=ATOL)


def assert_adam_step_matches(model, features, labels) -> None:
    """One batch through fit() moves every parameter and moment exactly as one lazy-Adam step of the reference."""
    plan = model.plan
    saved = {b.name for b in model.buffers if b.kind != "scratch"}
    state = {k: v.astype(np.float64).copy() for k, v in model.arrays.items() if k in saved}
    params = {k: v for k, v in state.items() if k.endswith((".weights", ".bias"))}
    grads = reference.gradients(plan, params, reference.dense_inputs([features]), labels)
    # a sparse input's weight rows move only when their feature occurs in the batch
    present = np.unique(features.indices if sp.issparse(features) else np.nonzero(features)[1])
    touched = {f"l{layer.index}.weights": present for layer in plan.layers if layer.kernel == "gather"}
    expected = reference.adam_step(plan, state, grads, touched, step=1, learning_rate=plan.learning_rate)
    model.fit(from_arrays(features, labels, n_features=plan.inputs[0].dim, n_labels=plan.target_dim), epochs=1)
    assert model.step == 1
    for key, value in expected.items():
        np.testing.assert_allclose(model.arrays[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("as_csr", [False, True], ids=["dense-array", "csr"])
def test_forward_matches_reference(write_spec, name, as_csr):
    model = boltc.load(make_spec(write_spec, name))
    features, _ = make_data(model.plan, rows=37, seed=1, as_csr=as_csr)  # 37 rows: 3 batches, last one partial
    assert_forward_matches(model, features)


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("as_csr", [False, True], ids=["dense-array", "csr"])
def test_one_adam_step_matches_reference(write_spec, name, as_csr):
    model = boltc.load(make_spec(write_spec, name, batch=16))
    features, labels = make_data(model.plan, rows=16, seed=2, as_csr=as_csr)
    assert_adam_step_matches(model, features, labels)


def test_untouched_sparse_rows_keep_weights_and_moments(write_spec):
    model = boltc.load(make_spec(write_spec, "sparse-input-concat"))
    plan = model.plan
    features = sp.csr_matrix(([1.0, 2.0], ([0, 1], [4, 9])), shape=(2, 33), dtype=np.float32)
    before = model.arrays["l0.weights"].copy()
    model.fit(from_arrays(features, [[1], [2]], n_features=33, n_labels=plan.target_dim), epochs=3)
    after = model.arrays["l0.weights"]
    moved = np.flatnonzero(np.any(after != before, axis=1))
    assert moved.tolist() == [4, 9]
    assert not model.arrays["l0.weights_m"][[0, 1, 2, 3, 5]].any()


@pytest.mark.parametrize("as_csr", [False, True], ids=["dense-array", "csr"])
def test_results_do_not_depend_on_thread_count(write_spec, as_csr):
    spec = make_spec(write_spec, "sparse-input-concat", batch=8)
    runs = []
    for threads in (1, 2):
        model = boltc.load(spec)
        model.threads = threads
        features, labels = make_data(model.plan, rows=40, seed=4, as_csr=as_csr)
        data = from_arrays(features, labels, n_features=model.plan.inputs[0].dim, n_labels=model.plan.target_dim)
        model.fit(data, epochs=2)
        runs.append({k: v.copy() for k, v in model.parameters().items()})
    for name in runs[0]:
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)


def test_training_reduces_loss_on_a_learnable_task(write_spec):
    model = boltc.load(make_spec(write_spec, "relu-softmax", batch=16))
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(7, 17)) * 3
    classes = rng.integers(0, 7, size=400)
    x = (centers[classes] + rng.normal(size=(400, 17))).astype(np.float32)
    data = from_arrays(x, classes, n_features=17, n_labels=7)
    before = model.evaluate(data, ["loss", "accuracy"])
    model.fit(data, epochs=5)
    after = model.evaluate(data, ["loss", "accuracy"])
    assert after["loss"] < before["loss"] * 0.5
    assert after["accuracy"] > 0.9


@pytest.mark.parametrize("name", ["relu-softmax", "sparse-input-concat", "tanh-sigmoid-multilabel"])
def test_portable_fallback_build_matches_reference(write_spec, monkeypatch, name):
    """The build a machine without OpenMP or the vector extension gets: serial, one-lane scalar kernels."""
    monkeypatch.setenv("BOLTC_OPENMP", "0")
    monkeypatch.setenv("BOLTC_CFLAGS", "-DBOLT_SCALAR_ONLY")
    model = boltc.load(make_spec(write_spec, name))
    assert "-fopenmp" not in model.library.so_path.parent.joinpath("meta.json").read_text()
    features, labels = make_data(model.plan, rows=16, seed=7, as_csr=False)
    assert_forward_matches(model, features)
    assert_adam_step_matches(model, features, labels)


@pytest.mark.parametrize("name, as_csr", [("sparse-input-concat", True), ("relu-softmax", False)])
def test_four_lazy_adam_steps_match_the_reference(write_spec, name, as_csr):
    """Steps 2-4 test what one step cannot: Adam's bias correction advancing with the step, the moments carried
    over, and rows of features absent from a batch left alone while their moments wait (lazy Adam)."""
    model = boltc.load(make_spec(write_spec, name, batch=16))
    plan = model.plan
    saved = {b.name for b in model.buffers if b.kind != "scratch"}
    state = {k: v.astype(np.float64).copy() for k, v in model.arrays.items() if k in saved}
    skipped_rows = 0
    for step in range(1, 5):
        features, labels = make_data(plan, rows=16, seed=20 + step, as_csr=as_csr)
        if as_csr:  # each batch sees a different part of the features
            features = sp.csr_matrix(features.multiply(np.arange(features.shape[1]) % 4 != step % 4))
            features.eliminate_zeros()
        params = {k: v for k, v in state.items() if k.endswith((".weights", ".bias"))}
        grads = reference.gradients(plan, params, reference.dense_inputs([features]), labels)
        present = np.unique(features.indices if sp.issparse(features) else np.nonzero(features)[1])
        touched = {f"l{layer.index}.weights": present for layer in plan.layers if layer.kernel == "gather"}
        skipped_rows += sum(plan.inputs[0].dim - len(rows) for rows in touched.values())
        state = reference.adam_step(plan, state, grads, touched, step=step, learning_rate=plan.learning_rate)
        model.fit(from_arrays(features, labels, n_features=plan.inputs[0].dim, n_labels=plan.target_dim), epochs=1)
        assert model.step == step
        for key, value in state.items():
            np.testing.assert_allclose(model.arrays[key], value, rtol=RTOL, atol=ATOL, err_msg=f"step {step}: {key}")
    assert (skipped_rows > 0) == as_csr
