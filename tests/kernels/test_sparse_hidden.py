"""LSH-sparse hidden layers against independent truth: the dense network when every neuron is active, and a numpy
forward and backward of the network with each row's active set as a mask, at the sets the kernels chose (in
training and in inference), through the consumer that reads only the active units and through a sparse output."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import boltc
from boltc.diagnostics import SpecErrors

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference  # noqa: E402

RTOL, ATOL = 2e-4, 2e-5


def spec_text(hidden: int, sparsity: float, reads: str, outputs: int = 5, activation: str = "relu",
              output_sparsity: str = "", optimizer: str = "adam(learning_rate=0.001)", sampling: str = "") -> str:
    """x (dense, 9) -> [h0 dense 6 when `reads` is "layer"] -> h sparse -> o softmax."""
    first = "    h0 = dense(x, 6, activation=tanh)\n" if reads == "layer" else ""
    source = "h0" if reads == "layer" else "x"
    return (f"model s {{\n    input x: dense[9, standardize=false]\n    target y: classes[{outputs}]\n{first}"
            f"    h = dense({source}, {hidden}, activation={activation}, sparsity={sparsity}{sampling})\n"
            f"    o = dense(h, {outputs}, activation=softmax{output_sparsity})\n"
            f"    loss cross_entropy(o, y)\n    optimizer {optimizer}\n    train {{ batch_size = 16, seed = 3 }}\n}}\n")


def make_data(rows: int, outputs: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 9)).astype(np.float32), [[int(c)] for c in rng.integers(0, outputs, size=rows)]


def hidden_layer(model):
    return next(layer for layer in model.plan.layers if layer.kernel == "sparse_hidden")


def active_masks(model, rows: int) -> dict[int, np.ndarray]:
    """Each row's active set of the sparse hidden layer in the last batch, as a 0/1 mask [rows, units]."""
    layer = hidden_layer(model)
    active = model.arrays[f"l{layer.index}.active"][:rows].astype(np.int64)
    mask = np.zeros((rows, layer.out_dim))
    np.put_along_axis(mask, active, 1.0, axis=1)
    return {layer.index: mask}


@pytest.mark.parametrize("reads", ["input", "layer"])
def test_with_every_neuron_active_the_sparse_hidden_layer_is_the_dense_layer(write_spec, reads):
    model = boltc.load(write_spec(spec_text(7, 0.99, reads)), tune=False)  # ceil(0.99 * 7) = 7
    layer = hidden_layer(model)
    assert layer.lsh.active == 7 and model.plan.output.kernel == "gather"  # the output reads the active units
    x, labels = make_data(16, 5, seed=1)
    reference.assert_dense_predictions_match(model, x, RTOL, ATOL)
    reference.assert_one_adam_step_matches(model, x, labels, RTOL, ATOL)


def test_each_row_computes_its_active_neurons_and_zero_elsewhere(write_spec):
    model = boltc.load(write_spec(spec_text(300, 0.1, "input")), tune=False)
    layer = hidden_layer(model)
    assert layer.lsh.active == 30
    x, _ = make_data(16, 5, seed=2)
    model.predict(x)
    active = model.arrays[f"l{layer.index}.active"][:16].astype(np.int64)
    assert all(len(set(row.tolist())) == 30 for row in active)
    z = x.astype(np.float64) @ model.arrays[f"l{layer.index}.weights"].astype(np.float64).T \
        + model.arrays[f"l{layer.index}.bias"]
    expected = np.maximum(z, 0) * active_masks(model, 16)[layer.index]
    np.testing.assert_allclose(model.arrays[f"l{layer.index}.act"][:16], expected, rtol=RTOL, atol=ATOL)
    # the same values as CSR rows over the batch, which the output reads
    np.testing.assert_allclose(model.arrays[f"l{layer.index}.active_values"][:16],
                               np.take_along_axis(expected, active, axis=1), rtol=RTOL, atol=ATOL)
    assert model.arrays[f"l{layer.index}.active_indptr"][:17].tolist() == list(range(0, 17 * 30, 30))


@pytest.mark.parametrize("output", ["reads-active-units", "sparse-output"])
@pytest.mark.parametrize("reads", ["input", "layer"])
def test_a_training_step_matches_numpy_on_the_chosen_active_sets(write_spec, reads, output):
    """Adam after one batch, against the masked network's gradients at the active sets the forward pass chose;
    only the touched rows of the sparse layers move (lazy). A sparse output reads the hidden layer's full-width
    output (0 outside the sets) and passes back a gradient to every unit, of which only the active ones count."""
    outputs = 5 if output == "reads-active-units" else 40
    sparse_output = ", sparsity=0.99, sampling=dwta(active_sets=row)" if output == "sparse-output" else ""
    model = boltc.load(write_spec(spec_text(200, 0.1, reads, outputs=outputs, output_sparsity=sparse_output)),
                       tune=False)
    layer = hidden_layer(model)
    x, labels = make_data(16, outputs, seed=4)
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
        if sparse.lsh is not None:
            grads[f"l{sparse.index}.weights"] = grads[f"l{sparse.index}.weights"].T
    rows = np.flatnonzero(masks[layer.index].any(axis=0))
    assert 30 <= len(rows) < 200  # some neurons untouched: the lazy update must leave them alone
    touched[f"l{layer.index}.weights"] = touched[f"l{layer.index}.bias"] = rows
    expected = reference.adam_step(model.plan, state, grads, touched, step=1, learning_rate=model.plan.learning_rate)
    for key, value in expected.items():
        np.testing.assert_allclose(model.arrays[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


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
