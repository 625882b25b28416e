"""LSH-sparse hidden layers against independent truth: the dense network when every neuron is active, and a numpy
forward and backward of the network with each row's active set as a mask, at the sets the kernels chose (in
training and in inference), through the consumer that reads only the active units and through a sparse output;
reading a dense input, a layer, or a sparse input (whose layer keeps input-major weights)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import boltc
from boltc.data import from_arrays
from boltc.diagnostics import SpecErrors
from boltc.hashing import FAMILIES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference  # noqa: E402

RTOL, ATOL = 2e-4, 2e-5


READS = ["input", "layer", "sparse-input"]


def spec_text(hidden: int, sparsity: float, reads: str, outputs: int = 5, activation: str = "relu",
              output_sparsity: str = "", optimizer: str = "adam(learning_rate=0.001)", sampling: str = "") -> str:
    """x (dense or sparse, 9) -> [h0 dense 6 when `reads` is "layer"] -> h sparse -> o softmax."""
    first = "    h0 = dense(x, 6, activation=tanh)\n" if reads == "layer" else ""
    source = "h0" if reads == "layer" else "x"
    kind = "sparse[9]" if reads == "sparse-input" else "dense[9, standardize=false]"
    return (f"model s {{\n    input x: {kind}\n    target y: classes[{outputs}]\n{first}"
            f"    h = dense({source}, {hidden}, activation={activation}, sparsity={sparsity}{sampling})\n"
            f"    o = dense(h, {outputs}, activation=softmax{output_sparsity})\n"
            f"    loss cross_entropy(o, y)\n    optimizer {optimizer}\n    train {{ batch_size = 16, seed = 3 }}\n}}\n")


def make_data(rows: int, outputs: int, seed: int, reads: str = "input"):
    """Rows of 9 values (a third of them 0 for a sparse input, every row with one feature at least) and a class."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 9))
    if reads == "sparse-input":
        x *= rng.random(size=(rows, 9)) < 0.67
        x[:, 0] += (x == 0).all(axis=1)
    return x.astype(np.float32), [[int(c)] for c in rng.integers(0, outputs, size=rows)]


def hidden_layer(model):
    return next(layer for layer in model.plan.layers if layer.emits_active_units)


def active_masks(model, rows: int) -> dict[int, np.ndarray]:
    """Each row's active set of the sparse hidden layer in the last batch, as a 0/1 mask [rows, units]."""
    layer = hidden_layer(model)
    active = model.arrays[f"l{layer.index}.active"][:rows].astype(np.int64)
    mask = np.zeros((rows, layer.out_dim))
    np.put_along_axis(mask, active, 1.0, axis=1)
    return {layer.index: mask}


@pytest.mark.parametrize("reads", READS)
def test_with_every_neuron_active_the_sparse_hidden_layer_is_the_dense_layer(write_spec, reads):
    model = boltc.load(write_spec(spec_text(7, 0.99, reads)), tune=False)  # ceil(0.99 * 7) = 7
    layer = hidden_layer(model)
    assert layer.lsh.active == 7 and model.plan.output.kernel == "gather"  # the output reads the active units
    x, labels = make_data(16, 5, seed=1, reads=reads)
    reference.assert_dense_predictions_match(model, x, RTOL, ATOL)
    reference.assert_one_adam_step_matches(model, x, labels, RTOL, ATOL)


def bucket_candidates(model, layer, x: np.ndarray) -> list[set[int]]:
    """The neurons in each row's buckets (read up to the cap), from numpy's keys of the row."""
    keys = reference.lsh_keys(model, layer, x)
    ids, offsets = model.arrays[f"l{layer.index}.table_ids"], model.arrays[f"l{layer.index}.table_offsets"]
    found = [set() for _ in x]
    for t in range(layer.lsh.tables):
        for row, key in enumerate(keys[t]):
            begin = offsets[t, key]
            found[row].update(ids[t, begin:min(offsets[t, key + 1], begin + layer.lsh.bucket_cap)].tolist())
    return found


@pytest.mark.parametrize("reads", ["input", "sparse-input"])
def test_each_row_computes_its_bucket_candidates_topped_up_and_zero_elsewhere(write_spec, reads):
    sampling = ", sampling=dwta(hashes=3, tables=2, bucket_cap=5)"  # at most 10 candidates: none left out
    model = boltc.load(write_spec(spec_text(300, 0.1, reads, sampling=sampling)), tune=False)
    layer = hidden_layer(model)
    assert layer.lsh.active == 30
    x, _ = make_data(16, 5, seed=2, reads=reads)
    model.predict(x)
    active = model.arrays[f"l{layer.index}.active"][:16].astype(np.int64)
    assert all(len(set(row.tolist())) == 30 for row in active)
    found = bucket_candidates(model, layer, x)
    assert all(candidates <= set(row.tolist()) for candidates, row in zip(found, active))
    assert len(set.union(*found)) > 10  # the rows hashed apart
    z = x.astype(np.float64) @ reference.model_params(model)[f"l{layer.index}.weights"] \
        + model.arrays[f"l{layer.index}.bias"]
    expected = np.maximum(z, 0) * active_masks(model, 16)[layer.index]
    np.testing.assert_allclose(model.arrays[f"l{layer.index}.act"][:16], expected, rtol=RTOL, atol=ATOL)
    # the same values as CSR rows over the batch, which the output reads
    np.testing.assert_allclose(model.arrays[f"l{layer.index}.active_values"][:16],
                               np.take_along_axis(expected, active, axis=1), rtol=RTOL, atol=ATOL)
    assert model.arrays[f"l{layer.index}.active_indptr"][:17].tolist() == list(range(0, 17 * 30, 30))


@pytest.mark.parametrize("output", ["reads-active-units", "sparse-output"])
@pytest.mark.parametrize("reads", READS)
def test_a_training_step_matches_numpy_on_the_chosen_active_sets(write_spec, reads, output):
    """Adam after one batch, against the masked network's gradients at the active sets the forward pass chose;
    only the touched rows of the sparse layers move (lazy). A sparse output reads the hidden layer's full-width
    output (0 outside the sets) and passes back a gradient to every unit, of which only the active ones count."""
    outputs = 5 if output == "reads-active-units" else 40
    sparse_output = ", sparsity=0.99, sampling=dwta(active_sets=row)" if output == "sparse-output" else ""
    model = boltc.load(write_spec(spec_text(200, 0.1, reads, outputs=outputs, output_sparsity=sparse_output)),
                       tune=False)
    layer = hidden_layer(model)
    x, labels = make_data(16, outputs, seed=4, reads=reads)
    params = reference.model_params(model)
    state = {b.name: model.arrays[b.name].astype(np.float64).copy() for b in model.buffers
             if b.kind in ("parameter", "optimizer")}
    model.fit((x, labels), epochs=1)
    order = model.epoch_order(0, 16)
    masks = active_masks(model, 16)
    masks[layer.index][order] = masks[layer.index].copy()  # batch rows in epoch order -> data rows
    grads = reference.gradients(model.plan, params, [x.astype(np.float64)], labels, masks)
    touched = {}
    for sparse in model.plan.layers:
        if sparse.neuron_rows:
            grads[f"l{sparse.index}.weights"] = grads[f"l{sparse.index}.weights"].T
    rows = np.flatnonzero(masks[layer.index].any(axis=0))
    assert 30 <= len(rows) < 200  # some neurons untouched: the lazy update must leave them alone
    if layer.neuron_rows:
        touched[f"l{layer.index}.weights"] = touched[f"l{layer.index}.bias"] = rows
    else:  # the rows of the features present; the bias as a dense layer's
        touched[f"l{layer.index}.weights"] = np.unique(np.nonzero(x)[1])
    expected = reference.adam_step(model.plan, state, grads, touched, step=1, learning_rate=model.plan.learning_rate)
    for key, value in expected.items():
        np.testing.assert_allclose(model.arrays[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_rebuild_files_each_neuron_under_the_keys_of_its_weights_as_the_layer_stores_them(write_spec, family):
    """Input-major weights (a sparse input's layer) hash each neuron's column: 40 neurons, more than one copy block."""
    model = boltc.load(write_spec(spec_text(40, 0.5, "sparse-input", sampling=f", sampling={family}(tables=3)")),
                       tune=False)
    layer = hidden_layer(model)
    assert not layer.neuron_rows
    model.arrays[f"l{layer.index}.weights"][...] = np.random.default_rng(6).normal(size=(9, 40))
    model.rebuild()
    keys = reference.lsh_keys(model, layer, reference.model_params(model)[f"l{layer.index}.weights"].T)
    ids, offsets = model.arrays[f"l{layer.index}.table_ids"], model.arrays[f"l{layer.index}.table_offsets"]
    for t in range(3):
        filed = {int(key): sorted(ids[t, offsets[t, key]:offsets[t, key + 1]].tolist()) for key in np.unique(keys[t])}
        assert filed == {int(key): np.flatnonzero(keys[t] == key).tolist() for key in np.unique(keys[t])}


def test_the_hidden_layers_tables_are_rebuilt_and_saved_with_it(write_spec, tmp_path):
    model = boltc.load(write_spec(spec_text(300, 0.1, "layer", sampling=", sampling=minhash()")), tune=False)
    layer = hidden_layer(model)
    x, labels = make_data(64, 5, seed=5)
    model.fit((x, labels), epochs=2)
    path = tmp_path / "hidden.boltm"
    model.save(path)
    loaded = boltc.load_model(path)
    for role in ("weights", "lsh_coords", "lsh_order"):
        np.testing.assert_array_equal(loaded.arrays[f"l{layer.index}.{role}"], model.arrays[f"l{layer.index}.{role}"])
    np.testing.assert_array_equal(loaded.arrays[f"l{layer.index}.table_ids"],
                                  model.arrays[f"l{layer.index}.table_ids"])  # rebuilt from what was saved
    np.testing.assert_array_equal(loaded.predict(x, top_k=2)[0], model.predict(x, top_k=2)[0])


def test_hidden_layers_refuse_the_settings_of_a_sparse_outputs_shared_sets(write_spec):
    path = write_spec(spec_text(300, 0.1, "input", sampling=", sampling=dwta(active_sets=batch)"))
    with pytest.raises(SpecErrors) as caught:
        boltc.load(path)
    assert [(e.span.line, e.span.column, e.message) for e in caught.value.errors] == [
        (4, 5, "active_sets=batch applies to a sparse output layer's batch-shared active sets; 'h' is a hidden "
               "layer, whose rows each have their own active set")]


@pytest.mark.parametrize("sparsity", [0.5, 1.0], ids=["sparse-gather", "dense-gather"])
def test_a_batch_that_gives_a_sparse_input_dense_is_refused_before_any_kernel_reads_it(write_spec, sparsity):
    """Python converts such an input to CSR; a caller of the C entry points that does not gets a status, not a
    crash."""
    model = boltc.load(write_spec(spec_text(40, sparsity, "sparse-input")), tune=False)
    assert model.plan.layers[0].kernel == ("sparse_gather" if sparsity < 1 else "gather")
    x, labels = make_data(16, 5, seed=7, reads="sparse-input")
    dense = from_arrays(x, labels, n_features=9, n_labels=5)
    assert dense.features[0].dense is not None
    feed = model.compiled.feed(dense, threads=1)
    feed.select(np.arange(16))
    status, _ = model.compiled.train_batch(feed)
    assert status == model.compiled.library.lib.BOLT_ERROR_BAD_ARGUMENT
