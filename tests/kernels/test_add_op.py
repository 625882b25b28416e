"""The add op (boltc/ops/add.py, templates/add.c.j2): the element-wise sum of layers, against the numpy reference
forward and backward, and the checker's refusals with their positions."""

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
RESIDUAL = """\
model residual {
    input x: dense[9, standardize=false]
    target y: classes[5]
    a = dense(x, 8, activation=tanh)
    b = dense(a, 8, activation=relu)
    s = add(a, b, b)
    o = dense(s, 5, activation=softmax)
    loss cross_entropy(o, y)
    optimizer adam(learning_rate=0.01)
    train { batch_size = 16, seed = 2 }
}
"""


def test_a_residual_sum_trains_as_the_reference_network(write_spec):
    """a feeds the sum directly and through b (twice): its gradient is the sum of all three paths."""
    model = boltc.load(write_spec(RESIDUAL), tune=False)
    assert [layer.op for layer in model.plan.layers] == ["fc", "fc", "add", "fc"]
    rng = np.random.default_rng(6)
    x = rng.normal(size=(16, 9)).astype(np.float32)
    labels = [[int(c)] for c in rng.integers(0, 5, size=16)]
    reference.assert_dense_predictions_match(model, x, RTOL, ATOL)
    reference.assert_one_adam_step_matches(model, x, labels, RTOL, ATOL)


def test_add_refuses_inputs_and_sources_of_other_widths(write_spec):
    spec = RESIDUAL.replace("    s = add(a, b, b)\n", "    c = dense(x, 4)\n    s = add(a, c, x)\n") \
        .replace("o = dense(s, 5", "o = dense(s, 5")
    with pytest.raises(SpecErrors) as caught:
        boltc.load(write_spec(spec), tune=False)
    assert [(e.span.line, e.span.column, e.message) for e in caught.value.errors] == [
        (7, 9, "add() sums layers of one width; 'a' has 8, 'c' has 4, 'x' has 9"),
        (7, 19, "add() sums layers; feed input 'x' to a dense layer first"),
    ]
