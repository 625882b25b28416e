"""LSH-sparse output layers against independent truth: the dense reference when every neuron is active, numpy
recomputations on the active sets the kernels chose, a numpy DWTA for the tables, and retrieval statistics."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import boltc
from boltc.hashing import FAMILIES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference  # noqa: E402

RTOL, ATOL = 2e-4, 2e-5


OUTPUT_ACTIVATION = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
LOSSES = list(OUTPUT_ACTIVATION)


def spec_text(inputs: int, hidden: int, outputs: int, sparsity: float, batch: int = 16,
              extra: str = "    optimizer adam(learning_rate=0.001)\n", activation: str = "relu", sampling: str = "",
              loss: str = "cross_entropy") -> str:
    """The layers as they see their inputs (not standardised), at a learning rate the references are given."""
    return (f"model s {{\n    input x: dense[{inputs}, standardize=false]\n    target y: multilabel[{outputs}]\n"
            f"    h = dense(x, {hidden}, activation={activation})\n"
            f"    o = dense(h, {outputs}, activation={OUTPUT_ACTIVATION[loss]}, sparsity={sparsity}{sampling})\n"
            f"    loss {loss}(o, y)\n{extra}    train {{ batch_size = {batch}, seed = 4 }}\n}}\n")


def make_data(rows: int, inputs: int, outputs: int, seed: int, max_labels: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, inputs)).astype(np.float32)
    labels = [sorted(set(rng.integers(0, outputs, size=rng.integers(1, max_labels + 1)).tolist()))
              for _ in range(rows)]
    return x, labels


def score_bounds(model) -> np.ndarray:
    """Each output row's highest score over inputs of unit norm, |w| + b: what ranks the rows sparse inference
    always scores."""
    weights = model.arrays["l1.weights"].astype(np.float64)
    return np.linalg.norm(weights, axis=1) + model.arrays["l1.bias"]


def training_active_sets(model, rows: int) -> np.ndarray:
    """The active sets of the last training batch: rows of the planned training width, packed at its start."""
    width = model.plan.output.lsh.active
    return model.arrays["l1.active"].ravel()[: rows * width].reshape(rows, width)


def loss_outputs(z: np.ndarray, loss: str) -> np.ndarray:
    """Each row's softmax over its logits, or their sigmoids."""
    if loss == "cross_entropy":
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)
    return 1 / (1 + np.exp(-z))


SHARED = ", sampling=dwta(active_sets=batch)"  # one active set per batch (softmax outputs' default)
ROW = ", sampling=dwta(active_sets=row)"  # one per row (BOLT's; sigmoid outputs' default)


@pytest.mark.parametrize("sampling", ["", SHARED], ids=["row-sets", "batch-sets"])
@pytest.mark.parametrize("loss", LOSSES)
def test_with_every_neuron_active_the_sparse_path_is_the_dense_layer(write_spec, loss, sampling):
    model = boltc.load(write_spec(spec_text(9, 17, 7, 0.99, loss=loss, sampling=sampling)))  # ceil(0.99 * 7) = 7
    assert model.plan.output.lsh.active == 7
    x, labels = make_data(16, 9, 7, seed=1)
    params = reference.model_params(model)
    values, logits = reference.forward(model.plan, params, [x.astype(np.float64)])
    for sparse in (False, True):
        ids, scores = model.predict(x, top_k=7, sparse=sparse)
        full = np.zeros((16, 7))
        np.put_along_axis(full, ids.astype(np.int64), scores, axis=1)
        np.testing.assert_allclose(full, values[model.plan.output_layer], rtol=RTOL, atol=ATOL)
    # dense evaluation's loss streams over chunks of neurons: against the reference's loss over every output
    expected_loss = reference.loss(model.plan, logits, reference.targets(model.plan, labels), np.ones((16, 1)))
    assert model.evaluate((x, labels), ["loss"])["loss"] == pytest.approx(expected_loss, rel=1e-5)
    # one training step: labels first then the rest, so the loss and gradient are the full softmax's
    state = {b.name: model.arrays[b.name].astype(np.float64).copy() for b in model.buffers
             if b.kind in ("parameter", "optimizer")}
    params = reference.model_params(model)
    grads = reference.gradients(model.plan, params, [x.astype(np.float64)], labels)
    grads["l1.weights"] = grads["l1.weights"].T  # back to the kernels' layout
    expected = reference.adam_step(model.plan, state, grads, {}, step=1, learning_rate=model.plan.learning_rate)
    model.fit((x, labels), epochs=1)
    for key, value in expected.items():
        np.testing.assert_allclose(model.arrays[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize("portable", [False, True], ids=["native", "serial-scalar"])
@pytest.mark.parametrize("loss", LOSSES)
def test_dense_inference_through_a_sparse_layer_is_the_full_layer(write_spec, monkeypatch, loss, portable):
    """Scores stream through in chunks of neurons (online softmax normaliser, running top k): against numpy over
    all 3000 outputs at once, also in the build a machine without OpenMP or the vector extension gets."""
    if portable:
        monkeypatch.setenv("BOLTC_OPENMP", "0")
        monkeypatch.setenv("BOLTC_CFLAGS", "-DBOLT_SCALAR_ONLY")
    model = boltc.load(write_spec(spec_text(9, 17, 3000, 0.01, batch=32, loss=loss)))
    x, labels = make_data(40, 9, 3000, seed=11)
    model.arrays["l1.weights"] *= 8  # spread the scores so that the top k is decided by them, not by rounding
    values, logits = reference.forward(model.plan, reference.model_params(model), [x.astype(np.float64)])
    probabilities = values[model.plan.output_layer]
    ids, scores = model.predict(x, top_k=5)
    expected_ids = np.argsort(-probabilities, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, np.take_along_axis(probabilities, expected_ids, axis=1), rtol=1e-4)
    expected_loss = reference.loss(model.plan, logits, reference.targets(model.plan, labels), np.ones((40, 1)))
    assert model.evaluate((x, labels), ["loss"])["loss"] == pytest.approx(expected_loss, rel=1e-5)
    model.fit((x, labels), epochs=1)  # this build also trains and runs sparse inference (values: other tests)
    sparse_ids, _ = model.predict(x, top_k=5, sparse=True)
    assert sparse_ids.min() >= 0 and sparse_ids.max() < 3000


@pytest.mark.parametrize("sampling", ["", SHARED], ids=["row-sets", "batch-sets"])
@pytest.mark.parametrize("loss", LOSSES)
def test_a_nan_weight_among_the_negatives_stops_training_before_any_update(write_spec, loss, sampling):
    """Vectorised maxima and exponentials must not hide a NaN: the loss guard has to see it."""
    from boltc.training import TrainingError

    text = spec_text(12, 16, 40, 0.99, batch=16, loss=loss, sampling=sampling)  # all 40 neurons active: whole vectors of them
    model = boltc.load(write_spec(text.replace("seed = 4 }", "seed = 4, freeze_tables_after = 0 }")))
    x, _ = make_data(16, 12, 40, seed=13)
    labels = [[1], [20]] * 8
    model.arrays["l1.weights"][5] = np.nan  # never a label: in the loss only through the softmax's max and sum
    before = {b.name: model.arrays[b.name].copy() for b in model.buffers if b.kind in ("parameter", "optimizer", "table")}
    with pytest.raises(TrainingError, match=r"the loss became nan at batch 1 of epoch 1"):
        model.fit((x, labels), epochs=1)
    for name, array in before.items():
        np.testing.assert_array_equal(model.arrays[name], array, err_msg=name)


def test_active_sets_hold_the_labels_and_exactly_the_planned_count(write_spec):
    model = boltc.load(write_spec(spec_text(12, 16, 400, 0.05, batch=32, sampling=ROW)))
    active_count = model.plan.output.lsh.active
    assert active_count == 20
    x, labels = make_data(32, 12, 400, seed=2, max_labels=5)
    model.fit((x, labels), epochs=1)
    active = training_active_sets(model, 32)
    order = model.epoch_order(0, 32)  # batch row b is data row order[b]
    for row, data_row in enumerate(order):
        row_labels = labels[data_row]
        chosen = active[row].tolist()
        assert len(set(chosen)) == active_count and all(0 <= c < 400 for c in chosen)
        assert chosen[: len(row_labels)] == row_labels  # labels first, in order


def test_the_batch_labels_join_every_active_set_after_the_rows_own(write_spec):
    model = boltc.load(write_spec(spec_text(12, 16, 400, 0.1, batch=32, sampling=ROW)))
    lsh = model.plan.output.lsh
    assert (lsh.active, lsh.batch_negatives) == (40, 10)
    x, labels = make_data(32, 12, 400, seed=2, max_labels=3)
    model.fit((x, labels), epochs=1)
    active = training_active_sets(model, 32)
    batch_labels = []  # distinct, in batch order, the first ten
    for data_row in model.epoch_order(0, 32):
        batch_labels += [label for label in labels[data_row] if label not in batch_labels]
    batch_labels = batch_labels[:10]
    for row, data_row in enumerate(model.epoch_order(0, 32)):
        own = labels[data_row]
        expected = own + [label for label in batch_labels if label not in own]
        assert active[row, : len(expected)].tolist() == expected


def test_same_seed_same_active_sets(write_spec):
    spec = write_spec(spec_text(12, 16, 400, 0.05, batch=32, sampling=ROW))
    x, labels = make_data(32, 12, 400, seed=3)
    runs = []
    for _ in range(2):
        model = boltc.load(spec)
        model.threads = 1
        model.fit((x, labels), epochs=2)
        runs.append(training_active_sets(model, 32).copy())
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("sampling", ["", SHARED], ids=["row-sets", "batch-sets"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("hidden", [16, 300])  # 300: the batch-shared input gradient takes several depth chunks
def test_sparse_training_does_not_depend_on_the_thread_count(write_spec, loss, sampling, hidden):
    spec = write_spec(spec_text(12, hidden, 400, 0.05, batch=32, loss=loss, sampling=sampling))
    x, labels = make_data(96, 12, 400, seed=3)
    runs = []
    for threads in (1, 2, 3, 7):  # 7: more threads than the batch has blocks of rows
        model = boltc.load(spec)
        model.threads = threads
        model.fit((x, labels), epochs=2)
        runs.append({k: v.copy() for k, v in model.parameters().items()})
    for run in runs[1:]:
        for name, value in run.items():
            np.testing.assert_array_equal(value, runs[0][name], err_msg=name)


def test_sparse_inference_scores_the_heaviest_rows_and_the_bucket_candidates_and_tops_up_only_to_k(write_spec):
    model = boltc.load(write_spec(spec_text(10, 24, 3000, 0.02, batch=32,
                                            sampling=", sampling=dwta(hashes=3, tables=6, bucket_cap=5)")))
    lsh = model.plan.output.lsh
    x, _ = make_data(32, 10, 3000, seed=12)
    model.arrays["l1.weights"][::7] *= 1.5  # rows of distinct norms, spread over the ids
    model.arrays["l1.bias"][3::11] = 0.5  # and rows whose bias carries them
    model.rebuild()
    heaviest = np.argsort(-score_bounds(model))[: lsh.heavy].tolist()
    assert lsh.heavy == 96  # 3% of the layer, in whole vectors
    ids, offsets = model.arrays["l1.table_ids"], model.arrays["l1.table_offsets"]
    for k in (1, 70):
        model.predict(x, top_k=k, sparse=True)
        hidden = model.arrays["l0.act"][:32].astype(np.float64)
        keys = reference.binned_keys(hidden, model.arrays["l1.lsh_coords"], lsh.tables, lsh.hashes)
        counts = model.arrays["l1.active_counts"][:32]
        active = model.arrays["l1.active"].ravel()[: 32 * lsh.inference_active].reshape(32, -1)
        for row in range(32):
            found = set()
            for t in range(lsh.tables):
                begin = offsets[t, keys[t, row]]
                found.update(ids[t, begin:min(offsets[t, keys[t, row] + 1], begin + lsh.bucket_cap)].tolist())
            assert len(found) <= 30 and lsh.heavy + 30 <= lsh.inference_active  # never truncated
            assert counts[row] == max(len(found | set(heaviest)), k)
            chosen = active[row, : counts[row]].tolist()
            assert chosen[: lsh.heavy] == heaviest  # first, heaviest first
            assert len(set(chosen)) == len(chosen) and found <= set(chosen)
            # the heavy rows' logits come from one matrix product over their packed copy, the rest row by row: the
            # softmax over the set is numpy's of the same rows
            probabilities = model.arrays["l1.act"].ravel()[row * lsh.inference_active:][: counts[row]]
            logits = hidden[row] @ model.arrays["l1.weights"][chosen].T.astype(np.float64) + \
                model.arrays["l1.bias"][chosen]
            expected = np.exp(logits - logits.max())
            np.testing.assert_allclose(probabilities, expected / expected.sum(), rtol=1e-4, atol=1e-7)


def test_heavy_rows_break_ties_at_the_lower_id_and_leave_a_nan_row_last(write_spec):
    model = boltc.load(write_spec(spec_text(10, 24, 3000, 0.02, batch=32)))
    heavy = model.plan.output.lsh.heavy
    weights = model.arrays["l1.weights"]
    weights[:] = weights[7]  # every row alike: every bound ties
    model.arrays["l1.bias"][:] = 0
    weights[1] = np.nan
    weights[2999] *= 2  # one row above the rest
    model.predict(np.ones((1, 10), dtype=np.float32), sparse=True)
    assert model.arrays["l1.heavy_ids"].tolist() == [2999, 0, *range(2, heavy)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_rebuild_puts_every_neuron_once_in_each_table_under_its_key(write_spec, family):
    model = boltc.load(write_spec(spec_text(10, 24, 300, 0.1, sampling=f", sampling={family}(hashes=3, tables=5)")))
    lsh = model.plan.output.lsh
    assert (lsh.family, lsh.hashes, lsh.tables, lsh.range) == (family, 3, 5, FAMILIES[family].key_range(3))
    ids, offsets = model.arrays["l1.table_ids"], model.arrays["l1.table_offsets"]
    keys = reference.lsh_keys(model, model.plan.output, model.arrays["l1.weights"])
    for t in range(lsh.tables):
        assert sorted(ids[t].tolist()) == list(range(300))
        assert offsets[t, 0] == 0 and offsets[t, -1] == 300 and np.all(np.diff(offsets[t]) >= 0)
        for key in np.unique(keys[t]):
            bucket = ids[t, offsets[t, key]:offsets[t, key + 1]]
            assert sorted(bucket.tolist()) == sorted(np.flatnonzero(keys[t] == key).tolist())


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] Jaccard similarities of the rows' positive supports."""
    a, b = (a > 0).astype(np.float64), (b > 0).astype(np.float64)
    both = a @ b.T
    return both / np.maximum(a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :] - both, 1)


# what each family's collisions follow, and vectors on which that similarity varies: inner products of Gaussian
# vectors, Jaccard similarities of sparse binary ones
SIMILARITY = {
    "dwta": (lambda queries, weights: queries @ weights.T, lambda rng, shape: rng.normal(size=shape)),
    "srp": (lambda queries, weights: queries @ weights.T, lambda rng, shape: rng.normal(size=shape)),
    "minhash": (jaccard, lambda rng, shape: (rng.random(size=shape) < 0.25).astype(np.float64)),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_neurons_closer_to_the_query_are_retrieved_more_often(write_spec, family):
    """A linear hidden layer set to the identity makes the hashed vector the input itself."""
    dim, outputs = 32, 2000
    model = boltc.load(write_spec(spec_text(dim, dim, outputs, 0.05, batch=64, activation="linear",
                                            sampling=f", sampling={family}(active_sets=row)")))
    model.arrays["l0.weights"][...] = np.eye(dim)
    model.arrays["l0.bias"][...] = 0
    similar, draw = SIMILARITY[family]
    rng = np.random.default_rng(5)
    model.arrays["l1.weights"][...] = draw(rng, (outputs, dim))
    model.rebuild()
    queries = draw(rng, (64, dim)).astype(np.float32)
    # one training batch of rows without labels (one row needs a label for fit): their active sets are what the
    # tables return for the query, topped up at random, at the training width
    model.fit((queries, [[0]] + [[]] * 63), epochs=1)
    order = model.epoch_order(0, 64)
    active = np.empty((64, model.plan.output.lsh.active), dtype=np.int32)
    active[order] = training_active_sets(model, 64)
    similarity = similar(queries.astype(np.float64), model.arrays["l1.weights"].astype(np.float64))
    retrieved = np.zeros_like(similarity, dtype=bool)
    np.put_along_axis(retrieved, active.astype(np.int64), True, axis=1)
    ranks = np.argsort(np.argsort(-similarity, axis=1, kind="stable"), axis=1)  # 0 = most similar
    rate = [retrieved[(ranks >= lo) & (ranks < lo + 200)].mean() for lo in range(0, outputs, 200)]
    assert rate[0] > 3 * rate[-1]  # the top tenth is retrieved far more often than the bottom tenth
    assert rate[0] > rate[4] > rate[-1] or rate[0] > 2 * rate[4]


@pytest.mark.parametrize("loss", LOSSES)
def test_sparse_gradient_matches_numpy_on_the_chosen_active_sets(write_spec, loss):
    """SGD at learning rate 1 in double precision: each parameter moves by minus its gradient; the gradient is
    recomputed in numpy over the active sets the kernels chose (softmax over the active neurons only, or a sigmoid
    per active neuron)."""
    text = spec_text(6, 5, 60, 0.2, batch=8, extra="    optimizer sgd(learning_rate=1)\n", activation="tanh",
                     loss=loss, sampling=ROW)
    model = boltc.load(write_spec(text), real_type="double")
    x, labels = make_data(8, 6, 60, seed=6)
    before = {k: v.copy() for k, v in model.parameters().items()}
    model.fit((x, labels), epochs=1)
    active = training_active_sets(model, 8).astype(np.int64)
    order = model.epoch_order(0, 8)  # batch row b is data row order[b]
    x, labels = x[order], [labels[i] for i in order]
    w0, b0, w1, b1 = before["l0.weights"], before["l0.bias"], before["l1.weights"], before["l1.bias"]
    h = np.tanh(x.astype(np.float64) @ w0 + b0)
    z = np.einsum("bi,bai->ba", h, w1[active]) + b1[active]
    p = loss_outputs(z, loss)
    target = np.zeros_like(p)
    for row, row_labels in enumerate(labels):
        target[row, : len(row_labels)] = 1.0 / len(row_labels) if loss == "cross_entropy" else 1.0
    dz = (p - target) / len(labels)
    grad_w1, grad_b1 = np.zeros_like(w1), np.zeros_like(b1)
    np.add.at(grad_w1, active, dz[:, :, None] * h[:, None, :])
    np.add.at(grad_b1, active, dz)
    dh = np.einsum("ba,bai->bi", dz, w1[active]) * (1 - h * h)
    expected = {"l1.weights": grad_w1, "l1.bias": grad_b1, "l0.weights": x.astype(np.float64).T @ dh,
                "l0.bias": dh.sum(axis=0)}
    for key, grad in expected.items():
        np.testing.assert_allclose(before[key] - model.arrays[key], grad, rtol=1e-9, atol=1e-12, err_msg=key)


def test_a_batch_shares_its_labels_then_the_rows_candidates_then_random_neurons(write_spec):
    model = boltc.load(write_spec(spec_text(12, 16, 400, 0.1, batch=32, sampling=SHARED)))
    lsh = model.plan.output.lsh
    assert (lsh.active_sets, lsh.active, lsh.shared_active, lsh.row_candidates) == ("batch", 40, 304, 3)  # 40 + 8 labels per row, whole vectors
    x, labels = make_data(32, 12, 400, seed=2, max_labels=3)
    model.fit((x, labels), epochs=1)
    batch_labels = []  # distinct, in batch order
    for data_row in model.epoch_order(0, 32):
        batch_labels += [label for label in labels[data_row] if label not in batch_labels]
    size = int(model.arrays["l1.shared_size"][0])
    assert size == 16 * -(-(len(batch_labels) + 40) // 16)  # labels and the active count, in whole vectors
    shared = model.arrays["l1.shared_ids"][:size].tolist()
    assert len(set(shared)) == size and all(0 <= n < 400 for n in shared)
    assert shared[: len(batch_labels)] == batch_labels
    # the rest: each row's LSH candidates first, in turns, then random neurons
    offered = model.arrays["l1.row_candidates"].reshape(32, lsh.row_candidates)
    counts = model.arrays["l1.row_candidate_counts"]
    in_turns = []
    for rank in range(lsh.row_candidates):
        for row in range(32):
            neuron = int(offered[row, rank])
            if rank < counts[row] and neuron not in batch_labels and neuron not in in_turns:
                in_turns.append(neuron)
    expected = in_turns[: size - len(batch_labels)]
    assert shared[len(batch_labels): len(batch_labels) + len(expected)] == expected
    position = model.arrays["l1.shared_position"]  # 1 + place in the set, for the loss
    assert [int(position[n]) for n in shared] == list(range(1, size + 1)) and np.count_nonzero(position) == size


def test_no_row_candidates_makes_a_sampled_softmax_and_tables_for_inference_only(write_spec):
    model = boltc.load(write_spec(spec_text(12, 16, 400, 0.1, batch=32,
                                            sampling=", sampling=dwta(row_candidates=0)")))
    assert model.plan.output.lsh.row_candidates == 0
    x, labels = make_data(64, 12, 400, seed=5, max_labels=3)
    tables = model.arrays["l1.table_offsets"].copy()  # of the initial weights
    model.fit((x, labels), epochs=30, final_rebuild=False)  # 60 batches: hashing would have rebuilt after 50
    np.testing.assert_array_equal(model.arrays["l1.table_offsets"], tables)
    batch_labels = []
    for data_row in model.epoch_order(29, 64)[32:]:  # the last batch's rows
        batch_labels += [label for label in labels[data_row] if label not in batch_labels]
    size = int(model.arrays["l1.shared_size"][0])
    shared = model.arrays["l1.shared_ids"][:size].tolist()
    assert shared[: len(batch_labels)] == batch_labels and size == 16 * -(-(len(batch_labels) + 40) // 16)
    # then a run of the shuffled order from a salted place, wrapping around, past the labels already in
    order = model.arrays["l1.lsh_order"].tolist()
    start = order.index(shared[len(batch_labels)])
    walk = [order[(start + i) % 400] for i in range(400)]
    assert shared[len(batch_labels):] == [n for n in walk if n not in batch_labels][: size - len(batch_labels)]
    model.fit((x, labels), epochs=1)  # its end builds the tables of the final weights for sparse inference
    assert not np.array_equal(model.arrays["l1.table_offsets"], tables)
    ids, _ = model.predict(x, top_k=5, sparse=True)
    assert ids.shape == (64, 5) and (ids >= 0).all()


def shared_set_outputs_and_targets(z: np.ndarray, shared: np.ndarray, labels, loss: str):
    """The loss's outputs over a batch-shared set's logits z [row][place in the set], and each row's targets at its
    labels' places: label shares (softmax) or ones (sigmoid)."""
    p = loss_outputs(z, loss)
    target = np.zeros_like(p)
    place = {int(n): a for a, n in enumerate(shared)}
    for row, row_labels in enumerate(labels):
        for label in row_labels:
            target[row, place[label]] = 1.0 / len(row_labels) if loss == "cross_entropy" else 1.0
    return p, target


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("hidden, bias, portable", [(5, True, False), (300, False, False), (300, True, True)],
                         ids=["narrow", "wide-no-bias", "wide-serial-scalar"])
def test_batch_shared_gradient_matches_numpy_on_the_chosen_set(write_spec, monkeypatch, loss, hidden, bias, portable):
    """As the per-row test, with one active set for the batch: every row scores the same neurons, and its targets
    are wherever its labels sit in the set. 300 hidden units take the input gradient's product over the set in
    two chunks (bolt_xw_deep reads 8192 floats of the set's rows per chunk), with no bias to start the scores from,
    and in the build a machine without OpenMP or the vector extension gets."""
    if portable:
        monkeypatch.setenv("BOLTC_OPENMP", "0")
        monkeypatch.setenv("BOLTC_CFLAGS", "-DBOLT_SCALAR_ONLY")
    text = spec_text(6, hidden, 60, 0.2, batch=8, extra="    optimizer sgd(learning_rate=1)\n", activation="tanh",
                     loss=loss, sampling=SHARED + ("" if bias else ", bias=false"))
    model = boltc.load(write_spec(text), real_type="double")
    x, labels = make_data(8, 6, 60, seed=6)
    before = {k: v.copy() for k, v in model.parameters().items()}
    model.fit((x, labels), epochs=1)
    shared = model.arrays["l1.shared_ids"][: model.arrays["l1.shared_size"][0]].astype(np.int64)
    assert len(np.unique(shared)) == len(shared) == 32  # 12 active and the batch's labels, in whole vectors
    order = model.epoch_order(0, 8)
    x, labels = x[order], [labels[i] for i in order]
    w0, b0, w1 = before["l0.weights"], before["l0.bias"], before["l1.weights"]
    b1 = before["l1.bias"] if bias else np.zeros(60)
    h = np.tanh(x.astype(np.float64) @ w0 + b0)
    z = h @ w1[shared].T + b1[shared]
    p, target = shared_set_outputs_and_targets(z, shared, labels, loss)
    dz = (p - target) / len(labels)
    grad_w1, grad_b1 = np.zeros_like(w1), np.zeros_like(b1)
    grad_w1[shared] = dz.T @ h
    grad_b1[shared] = dz.sum(axis=0)
    dh = dz @ w1[shared] * (1 - h * h)
    expected = {"l1.weights": grad_w1, "l0.weights": x.astype(np.float64).T @ dh, "l0.bias": dh.sum(axis=0)}
    if bias:
        expected["l1.bias"] = grad_b1
    else:
        assert "l1.bias" not in model.arrays
    for key, grad in expected.items():
        np.testing.assert_allclose(before[key] - model.arrays[key], grad, rtol=1e-9, atol=1e-12, err_msg=key)


def test_save_and_load_keep_hash_functions_and_rebuild_tables(write_spec, tmp_path):
    model = boltc.load(write_spec(spec_text(12, 16, 400, 0.05, batch=32)))
    x, labels = make_data(64, 12, 400, seed=7)
    model.fit((x, labels), epochs=2)
    path = tmp_path / "m.boltm"
    model.save(path)
    restored = boltc.load_model(path)
    for key in ("l1.lsh_coords", "l1.lsh_order", "l1.weights"):
        np.testing.assert_array_equal(restored.arrays[key], model.arrays[key])
    model.rebuild()  # both now hold tables built from the same weights and functions
    np.testing.assert_array_equal(restored.arrays["l1.table_ids"], model.arrays["l1.table_ids"])
    for sparse in (False, True):
        np.testing.assert_array_equal(restored.predict(x, top_k=3, sparse=sparse)[0],
                                      model.predict(x, top_k=3, sparse=sparse)[0])


def test_frozen_tables_stop_rebuilding_and_take_in_each_rows_labels(write_spec):
    x, labels = make_data(64, 12, 400, seed=8)
    text = spec_text(12, 16, 400, 0.05, batch=16, sampling=", sampling=dwta(hashes=3, tables=12)")
    model = boltc.load(write_spec(text.replace("seed = 4 }", "seed = 4, rebuild = 2, freeze_tables_after = 1 }")),
                       real_type="double")
    lsh = model.plan.output.lsh
    assert lsh.insert_slack > 0
    ids, offsets, sizes = (model.arrays[f"l1.{name}"] for name in ("table_ids", "table_offsets", "table_sizes"))

    def bucket(t: int, key: int, visible: bool = False) -> np.ndarray:
        fill = min(sizes[t, key], lsh.bucket_cap) if visible else sizes[t, key]
        return ids[t, offsets[t, key]:offsets[t, key] + fill]

    model.fit((x, labels), epochs=1)  # 4 batches, rebuilt after batches 2 and 4: every neuron once per table
    keys = reference.binned_keys(model.arrays["l1.weights"], model.arrays["l1.lsh_coords"], lsh.tables, lsh.hashes)
    for t in range(lsh.tables):
        assert np.array_equal(np.diff(offsets[t]), np.bincount(keys[t], minlength=lsh.range) + lsh.insert_slack)
        for key in range(lsh.range):
            assert sorted(bucket(t, key).tolist()) == np.flatnonzero(keys[t] == key).tolist()
    layout = offsets.copy()
    for row in range(6):  # past the freeze, one row at a time: its label joins the buckets its input hashes to
        params = model.parameters()
        hidden = np.maximum(x[row:row + 1] @ params["l0.weights"] + params["l0.bias"], 0)
        row_keys = reference.binned_keys(hidden, model.arrays["l1.lsh_coords"], lsh.tables, lsh.hashes)[:, 0]
        model.fit((x[row:row + 1], [labels[row][:1]]), epochs=1)
        np.testing.assert_array_equal(model.arrays["l1.sample_keys"][0], row_keys)
        for t in range(lsh.tables):
            assert labels[row][0] in bucket(t, row_keys[t], visible=True)
    np.testing.assert_array_equal(offsets, layout)  # never rebuilt
    # but the heavy rows follow the weights once sparse inference reads them
    model.predict(x[:1], sparse=True)
    heaviest = np.argsort(-score_bounds(model), kind="stable")[: lsh.heavy]
    assert model.arrays["l1.heavy_ids"].tolist() == heaviest.tolist()
    for t in range(lsh.tables):
        room = np.diff(offsets[t])
        assert np.all(sizes[t] <= room)
        for key in range(lsh.range):
            assert len(set(bucket(t, key).tolist())) == sizes[t, key]  # no neuron twice in a bucket
    model.rebuild()  # an explicit rebuild starts again from the weights
    assert sizes.sum() == 400 * lsh.tables


def test_every_fourth_scheduled_rebuild_draws_new_hash_functions(write_spec):
    model = boltc.load(write_spec(spec_text(12, 16, 400, 0.05, batch=8).replace("seed = 4 }", "seed = 4, rebuild = 1 }")))
    assert model.plan.output.lsh.reconstruct_every == 4
    x, labels = make_data(16, 12, 400, seed=9)
    coords = model.arrays["l1.lsh_coords"].copy()  # the initial build counts as the first rebuild
    model.fit((x, labels), epochs=1)  # two batches: rebuilds two and three keep the functions
    np.testing.assert_array_equal(model.arrays["l1.lsh_coords"], coords)
    model.fit((x[:8], labels[:8]), epochs=1)  # the fourth rebuild draws new ones
    assert not np.array_equal(model.arrays["l1.lsh_coords"], coords)
    assert sorted(model.arrays["l1.lsh_order"].tolist()) == list(range(400))


def test_srp_hyperplanes_are_random_signs(write_spec):
    model = boltc.load(write_spec(spec_text(10, 24, 300, 0.1, sampling=", sampling=srp(hashes=6, tables=9)")))
    planes = model.arrays["l1.lsh_planes"]
    assert planes.shape == (54, 24) and set(np.unique(planes)) == {-1.0, 1.0}


def test_the_kernel_profile_counts_what_training_touched(write_spec):
    model = boltc.load(write_spec(spec_text(9, 17, 300, 0.05, batch=16, sampling=ROW)))
    active = model.plan.output.lsh.active
    x, labels = make_data(40, 9, 300, seed=5)
    model.fit((x, labels), epochs=1)  # batches of 16, 16, 8
    first = model.kernel_profile()["o"]
    assert first["batches"] == 3
    assert first["entries_scored"] == first["entries_updated"] == 40 * active
    # neurons updated: the distinct ids of each batch's active sets, here checked on a batch on its own
    model.reset_kernel_profile()
    model.fit((x[:16], labels[:16]), epochs=1)
    alone = model.kernel_profile()["o"]
    assert alone["batches"] == 1
    assert alone["neurons_updated"] == len(np.unique(training_active_sets(model, 16)))
    assert alone["forward_seconds"] > 0 and alone["backward_seconds"] > 0
    assert alone["rebuilds"] == 1  # fit() rebuilds at its end, so that inference reads the final weights


def test_the_kernel_profile_counts_a_shared_set_once_per_batch(write_spec):
    model = boltc.load(write_spec(spec_text(9, 17, 300, 0.05, batch=16, sampling=SHARED)))
    x, labels = make_data(16, 9, 300, seed=5)
    model.fit((x, labels), epochs=1)
    profile = model.kernel_profile()["o"]
    size = int(model.arrays["l1.shared_size"][0])
    assert size % 16 == 0 and size >= model.plan.output.lsh.active
    assert profile["batches"] == 1 and profile["neurons_updated"] == size
    assert profile["entries_scored"] == profile["entries_updated"] == 16 * size


def bf16_to_float(stored: np.ndarray) -> np.ndarray:
    return (stored.astype(np.uint32) << 16).view(np.float32)


def test_bf16_moments_follow_adam_within_their_rounding_and_survive_save(write_spec, tmp_path):
    extra = "    optimizer adam(learning_rate=0.01, moments=bf16)\n"
    model = boltc.load(write_spec(spec_text(9, 17, 7, 0.99, extra=extra)))  # every neuron active
    assert model.arrays["l1.weights_m"].dtype == np.uint16 and model.arrays["l0.weights_m"].dtype == np.float32
    x, labels = make_data(16, 9, 7, seed=1)
    state = {b.name: model.arrays[b.name].astype(np.float64).copy() for b in model.buffers
             if b.kind in ("parameter", "optimizer")}
    grads = reference.gradients(model.plan, reference.model_params(model), [x.astype(np.float64)], labels)
    grads["l1.weights"] = grads["l1.weights"].T
    expected = reference.adam_step(model.plan, state, grads, {}, step=1, learning_rate=0.01)
    model.fit((x, labels), epochs=1)
    for key in ("l1.weights_m", "l1.weights_v"):  # stochastic rounding: within one bf16 step of the exact value
        np.testing.assert_allclose(bf16_to_float(model.arrays[key]), expected[key], rtol=2**-7, atol=1e-30,
                                   err_msg=key)
    # the weights move by the exact moments (rounding only affects what is stored for the next step)
    np.testing.assert_allclose(model.arrays["l1.weights"], expected["l1.weights"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(model.arrays["l0.weights_m"], expected["l0.weights_m"], rtol=RTOL, atol=ATOL)
    path = tmp_path / "bf16.boltm"
    model.save(path)
    restored = boltc.load_model(path)
    np.testing.assert_array_equal(restored.arrays["l1.weights_v"], model.arrays["l1.weights_v"])


def bf16_nearest(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bf16 (ties to even), as float64: the operands of bf16 products."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16).astype(np.uint32)
    return rounded.view(np.float32).astype(np.float64)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("hidden, bias, outputs, sparsity, size, portable", [
    (5, True, 200, 0.2, 80, False), (40, False, 200, 0.2, 80, False), (300, True, 200, 0.2, 80, False),
    (5, True, 5000, 0.9, 4544, False), (40, True, 200, 0.2, 80, True)])
def test_bf16_products_are_numpys_products_of_the_same_operands_rounded_to_bf16(write_spec, monkeypatch, loss, hidden,
                                                                                  bias, outputs, sparsity, size,
                                                                                  portable):
    """precision=bf16 on AMX tiles: the set's logits and every gradient against numpy's float64 products of the
    kernel's own operands (the hidden layer's outputs, the set's weight rows, the loss's gradient) rounded to bf16.
    20 rows (a partial row tile), sets ending in half a block of 32 neurons, and inputs of 5 / 40 / 300 (padded to
    32 / 64 / 320 deep) take every edge of the tiles; a set of 4,544 is packed in pieces (4,096 values at a time).
    The portable build (no OpenMP, no vector extension, no AMX) of the same plan runs the fp32 kernels: its
    products are numpy's of the unrounded operands."""
    if portable:
        monkeypatch.setenv("BOLTC_OPENMP", "0")
        monkeypatch.setenv("BOLTC_CFLAGS", "-DBOLT_SCALAR_ONLY")
    sampling = SHARED + ("" if bias else ", bias=false") + ", precision=bf16"
    text = spec_text(6, hidden, outputs, sparsity, batch=20, extra="    optimizer sgd(learning_rate=1)\n",
                     activation="tanh", loss=loss, sampling=sampling)
    model = boltc.load(write_spec(text))
    if model.plan.output.products != "bf16":
        pytest.skip("this machine has no AMX tiles for bf16 products (the plan keeps fp32)")
    x, labels = make_data(20, 6, outputs, seed=7)
    before = {k: v.astype(np.float64).copy() for k, v in model.parameters().items()}
    model.fit((x, labels), epochs=1)
    assert model.kernel_profile()["o"]["bf16_batches"] == (0 if portable else 1)
    rounded = (lambda values: np.asarray(values, dtype=np.float64)) if portable else bf16_nearest
    # the batch's labels and the planned neurons more, in whole vectors (80: 38 labels and 40 neurons)
    assert int(model.arrays["l1.shared_size"][0]) == size
    shared = model.arrays["l1.shared_ids"][:size].astype(np.int64)
    order = model.epoch_order(0, 20)
    x, labels = x[order].astype(np.float64), [labels[i] for i in order]
    h32 = model.arrays["l0.act"][:20]
    h = h32.astype(np.float64)
    np.testing.assert_allclose(h, np.tanh(x @ before["l0.weights"] + before["l0.bias"]), rtol=1e-5, atol=1e-6)
    w1 = before["l1.weights"]
    b1 = before["l1.bias"] if bias else np.zeros(outputs)
    z = rounded(h32) @ rounded(w1[shared].astype(np.float32)).T + b1[shared]
    p, target = shared_set_outputs_and_targets(z, shared, labels, loss)
    dz32 = model.arrays["l1.grad"][:20, :size]
    np.testing.assert_allclose(dz32, (p - target) / 20, rtol=1e-4, atol=1e-7)
    dz = rounded(dz32)
    grad_w1 = np.zeros_like(w1)
    grad_w1[shared] = dz.T @ rounded(h32)
    dh = dz @ rounded(w1[shared].astype(np.float32)) * (1 - h * h)
    expected = {"l1.weights": grad_w1, "l0.weights": x.T @ dh, "l0.bias": dh.sum(axis=0)}
    if bias:
        expected["l1.bias"] = np.zeros_like(b1)
        expected["l1.bias"][shared] = dz32.astype(np.float64).sum(axis=0)  # the bias sums dz in fp32, unrounded
    for key, grad in expected.items():
        np.testing.assert_allclose(before[key] - model.arrays[key], grad, rtol=1e-4, atol=1e-6, err_msg=key)


def test_bf16_moments_follow_adam_step_after_step(write_spec):
    """Four steps, each checked from the model's own (rounded) state: the bias correction advances with the step
    for bf16 moments as for fp32 ones."""
    extra = "    optimizer adam(learning_rate=0.01, moments=bf16)\n"
    model = boltc.load(write_spec(spec_text(9, 17, 7, 0.99, extra=extra)))  # every neuron active
    for step in range(1, 5):
        x, labels = make_data(16, 9, 7, seed=40 + step)
        state = {b.name: (bf16_to_float(model.arrays[b.name]) if model.arrays[b.name].dtype == np.uint16 else
                          model.arrays[b.name]).astype(np.float64) for b in model.buffers
                 if b.kind in ("parameter", "optimizer")}
        grads = reference.gradients(model.plan, reference.model_params(model), [x.astype(np.float64)], labels)
        grads["l1.weights"] = grads["l1.weights"].T
        expected = reference.adam_step(model.plan, state, grads, {}, step=step, learning_rate=0.01)
        model.fit((x, labels), epochs=1)
        assert model.step == step
        for key in ("l1.weights_m", "l1.weights_v"):  # stochastic rounding: within one bf16 step of the exact value
            np.testing.assert_allclose(bf16_to_float(model.arrays[key]), expected[key], rtol=2**-7, atol=1e-30,
                                       err_msg=f"step {step}: {key}")
        np.testing.assert_allclose(model.arrays["l1.weights"], expected["l1.weights"], rtol=RTOL, atol=ATOL,
                                   err_msg=f"step {step}")


@pytest.mark.parametrize("family", ["dwta", "minhash"])
def test_binned_densification_with_empty_bins_in_the_weights_and_in_the_query(write_spec, family):
    """Empty bins (DWTA: 8 coordinates all zero; MinHash: none positive) borrow the next non-empty bin's hash,
    cyclically (0 where every bin is empty), on both sides of the hash: the weight rows the rebuild files and the
    activations a query looks up. A linear identity hidden layer makes the query the input itself, so its empty
    bins are planted directly (64 coordinates: the 8 bins of 8 are one permutation's, disjoint). MinHash's values
    lean positive, so that its unplanted bins are rarely empty and their hashes vary."""
    dim, outputs = 64, 400
    model = boltc.load(write_spec(spec_text(dim, dim, outputs, 0.05, batch=16, activation="linear",
                                            sampling=f", sampling={family}(hashes=2, tables=4, bucket_cap=4)")))
    lsh = model.plan.output.lsh
    assert lsh.heavy + lsh.tables * lsh.bucket_cap <= lsh.inference_active  # a query's buckets are never truncated
    model.arrays["l0.weights"][...] = np.eye(dim)
    model.arrays["l0.bias"][...] = 0
    coords = model.arrays["l1.lsh_coords"]
    n_bins = lsh.tables * lsh.hashes
    bin_coords = coords.reshape(8, n_bins).T  # [bin, 8]
    rng = np.random.default_rng(8)

    def planted(rows: int) -> np.ndarray:
        """Random rows, then: all bins empty, only the last bin kept (every other one wraps to it), only the
        first kept, and random bins emptied in the rest."""
        values = rng.normal(loc=0.5 if family == "minhash" else 0.0, size=(rows, dim))
        kept_only = {1: n_bins - 1, 2: 0}
        for row in range(rows):
            emptied = range(n_bins) if row in (0, 1, 2) else \
                rng.choice(n_bins, size=int(rng.integers(1, 4)), replace=False)
            keep = set(bin_coords[kept_only[row]].tolist()) if row in kept_only else set()
            for b in emptied:
                values[row, [c for c in bin_coords[b] if c not in keep]] = 0
        return values

    weights = planted(outputs)
    model.arrays["l1.weights"][...] = weights
    model.rebuild()
    keys = reference.binned_keys(weights, coords, lsh.tables, lsh.hashes, family)
    hashes_of, empty = reference.bin_hashes(family, weights[:, bin_coords])
    assert len(np.unique(hashes_of[3:][~empty[3:]])) == 8  # every position of a bin is some bin's hash
    assert empty[0].all() and empty[1, :-1].all() and not empty[1, -1] and not empty[2, 0] and empty[2, 1:].all()
    assert empty[3:].any(axis=1).all() and (~empty[3:]).any(axis=1).all()
    ids, offsets = model.arrays["l1.table_ids"], model.arrays["l1.table_offsets"]
    for t in range(lsh.tables):
        for key in np.unique(keys[t]):
            bucket = ids[t, offsets[t, key]:offsets[t, key + 1]]
            assert sorted(bucket.tolist()) == np.flatnonzero(keys[t] == key).tolist(), f"table {t}, key {key}"
    queries = planted(16).astype(np.float32)
    model.predict(queries, top_k=1, sparse=True)
    query_keys = reference.binned_keys(model.arrays["l0.act"][:16].astype(np.float64), coords, lsh.tables, lsh.hashes,
                                       family)
    counts = model.arrays["l1.active_counts"][:16]
    active = model.arrays["l1.active"].ravel()[: 16 * lsh.inference_active].reshape(16, -1)
    for row in range(16):
        chosen = set(active[row, : counts[row]].tolist())
        for t in range(lsh.tables):
            begin = offsets[t, query_keys[t, row]]
            bucket = ids[t, begin:min(offsets[t, query_keys[t, row] + 1], begin + lsh.bucket_cap)]
            assert set(bucket.tolist()) <= chosen, f"query {row}, table {t}"
