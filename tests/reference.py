"""A plain numpy (float64) implementation of what a compiled model computes: the independent truth for kernel
tests. It reads the network's shape from the plan and nothing else from boltc."""

from __future__ import annotations

import numpy as np

ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "linear": lambda z: z,
}
DERIVATIVES = {  # in terms of the activation's output a
    "relu": lambda a: (a > 0).astype(float),
    "tanh": lambda a: 1 - a * a,
    "sigmoid": lambda a: a * (1 - a),
    "linear": lambda a: np.ones_like(a),
}


def dense_inputs(features: list) -> list[np.ndarray]:
    """Each input as a dense float64 matrix (from numpy arrays or scipy sparse matrices)."""
    return [np.asarray(f.toarray() if hasattr(f, "toarray") else f, dtype=np.float64) for f in features]


def targets(plan, labels: list[list[int]]) -> np.ndarray:
    t = np.zeros((len(labels), plan.target_dim))
    for r, row in enumerate(labels):
        for label in row:
            t[r, label] += 1.0 / len(row) if plan.loss == "cross_entropy" else 1.0
    return t


def forward(plan, params: dict[str, np.ndarray], inputs: list[np.ndarray], masks: dict[int, np.ndarray] | None = None):
    """(values of every layer, output logits); the output layer's value is the probability. ``masks`` (by layer
    index, [rows, units] of 0 and 1) zeroes a hidden layer's neurons outside each row's active set, as an LSH-sparse
    hidden layer does."""
    values: dict[int, np.ndarray] = {}
    logits = None

    def source_value(source):
        return inputs[source.index] if source.is_input else values[source.index]

    for layer in plan.layers:
        if layer.op == "concat":
            values[layer.index] = np.concatenate([source_value(s) for s in layer.sources], axis=1)
            continue
        if layer.op == "add":
            values[layer.index] = sum(source_value(s) for s in layer.sources)
            continue
        z = source_value(layer.sources[0]) @ params[f"l{layer.index}.weights"].astype(np.float64)
        if layer.bias:
            z = z + params[f"l{layer.index}.bias"]
        if layer.index == plan.output_layer:
            logits = z
            if plan.loss == "cross_entropy":
                e = np.exp(z - z.max(axis=1, keepdims=True))
                values[layer.index] = e / e.sum(axis=1, keepdims=True)
            else:
                values[layer.index] = 1 / (1 + np.exp(-z))
        else:
            values[layer.index] = ACTIVATIONS[layer.activation](z) * (masks or {}).get(layer.index, 1)
    return values, logits


def loss(plan, logits: np.ndarray, t: np.ndarray, labelled: np.ndarray) -> float:
    """Mean over rows of the per-row loss (cross-entropy with target distribution t, or BCE summed over outputs)."""
    if plan.loss == "cross_entropy":
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        per_row = -(t * log_p).sum(axis=1) * labelled
    else:
        per_row = (np.maximum(logits, 0) - logits * t + np.log1p(np.exp(-np.abs(logits)))).sum(axis=1)
    return float(per_row.mean())


def gradients(plan, params, inputs, labels: list[list[int]],
              masks: dict[int, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """d(mean loss)/d(parameter) for every parameter, by hand-written backpropagation (``masks``: as in forward)."""
    values, _ = forward(plan, params, inputs, masks)
    t = targets(plan, labels)
    rows = len(labels)
    labelled = np.array([len(r) > 0 for r in labels], dtype=float)[:, None]
    grads_of_value: dict[int, np.ndarray] = {plan.output_layer: (values[plan.output_layer] - t) / rows}
    if plan.loss == "cross_entropy":
        grads_of_value[plan.output_layer] *= labelled
    grads: dict[str, np.ndarray] = {}
    for layer in reversed(plan.layers):
        g = grads_of_value.get(layer.index, np.zeros_like(values[layer.index]))
        if layer.op == "concat":
            for source in layer.sources:
                if not source.is_input:
                    part = g[:, source.offset:source.offset + source.dim]
                    grads_of_value[source.index] = grads_of_value.get(source.index, 0) + part
            continue
        if layer.op == "add":
            for source in layer.sources:
                grads_of_value[source.index] = grads_of_value.get(source.index, 0) + g
            continue
        if layer.index != plan.output_layer:
            g = g * DERIVATIVES[layer.activation](values[layer.index]) * (masks or {}).get(layer.index, 1)
        source = layer.sources[0]
        x = inputs[source.index] if source.is_input else values[source.index]
        weights = params[f"l{layer.index}.weights"].astype(np.float64)
        grads[f"l{layer.index}.weights"] = x.T @ g
        if layer.bias:
            grads[f"l{layer.index}.bias"] = g.sum(axis=0)
        if not source.is_input:
            grads_of_value[source.index] = grads_of_value.get(source.index, 0) + g @ weights.T
    return grads


def adam_step(plan, state: dict[str, np.ndarray], grads: dict[str, np.ndarray], touched: dict[str, np.ndarray],
              step: int, learning_rate: float) -> dict[str, np.ndarray]:
    """One lazy-Adam update: rows not in ``touched[name]`` (when given) keep their weights and moments."""
    out = {k: v.astype(np.float64).copy() for k, v in state.items()}
    b1, b2, eps = plan.beta1, plan.beta2, plan.eps
    for name, g in grads.items():
        rows = touched.get(name, np.arange(g.shape[0]))
        m, v, w = out[name + "_m"], out[name + "_v"], out[name]
        m[rows] = b1 * m[rows] + (1 - b1) * g[rows]
        v[rows] = b2 * v[rows] + (1 - b2) * g[rows] ** 2
        m_hat = m[rows] / (1 - b1 ** step)
        v_hat = v[rows] / (1 - b2 ** step)
        w[rows] -= learning_rate * m_hat / (np.sqrt(v_hat) + eps)
    return out


def model_params(model) -> dict[str, np.ndarray]:
    """A model's parameters in this module's layout, in float64: LSH-sparse layers reading a dense vector store
    their weights output-major [out][in], the reference multiplies by [in][out]."""
    params = {k: v.astype(np.float64).copy() for k, v in model.parameters().items()}
    for layer in model.plan.layers:
        if layer.neuron_rows:
            params[f"l{layer.index}.weights"] = params[f"l{layer.index}.weights"].T.copy()
    return params


def assert_dense_predictions_match(model, x: np.ndarray, rtol: float, atol: float) -> None:
    """The model's scores of every output for `x` against this module's forward pass."""
    values, _ = forward(model.plan, model_params(model), [x.astype(np.float64)])
    outputs = model.plan.output.out_dim
    ids, scores = model.predict(x, top_k=outputs)
    full = np.zeros((len(x), outputs))
    np.put_along_axis(full, ids.astype(np.int64), scores, axis=1)
    np.testing.assert_allclose(full, values[model.plan.output_layer], rtol=rtol, atol=atol)


def assert_one_adam_step_matches(model, x: np.ndarray, labels: list[list[int]], rtol: float, atol: float) -> None:
    """One epoch of one batch with every neuron active: each parameter and moment against adam_step of this
    module's gradients."""
    state = {b.name: model.arrays[b.name].astype(np.float64).copy() for b in model.buffers
             if b.kind in ("parameter", "optimizer")}
    grads = gradients(model.plan, model_params(model), [x.astype(np.float64)], labels)
    for layer in model.plan.layers:
        if layer.neuron_rows:  # back to the kernels' layout
            grads[f"l{layer.index}.weights"] = grads[f"l{layer.index}.weights"].T
    expected = adam_step(model.plan, state, grads, {}, step=1, learning_rate=model.plan.learning_rate)
    model.fit((x, labels), epochs=1)
    for key, value in expected.items():
        np.testing.assert_allclose(model.arrays[key], value, rtol=rtol, atol=atol, err_msg=key)


def bin_hashes(family: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A binned family's hash of every bin ([..., 8] values: the position it picks) and which bins are empty."""
    if family == "dwta":  # the largest value (the first on ties); empty: all zero
        return values.argmax(axis=-1), ~(values != 0).any(axis=-1)
    assert family == "minhash"  # the first positive value; empty: none positive
    positive = values > 0
    return positive.argmax(axis=-1), ~positive.any(axis=-1)


def binned_keys(vectors: np.ndarray, coords: np.ndarray, tables: int, hashes: int, family: str = "dwta") -> np.ndarray:
    """keys[t, n] of each row of `vectors` under a binned family, computed independently of the C code."""
    bins = coords.reshape(8, tables * hashes).T  # stored coordinate-major
    hashes_of, empty = bin_hashes(family, vectors[:, bins])  # [n, bins]
    n_bins = tables * hashes
    for n, i in zip(*np.nonzero(empty)):
        donor = 0
        for step in range(1, n_bins):
            j = (i + step) % n_bins
            if not empty[n, j]:
                donor = hashes_of[n, j]
                break
        hashes_of[n, i] = donor
    shifts = 3 * np.arange(hashes)
    per_table = hashes_of.reshape(len(vectors), tables, hashes)
    return (per_table << shifts).sum(axis=2).T


def srp_keys(vectors: np.ndarray, planes: np.ndarray, tables: int, hashes: int) -> np.ndarray:
    bits = (vectors @ planes.astype(np.float64).T > 0).reshape(len(vectors), tables, hashes)
    return (bits << np.arange(hashes)).sum(axis=2).T  # [tables, vectors]


def lsh_keys(model, layer, vectors: np.ndarray) -> np.ndarray:
    """keys[t, n] of each row of `vectors` under sparse layer `layer`'s hash functions, whatever its family."""
    lsh, vectors = layer.lsh, vectors.astype(np.float64)
    if lsh.family == "srp":
        return srp_keys(vectors, model.arrays[f"l{layer.index}.lsh_planes"], lsh.tables, lsh.hashes)
    return binned_keys(vectors, model.arrays[f"l{layer.index}.lsh_coords"], lsh.tables, lsh.hashes, lsh.family)
