"""Gradients of the compiled float64 kernels against central finite differences of the compiled loss.

With SGD at learning rate 1, one update moves each parameter by exactly minus its gradient, so the gradient the C
code computed is read back as (before - after), through the real training path."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import boltc
from boltc.data import from_arrays

SPECS = {
    "tanh-softmax-ce": ("dense[5, standardize=false]", "classes[4]", """\
    h = dense(x, 7, activation=tanh)
    o = dense(h, 4, activation=softmax)
    loss cross_entropy(o, y)"""),
    "concat-sigmoid-bce": ("sparse[6]", "multilabel[3]", """\
    a = dense(x, 3, activation=sigmoid)
    b = dense(x, 2, activation=linear, bias=false)
    c = concat(a, b)
    g = dense(c, 5, activation=relu)
    o = dense(g, 3, activation=sigmoid)
    loss binary_cross_entropy(o, y)"""),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_gradient_matches_finite_differences(write_spec, name):
    input_kind, target_kind, body = SPECS[name]
    spec = write_spec(f"model g {{\n    input x: {input_kind}\n    target y: {target_kind}\n{body}\n"
                      "    optimizer sgd(learning_rate=1)\n    train { batch_size = 8, seed = 5 }\n}\n")
    model = boltc.load(spec, real_type="double")
    plan = model.plan
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, plan.inputs[0].dim))
    x[rng.random(x.shape) < 0.3] = 0
    features = sp.csr_matrix(x.astype(np.float32)) if input_kind.startswith("sparse") else x.astype(np.float32)
    labels = [[int(v)] for v in rng.integers(0, plan.target_dim, size=8)]
    data = from_arrays(features, labels, n_features=plan.inputs[0].dim, n_labels=plan.target_dim)

    params = model.parameters()
    for array in params.values():  # make ReLU kinks unlikely to sit within eps of a pre-activation
        array += rng.normal(scale=0.3, size=array.shape)
    start = {k: v.copy() for k, v in params.items()}

    def loss() -> float:
        return model.evaluate(data, ["loss"])["loss"]

    eps = 1e-6
    numeric = {}
    for key, array in params.items():
        grad = np.zeros_like(array)
        flat, flat_grad = array.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + eps
            up = loss()
            flat[i] = saved - eps
            down = loss()
            flat[i] = saved
            flat_grad[i] = (up - down) / (2 * eps)
        numeric[key] = grad

    model.fit(data, epochs=1)
    for key in params:
        computed = start[key] - params[key]
        np.testing.assert_allclose(computed, numeric[key], rtol=1e-5, atol=1e-8, err_msg=key)
