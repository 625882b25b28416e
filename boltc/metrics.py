"""Ranking metrics from top-k predictions and CSR labels, vectorised with numpy."""

from __future__ import annotations

import numpy as np


def parse_metric(label: str) -> tuple[str, int | None]:
    """``precision@5`` -> (``precision``, 5); ``accuracy`` -> (``accuracy``, None)."""
    name, _, k = label.partition("@")
    return name, int(k) if k else None


METRICS_WITH_K = ("precision", "recall")
METRICS_WITHOUT_K = ("accuracy", "loss")


def invalid(labels: tuple[str, ...] | list[str], n_outputs: int) -> str:
    """Why these metric names cannot be computed for a model with n_outputs outputs, or an empty string."""
    for label in labels:
        name, _, k = str(label).partition("@")
        if name in METRICS_WITHOUT_K and not k:
            continue
        if name in METRICS_WITH_K and k.isdigit() and 1 <= int(k) <= n_outputs:
            continue
        return (f"cannot compute metric '{label}': use accuracy, loss, or precision@k / recall@k with k from 1 to "
                f"{n_outputs}")
    return ""


def largest_k(labels: tuple[str, ...] | list[str]) -> int:
    return max([k or 1 for _, k in map(parse_metric, labels)] + [1])


def hits(top_ids: np.ndarray, label_indptr: np.ndarray, label_ids: np.ndarray, row_ids: np.ndarray,
         n_outputs: int) -> np.ndarray:
    """hits[r, j] is True when the j-th prediction for batch row r is one of that data-set row's labels."""
    rows = top_ids.shape[0]
    starts, ends = label_indptr[row_ids], label_indptr[row_ids + 1]
    counts = (ends - starts).astype(np.int64)
    owner = np.repeat(np.arange(rows, dtype=np.int64), counts)
    # every label position of the selected rows, without a Python loop over rows
    first_of_row = np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.arange(int(counts.sum()), dtype=np.int64) - first_of_row + np.repeat(starts, counts)
    label_keys = np.unique(owner * n_outputs + label_ids[positions].astype(np.int64))
    predicted = np.arange(rows, dtype=np.int64)[:, None] * n_outputs + top_ids.astype(np.int64)
    return np.isin(predicted, label_keys)


def label_counts(label_indptr: np.ndarray, row_ids: np.ndarray) -> np.ndarray:
    return (label_indptr[row_ids + 1] - label_indptr[row_ids]).astype(np.int64)


def compute(labels: tuple[str, ...] | list[str], hit_matrix: np.ndarray, counts: np.ndarray,
            loss_sum: float) -> dict[str, float]:
    """Every requested metric over the rows of ``hit_matrix`` (rows x largest k)."""
    rows = hit_matrix.shape[0]
    results: dict[str, float] = {}
    for label in labels:
        name, k = parse_metric(label)
        if name == "loss":
            results[label] = loss_sum / rows if rows else float("nan")
        elif name == "accuracy":
            results[label] = float(hit_matrix[:, 0].mean()) if rows else float("nan")
        elif name == "precision":
            results[label] = float(hit_matrix[:, :k].sum(axis=1).mean() / k) if rows else float("nan")
        elif name == "recall":
            labelled = counts > 0
            found = hit_matrix[labelled, :k].sum(axis=1)
            results[label] = float((found / counts[labelled]).mean()) if labelled.any() else float("nan")
        else:
            raise ValueError(f"unknown metric {label!r}")
    return results
