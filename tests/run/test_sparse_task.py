"""A learnable extreme-classification task with an LSH-sparse output: training reaches a P@1 bar in a few epochs
and sparse inference stays within a few points of dense inference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import boltc
from boltc.data import from_arrays

SPEC = """\
model task {
    input  x: sparse[2000]
    target y: multilabel[1000]
    h = dense(x, 128, activation=relu)
    o = dense(h, 1000, activation=softmax, sparsity=0.05)
    loss cross_entropy(o, y)
    optimizer adam(learning_rate=0.005)
    train { batch_size = 64, epochs = 3, seed = 1 }
    metrics precision@1, precision@5
}
"""
FEATURES, LABELS = 2000, 1000


def documents(rows: int, seed: int):
    """Each label owns six features; a row has one or two labels, most of their features and two noise features."""
    prototypes = np.random.default_rng(0).integers(0, FEATURES, size=(LABELS, 6))
    rng = np.random.default_rng(seed)
    labels = [sorted(set(rng.integers(0, LABELS, size=rng.integers(1, 3)).tolist())) for _ in range(rows)]
    indices, indptr = [], [0]
    for row_labels in labels:
        features = {int(f) for label in row_labels for f in prototypes[label][rng.random(6) < 0.7]}
        features |= set(rng.integers(0, FEATURES, size=2).tolist())
        indices += sorted(features)
        indptr.append(len(indices))
    x = sp.csr_matrix((np.ones(len(indices), np.float32), np.array(indices), np.array(indptr)),
                      shape=(rows, FEATURES))
    return from_arrays(x, labels, n_features=FEATURES, n_labels=LABELS)


@pytest.mark.parametrize("loss, moments", [("cross_entropy", "fp32"), ("binary_cross_entropy", "fp32"),
                                           ("cross_entropy", "bf16")])
def test_sparse_training_learns_and_sparse_inference_keeps_up(write_spec, loss, moments):
    spec = SPEC.replace("adam(learning_rate=0.005)", f"adam(learning_rate=0.005, moments={moments})")
    if loss == "binary_cross_entropy":  # per-neuron sigmoids move slower than a softmax at the same rate
        spec = spec.replace("softmax", "sigmoid").replace("cross_entropy", loss).replace("=0.005", "=0.02")
    model = boltc.load(write_spec(spec, "task.bolt"))
    assert model.plan.output.lsh.active == 50
    train, test = documents(5000, seed=1), documents(1000, seed=2)
    model.fit(train)
    dense = model.evaluate(test, ["precision@1", "precision@5"])
    sparse = model.evaluate(test, ["precision@1", "precision@5"], sparse=True)
    assert dense["precision@1"] > 0.8
    assert sparse["precision@1"] > dense["precision@1"] - 0.03
