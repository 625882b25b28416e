"""Ranking metrics against hand-worked multi-label cases: precision@k divides by k, recall@k by the row's own label
count (rows without labels left out of recall), accuracy is the first prediction's hit; and evaluate() feeds them
the right rows."""

from __future__ import annotations

import numpy as np
import pytest

import boltc
from boltc import metrics as ranking

# four rows, six outputs; the third prediction of each row is the least confident
LABELS = [[1, 4], [0], [2, 3, 5], []]
TOP3 = np.array([[4, 2, 1],   # hits T F T
                 [3, 0, 2],   # hits F T F
                 [5, 3, 1],   # hits T T F
                 [0, 1, 2]],  # no labels, no hits
                dtype=np.int32)
# worked by hand from the rows above
EXPECTED = {
    "accuracy": (1 + 0 + 1 + 0) / 4,
    "precision@1": (1 + 0 + 1 + 0) / 4,
    "precision@2": (1 / 2 + 1 / 2 + 2 / 2 + 0) / 4,
    "precision@3": (2 / 3 + 1 / 3 + 2 / 3 + 0) / 4,
    "recall@1": (1 / 2 + 0 + 1 / 3) / 3,  # three labelled rows
    "recall@2": (1 / 2 + 1 / 1 + 2 / 3) / 3,
    "recall@3": (2 / 2 + 1 / 1 + 2 / 3) / 3,
}


def _csr(labels: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.cumsum([0] + [len(row) for row in labels]).astype(np.int64)
    ids = np.array([label for row in labels for label in row], dtype=np.int32)
    return indptr, ids


def test_ranking_metrics_match_hand_worked_multi_label_rows():
    indptr, ids = _csr(LABELS)
    rows = np.arange(len(LABELS), dtype=np.int64)
    hit_matrix = ranking.hits(TOP3, indptr, ids, rows, 6)
    np.testing.assert_array_equal(hit_matrix, [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    results = ranking.compute(list(EXPECTED), hit_matrix, ranking.label_counts(indptr, rows), 0.0)
    assert results == pytest.approx(EXPECTED, abs=1e-12)


def test_metrics_of_a_subset_of_rows_use_those_rows_labels():
    indptr, ids = _csr(LABELS)
    rows = np.array([2, 0], dtype=np.int64)
    hit_matrix = ranking.hits(TOP3[[2, 0]], indptr, ids, rows, 6)
    results = ranking.compute(["precision@3", "recall@2"], hit_matrix, ranking.label_counts(indptr, rows), 0.0)
    assert results == pytest.approx({"precision@3": (2 / 3 + 2 / 3) / 2, "recall@2": (2 / 3 + 1 / 2) / 2})


MULTILABEL = """\
model ranked {
    input  x: dense[4]
    target y: multilabel[6]
    o = dense(x, 6, activation=softmax)
    loss cross_entropy(o, y)
    optimizer adam(learning_rate=0.01)
    train { batch_size = 4, epochs = 1 }
    metrics precision@1
}
"""


def test_evaluate_scores_the_models_ranking_against_each_rows_labels(write_spec, monkeypatch):
    model = boltc.load(write_spec(MULTILABEL), tune=False)
    x = np.zeros((len(LABELS), 4), dtype=np.float32)
    infer = model.infer

    def ranked(dataset, top_k, *args, **kwargs):
        ids, scores, loss = infer(dataset, top_k, *args, **kwargs)
        assert ids.shape == (len(LABELS), top_k) and top_k == 3  # the largest k asked for
        return TOP3.copy(), scores, loss

    monkeypatch.setattr(model, "infer", ranked)
    results = model.evaluate((x, LABELS), list(EXPECTED))
    assert results == pytest.approx(EXPECTED, abs=1e-12)
