"""A Model's file: its arrays (parameters, optimizer state, hash functions) and what it learned besides them (label
names, history and neighbour state, input statistics, the sparse-inference check), written atomically through
``boltc.checkpoint``; restoring checks every value before any of it reaches the compiled code (``saved_contents``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from boltc import __version__, checkpoint, saved_contents
from boltc.columns import HistoryState, NodeStore
from boltc.data import Scaling
from boltc.diagnostics import ModelFileError, UsageError
from boltc.training import RebuildSchedule, scheduled_rebuild, tables_frozen

if TYPE_CHECKING:
    from boltc.model import Model

SCALING_PARTS = ("mean", "inverse_std")
SAVED_KINDS = ("parameter", "optimizer", "hash")  # tables are rebuilt from these, scratch is scratch
# a model for inference only: no optimizer state, and the LSH tables as they are (SAVED_TABLE_ROLES), so that
# loading maps the file and rebuilds nothing (frozen tables with labels inserted could not be rebuilt anyway)
INFERENCE_KINDS = ("parameter", "hash")
SAVED_TABLE_ROLES = ("table_offsets", "table_ids", "table_sizes")  # heavy_ids are found again from the weights


def save(model: Model, path: str | Path, inference_only: bool | None = None) -> None:
    """Write parameters and optimizer state; ``boltc.load_model`` restores the model and can resume training.
    ``inference_only`` (default: as the model was loaded) leaves the optimizer state out and keeps the LSH tables:
    a smaller file that loads by mapping it and predicts exactly as this model does, but cannot train."""
    inference_only = model.inference_only if inference_only is None else inference_only
    if model.inference_only and not inference_only:
        raise UsageError(f"model '{model.plan.model_name}' was loaded from a file saved for inference only: it has "
                         "no optimizer state to save (save it with inference_only=True)")
    tables = _saves_tables(model, inference_only)
    header = {
        "boltc_version": __version__,
        "model_name": model.plan.model_name,
        "spec_path": model.plan.spec_path,
        "spec_source": model.plan.spec_source,
        "real_type": model.plan.real_type,
        "step": model.step,
        "epochs_trained": model.epochs_trained,
        "learning_rate": model.learning_rate,
        # values boltc tune measured: the plan, and so the buffers, depend on them
        "measured": {str(index): dataclasses.asdict(value) for index, value in model.plan.measured.items()},
        "label_names": list(model.label_names) if model.label_names is not None else None,
        # what the training data said of the spec's auto sizes: the plan, and so the code, depend on them
        "learned": model.plan.learned.as_json() if model.plan.learned is not None else None,
        "sparse_check": model.sparse_check,
        "inference_only": inference_only,
        "tables": tables,
        # where the tables' rebuild schedule stands: a loaded model goes on training as this one would
        "rebuild_schedule": dataclasses.asdict(model.rebuild_schedule),
    }
    kept = {f"history.{index}.{part}": getattr(state, part) for index, state in model.histories.items()
            for part in ("users", "indptr", "items")}
    kept.update({f"nodes.{index}.{part}": getattr(store, part) for index, store in model.node_stores.items()
                 for part in NodeStore.PARTS})
    kept.update({f"scaling.{index}.{part}": getattr(scale, part)
                 for index, scale in (model.input_scaling or {}).items() for part in SCALING_PARTS})
    arrays = {spec.name: model.arrays[spec.name] for spec in saved_buffers(model, inference_only, tables)}
    checkpoint.write_model_file(path, header, {**arrays, **kept})


def _check_node_store(model: Model, path: str, index: int, store: NodeStore) -> None:
    """A saved node store's offsets and feature ids, which the neighbour aggregation reads in C."""
    nodes = len(store.nodes)
    saved_contents.check_ragged(path, f"nodes.{index}.feature_indptr", store.feature_indptr, nodes,
                                len(store.feature_indices))
    saved_contents.check_ragged(path, f"nodes.{index}.link_indptr", store.link_indptr, nodes, len(store.links))
    if len(store.feature_values) != len(store.feature_indices) or not np.isfinite(store.feature_values).all():
        raise ModelFileError(path, f"array 'nodes.{index}.feature_values' does not match its feature ids")
    source = model.plan.inputs[model.plan.inputs[index].column.source]
    saved_contents.check_ids(path, f"nodes.{index}.feature_indices", store.feature_indices, source.dim,
                             f"input '{source.name}''s features")


def _restored_scaling(model: Model, path: str, arrays: dict[str, np.ndarray]) -> dict[int, Scaling] | None:
    """A trained model's standardisation statistics: every standardised input must have them, of its width. A
    file with none is an untrained model's (learned at its first fit) or one trained before boltc standardised
    inputs (its weights expect raw ones)."""
    if not any(name.startswith("scaling.") for name in arrays):
        return {} if model.step else None
    scaling = {}
    for model_input in model.plan.inputs:
        if not model_input.standardize:
            continue
        parts = [arrays.get(f"scaling.{model_input.index}.{part}") for part in SCALING_PARTS]
        if any(p is None or p.shape != (model_input.dim,) or p.dtype != np.float32 or not np.isfinite(p).all()
               for p in parts):
            raise ModelFileError(path, f"the file has no usable standardisation of input '{model_input.name}'")
        scaling[model_input.index] = Scaling(*parts)
    return scaling


def saved_arrays(model: Model) -> dict[str, np.ndarray]:
    """The arrays a model file holds: parameters, optimizer state and hash functions (tables are rebuilt unless
    they are frozen)."""
    return {spec.name: model.arrays[spec.name] for spec in saved_buffers(model, False, _saves_tables(model, False))}


def _saves_tables(model: Model, inference_only: bool) -> bool:
    """Whether a file keeps the LSH tables: for inference only (nothing is rebuilt when it loads), and where they
    are frozen (the labels inserted in them are in no rebuild)."""
    return bool(model.sparse_layers) and (inference_only or tables_frozen(model))


def saved_buffers(model: Model, inference_only: bool, tables: bool) -> list:
    kinds = INFERENCE_KINDS if inference_only else SAVED_KINDS
    return [spec for spec in model.buffers if spec.kind in kinds or
            tables and spec.kind == "table" and spec.role in SAVED_TABLE_ROLES]


def is_inference_only(path: str, header: dict) -> bool:
    flag = header.get("inference_only", False)
    if not isinstance(flag, bool):
        raise ModelFileError(path, "the file's inference_only flag is unreadable")
    return flag


def restore(model: Model, path: str, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """Fill this model from a model file's contents (its spec must have produced the same buffers); an
    inference-only file's arrays are taken where they lie (mapped by ``checkpoint.read_arrays``)."""
    inference_only = is_inference_only(path, header)
    tables = header.get("tables", inference_only)
    if not isinstance(tables, bool):
        raise ModelFileError(path, "the file's tables flag is unreadable")
    saved = saved_buffers(model, inference_only, tables)
    for spec in saved:
        if spec.name not in arrays:
            raise ModelFileError(path, f"the file has no array '{spec.name}': it was saved from another spec")
        stored = arrays[spec.name]
        if tuple(stored.shape) != spec.shape:
            raise ModelFileError(path, f"array '{spec.name}' has shape {tuple(stored.shape)}, the spec needs "
                                 f"{spec.shape}")
    saved_contents.check_buffers(path, model.plan, saved, arrays)
    if tables:
        saved_contents.check_tables(path, model.plan, arrays)
    if inference_only:
        model.compiled.adopt({spec.name: arrays[spec.name] for spec in saved})
        model.inference_only = True
    for spec in saved:
        if arrays[spec.name] is not model.arrays[spec.name]:  # not already read in place
            model.arrays[spec.name][...] = arrays[spec.name]
    try:
        model.step = int(header.get("step", 0))
        model.epochs_trained = int(header.get("epochs_trained", 0))
        rate = header.get("learning_rate", model.plan.learning_rate)
        model.learning_rate = None if rate is None else float(rate)
    except (TypeError, ValueError, OverflowError):
        raise ModelFileError(path, "the file's training state (step, epochs, learning rate) is unreadable") \
            from None
    names = header.get("label_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)
                              or len(names) > model.plan.target_dim):
        raise ModelFileError(path, "the file's label names are unreadable")
    model.label_names = tuple(names) if names is not None else None
    check = header.get("sparse_check")
    if check is not None and not (isinstance(check, dict) and {"rows", "dense_top1_recall"} <= set(check)
                                  and all(isinstance(v, (int, float)) and math.isfinite(v)
                                          for v in check.values())):
        raise ModelFileError(path, "the file's sparse inference check is unreadable")
    model.sparse_check = check
    chosen = int((check or {}).get("lsh_candidates", -1))
    model.lsh_candidates = None if chosen < 0 else chosen
    model.histories = {
        index: HistoryState(*(arrays[f"history.{index}.{part}"] for part in ("users", "indptr", "items")))
        for index, i_plan in enumerate(model.plan.inputs)
        if i_plan.column is not None and f"history.{index}.users" in arrays}
    for index, history in model.histories.items():
        saved_contents.check_ragged(path, f"history.{index}.indptr", history.indptr, len(history.users),
                                    len(history.items))
    model.history_before = {}
    model.node_stores = {index: NodeStore(*(arrays[f"nodes.{index}.{part}"] for part in NodeStore.PARTS))
                        for index in range(len(model.plan.inputs)) if f"nodes.{index}.nodes" in arrays}
    for index, store in model.node_stores.items():
        _check_node_store(model, path, index, store)
    model.input_scaling = _restored_scaling(model, path, arrays)
    schedule = header.get("rebuild_schedule")
    if schedule is None:  # written before files kept it: the saved hash functions are kept, this is rebuild one
        model.rebuild_schedule = RebuildSchedule()
        scheduled_rebuild(model)
        return
    model.rebuild_schedule = _restored_schedule(path, schedule)
    if tables:
        model.tables_step = model.step
    else:  # tables of the saved weights, as the end of the fit that saved them left them
        model.rebuild()


def _restored_schedule(path: str, saved) -> RebuildSchedule:
    try:
        schedule = RebuildSchedule(float(saved["period"]), int(saved["batches_left"]), int(saved["rebuilds"]))
    except (TypeError, ValueError, KeyError, OverflowError):
        schedule = None
    if schedule is None or not (math.isfinite(schedule.period) and schedule.period >= 0 and
                                schedule.batches_left >= 0 and schedule.rebuilds >= 0):
        raise ModelFileError(path, "the file's rebuild schedule is unreadable")
    return schedule
