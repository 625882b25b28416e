"""Whether sparse inference keeps dense inference's accuracy, measured after training: fit() checks how many LSH
candidates each row needs on its validation rows, and a model keeps the check (and warns when it is low).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from boltc import metrics as ranking
from boltc.abi import buffer_name
from boltc.data import Dataset, take_rows
from boltc.diagnostics import UsageError

if TYPE_CHECKING:
    from boltc.model import Model

# fit() checks sparse inference on this many validation rows at most: dense inference of each costs a full pass over
# the output layer's weights
SPARSE_CHECK_ROWS = 1000
# sparse inference keeps dense accuracy where its candidates hold dense inference's top-1 for this share of the
# checked rows, or where its value of the spec's first metric on them is at most SPARSE_METRIC_KEPT below dense's:
# with several labels per row a missed top-1 is often made good by another right label (`python -m bench amazon`:
# the heavy rows alone held dense's top-1 for 90.4% of the validation rows, and scored precision@1 0.870 on them
# against dense's 0.859). Failing both even with every LSH candidate there is room for, sparse inference scores every
# output instead (dense accuracy at dense speed, and says so).
SPARSE_RECALL_KEPT = 0.99
SPARSE_METRIC_KEPT = 0.005  # half of the 0.01 a user may lose: the checked rows are not the rows predicted
# the shares of the plan's room for LSH candidates that fit() tries, fewest first, for sparse inference
LSH_CANDIDATE_LADDER = (0.0, 0.125, 0.25, 0.5, 1.0)


def sparse_kept(check: dict[str, float]) -> bool:
    """Whether a sparse-inference check (``choose_lsh_candidates``) found its candidates keep dense accuracy."""
    if check["dense_top1_recall"] >= SPARSE_RECALL_KEPT:
        return True
    return "sparse_metric" in check and check["sparse_metric"] >= check["dense_metric"] - SPARSE_METRIC_KEPT


def choose_lsh_candidates(model: Model, data, rows_most: int = SPARSE_CHECK_ROWS) -> dict[str, float]:
    """The fewest LSH candidates per row (of a ladder of shares of the plan's room) with which sparse inference
    keeps dense accuracy on (at most `rows_most` of) `data` (``sparse_kept``); sets ``lsh_candidates`` and
    ``sparse_check`` (its ``measure_sparse_recall``) and returns the check. Where the heavy rows hold the answers
    (labels of Zipf-like frequencies) the hashing's candidates, gathered row by row, cost more than they find.
    Where no count keeps it (flat label frequencies: the heavy rows hold little and the hashing misses the rest),
    sparse inference scores every output (``sparse_scores_all``, ``scores_all`` in the check): losing a point of
    precision without a word is worse than dense speed with one."""
    model.sparse_check = None  # measured afresh: an earlier check must not turn the measured sparse scoring dense
    dataset = _checked_dataset(model, data, rows_most)
    metric = _checked_metric(model, dataset)
    # one dense pass (a full pass over the output layer per row) gives both dense's top-1 and its metric
    dense_ids = model.predict(dataset, top_k=min(ranking.largest_k([metric] if metric else []),
                                                model.plan.output.out_dim))[0]
    dense_top = dense_ids[:, :1]
    dense_value = model.ranked(dataset, dense_ids, [metric])[metric] if metric else None
    room = model.plan.output.lsh.inference_active - model.plan.output.lsh.heavy
    for share in LSH_CANDIDATE_LADDER:
        model.lsh_candidates = None if share == 1 else int(share * room)
        check = _sparse_recall(model, dataset, dense_top)
        if metric:
            check.update(dense_metric=dense_value,
                         sparse_metric=model.evaluate(dataset, [metric], progress=False, sparse=True)[metric])
        if sparse_kept(check):
            break
    model.sparse_check = {**check, "scores_all": float(not sparse_kept(check)),
                         "lsh_candidates": float(-1 if model.lsh_candidates is None else model.lsh_candidates)}
    return model.sparse_check


def _checked_metric(model: Model, dataset: Dataset) -> str | None:
    """The metric sparse inference is held to on labelled checked rows: the spec's first, where it ranks."""
    metric = model.plan.metrics[0] if model.plan.metrics else None
    return metric if metric and metric != "loss" and dataset.label_indptr is not None else None


def _sparse_recall(model: Model, dataset: Dataset, dense_top: np.ndarray) -> dict[str, float]:
    ids, counts = model.candidate_sets(dataset)
    found = (ids == dense_top).any(axis=1)
    return {"rows": float(dataset.n_rows), "dense_top1_recall": float(found.mean()) if len(found) else 1.0,
            "mean_candidates": float(counts.mean()) if len(counts) else 0.0}


def measure_sparse_recall(model: Model, data, rows_most: int = SPARSE_CHECK_ROWS) -> dict[str, float]:
    """How often sparse inference scores the neuron dense inference ranks first, on (at most `rows_most` of)
    `data`: fit() measures it on its validation rows, a saved model keeps it, ``predict --sparse`` warns when it
    is low."""
    return _sparse_recall(model, *_checked_rows(model, data, rows_most))


def _checked_rows(model: Model, data, rows_most: int) -> tuple[Dataset, np.ndarray]:
    """At most `rows_most` rows of `data`, and dense inference's top-1 for each."""
    dataset = _checked_dataset(model, data, rows_most)
    return dataset, model.predict(dataset, top_k=1)[0]


def _checked_dataset(model: Model, data, rows_most: int) -> Dataset:
    dataset = model.prepare_data(data, labelled=False)
    return take_rows(dataset, np.arange(rows_most)) if dataset.n_rows > rows_most else dataset


def candidate_sets(model: Model, data) -> tuple[np.ndarray, np.ndarray]:
    """Model.candidate_sets: the output layer's sparse-inference sets of each row, read back after each batch."""
    if not model.sparse_output:
        raise UsageError(f"model '{model.plan.model_name}' has no LSH-sparse output layer")
    dataset = model.prepare_data(data, labelled=False)
    layer = model.plan.output
    width = layer.lsh.inference_active
    ids = np.full((dataset.n_rows, width), -1, dtype=np.int32)
    counts = np.zeros(dataset.n_rows, dtype=np.int32)
    active = model.arrays[buffer_name(layer.index, "active")]
    active_counts = model.arrays[buffer_name(layer.index, "active_counts")]

    def keep(start: int, rows: int) -> None:
        counts[start:start + rows] = active_counts[:rows]
        valid = np.arange(width) < active_counts[:rows, None]  # past a row's count: the last call's leftovers
        ids[start:start + rows] = np.where(valid, active[:rows], -1)

    model.infer(dataset, 1, False, "candidates", True, after_batch=keep)
    return ids, counts


def scores_sparsely(model: Model, sparse: bool) -> bool:
    """Whether a call that asks for sparse inference scores the heavy rows and LSH candidates only: not where the
    last fit measured that they miss dense inference's best (it scores every output then). Warns once per model
    where sparse inference is slow or may lose accuracy: either would otherwise go unnoticed."""
    check = model.sparse_check
    if not sparse or model.sparse_warned or not check or sparse_kept(check):
        return sparse and not model.sparse_scores_all
    model.sparse_warned = True
    found = f"held dense inference's best output for only {check['dense_top1_recall']:.1%} of " \
            f"{int(check['rows']):,} validation rows" + (
                f" and scored {model.plan.metrics[0]} {check['sparse_metric']:.4f} on them against dense's "
                f"{check['dense_metric']:.4f}" if "sparse_metric" in check else "")
    if model.sparse_scores_all:
        warnings.warn(f"sparse inference scores every output of this model, at dense inference's speed: after "
                      f"training, its LSH candidates {found}, so scoring them alone would lose accuracy",
                      stacklevel=3)
        return False
    warnings.warn(f"after training, sparse inference's candidates {found}: it may be less accurate than dense "
                  "inference; predict without --sparse / sparse=True to keep dense accuracy", stacklevel=3)
    return True
