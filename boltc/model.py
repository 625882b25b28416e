"""The trained-model object users hold: fit, evaluate, predict, save.

It owns every array the generated code works on (allocated once, from the buffer table emit produced) and calls
the compiled library once per batch. It sees only the ``Plan``, the ``CompiledLibrary`` and the buffer table,
never the spec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import operator
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from boltc import __version__, checkpoint, rates, saved_contents
from boltc import metrics as ranking
from boltc.build import CompiledLibrary
from boltc.columns import (HistoryKeys, HistoryState, LinkKeys, NodeStore, history_features, neighbour_features,
                           read_columns)
from boltc.data import (Dataset, FeatureMatrix, Scaling, apply_scaling, data_fingerprint, from_arrays,
                        learn_scaling, read_xmc, take_rows)
from boltc.abi import SPARSE_PROFILE_FIELDS, BufferSpec, buffer_name, status_message
from boltc.diagnostics import ModelFileError, UsageError
from boltc.hashing import family as hash_family
from boltc.machine import probe
from boltc.plan import PLATEAU_DECAY, UNMEASURED_LEARNING_RATE, Plan
from boltc.progress import Progress


def _as_csr(matrix: FeatureMatrix) -> FeatureMatrix:
    rows, columns = np.nonzero(matrix.dense)
    indptr = np.zeros(matrix.dense.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=matrix.dense.shape[0]), out=indptr[1:])
    return FeatureMatrix(matrix.dim, indptr=indptr, indices=columns.astype(np.int32),
                         values=np.ascontiguousarray(matrix.dense[rows, columns], dtype=np.float32))


def _check_ids(where: str, what: str, ids: np.ndarray | None, limit: int) -> None:
    """Ids index arrays in C: one out of range is refused here, whatever built the data set."""
    if ids is not None and len(ids) and (int(ids.max()) >= limit or int(ids.min()) < 0):
        bad = int(ids.max()) if int(ids.max()) >= limit else int(ids.min())
        raise UsageError(f"{where}: {what} id {bad} is outside 0..{limit - 1} of this model")


class TrainingError(UsageError):
    """Training cannot go on: a batch's loss was not finite. That batch made no update, so the model keeps the
    parameters it had before it."""


@contextlib.contextmanager
def interrupts_deferred():
    """Within, Ctrl-C (SIGINT) only sets the yielded event, for the training loop to stop at a batch boundary: a
    KeyboardInterrupt raised between a batch's update and its step count would leave Adam's step behind the
    parameters. Python delivers signals to the main thread only; elsewhere, and where the program installed a
    SIGINT handler of its own, nothing changes."""
    interrupted = threading.Event()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        raise KeyboardInterrupt


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    seconds: float
    samples: int
    validation: dict[str, float] = field(default_factory=dict)  # on the rows training chooses on
    test: dict[str, float] = field(default_factory=dict)  # on fit()'s `test` rows, for the record only


@dataclass
class History:
    epochs: list[EpochRecord] = field(default_factory=list)
    wall_seconds: float = 0.0  # the whole fit(), including the final table rebuild, excluding validation
    validation_seconds: float = 0.0  # evaluating the validation (and test) rows after each epoch
    validation_rows: int = 0
    validation_source: str = "none"  # where the validation rows came from, in words
    monitor: str = "loss"  # the metric that chooses the best epoch (the spec's first)
    best_epoch: int = 0  # 0: no validation
    best_metric: float = float("nan")
    stopped_early: bool = False  # epochs=auto stopped before its cap
    restored_epoch: int = 0  # the epoch whose parameters the model ended with, when not the last
    epochs_without_improvement: int = 0  # over the whole run: epochs=auto stops at the spec's patience
    returns_to_best: int = 0  # epochs=auto: worse epochs after which training went on from the best epoch's parameters
    learning_rate: float = 0.0

    def improved_by(self, record: EpochRecord) -> bool:
        value = record.validation[self.monitor]
        if not self.best_epoch:
            return math.isfinite(value)
        return value < self.best_metric if self.monitor == "loss" else value > self.best_metric

    @property
    def train_seconds(self) -> float:
        return self.wall_seconds or sum(e.seconds for e in self.epochs)

    @property
    def samples_per_second(self) -> float:
        samples = sum(e.samples for e in self.epochs)
        return samples / self.train_seconds if self.train_seconds > 0 else 0.0


SCALING_PARTS = ("mean", "inverse_std")
HOLDOUT_STREAM = 7919  # the held-out validation rows' random stream, apart from the epochs' orders
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
SAVED_KINDS = ("parameter", "optimizer", "hash")  # tables are rebuilt from these, scratch is scratch
# a gathering layer's arrays with a row per input feature, which training changes only in the rows of features seen
ROW_TRAINED_ROLES = ("weights", "weights_m", "weights_v")


def sparse_kept(check: dict[str, float]) -> bool:
    """Whether a sparse-inference check (``Model.choose_lsh_candidates``) found its candidates keep dense accuracy."""
    if check["dense_top1_recall"] >= SPARSE_RECALL_KEPT:
        return True
    return "sparse_metric" in check and check["sparse_metric"] >= check["dense_metric"] - SPARSE_METRIC_KEPT


@dataclass
class _FreshTables:
    """The hash functions and tables of freshly initialised weights, and the rebuild schedule's state with them."""

    arrays: dict[str, np.ndarray]
    schedule: tuple[int, float, int]


class _Feed:
    """The C view of one data set: input descriptors and a batch struct that are filled once and reused."""

    def __init__(self, ffi, dataset: Dataset, batch_size: int, threads: int):
        self.dataset = dataset
        self.keep: list[Any] = []  # arrays whose memory the C structs point into
        self.inputs = ffi.new("bolt_input[]", max(1, len(dataset.features)))
        for slot, matrix in zip(self.inputs, dataset.features):
            if matrix.dense is not None:
                slot.dense = self._pointer(ffi, "float *", matrix.dense)
            else:
                slot.indptr = self._pointer(ffi, "int64_t *", matrix.indptr)
                slot.indices = self._pointer(ffi, "int32_t *", matrix.indices)
                slot.values = self._pointer(ffi, "float *", matrix.values)
        self.row_ids = np.zeros(batch_size, dtype=np.int64)
        self.threads = threads
        self.batch = ffi.new("bolt_batch *")
        self.batch.threads = threads
        self.batch.lsh_candidates = -1  # as many as the plan has room for
        self.batch.inputs = self.inputs
        self.batch.row_ids = self._pointer(ffi, "int64_t *", self.row_ids)
        if dataset.label_ids is not None:
            self.batch.label_indptr = self._pointer(ffi, "int64_t *", dataset.label_indptr)
            self.batch.label_ids = self._pointer(ffi, "int32_t *", dataset.label_ids)

    def _pointer(self, ffi, ctype: str, array: np.ndarray):
        self.keep.append(array)
        return ffi.cast(ctype, ffi.from_buffer(array))

    def select(self, rows: np.ndarray) -> None:
        self.row_ids[: len(rows)] = rows
        self.batch.rows = len(rows)
        # most loops split rows over threads: more threads than rows would only wait at barriers
        self.batch.threads = min(self.threads, len(rows))


def dataset_for(plan: Plan, data, labelled: bool, skip_bad_rows: bool = False) -> Dataset:
    """A data file, Dataset or arrays as a Dataset checked against the inputs and target of `plan`; a file's bad
    rows are left out and counted with ``skip_bad_rows`` (``read_xmc``)."""
    dims = [i.dim for i in plan.inputs]
    names = [i.name for i in plan.inputs]
    if len(dims) > 1 and not isinstance(data, (Dataset, dict, tuple)) or \
            isinstance(data, tuple) and len(dims) > 1 and not isinstance(data[0], dict):
        raise UsageError(f"model '{plan.model_name}' has {len(dims)} inputs ({', '.join(names)}): pass the "
                         "features as a dict {name: array}")
    if isinstance(data, Dataset):
        dataset = data
    elif isinstance(data, (str, Path)):
        if len(dims) != 1:
            raise UsageError(f"model '{plan.model_name}' has {len(dims)} inputs; a data file feeds one, "
                             "pass arrays instead")
        dataset = read_xmc(data, n_features=dims[0], n_labels=plan.target_dim, skip_bad_rows=skip_bad_rows)
    else:
        features, labels = data if isinstance(data, tuple) else (data, None)
        dataset = from_arrays(features, labels, n_features=dims if len(dims) > 1 else dims[0],
                              n_labels=plan.target_dim, names=names if len(dims) > 1 else None)
    if len(dataset.features) != len(dims) or any(m.dim != d for m, d in zip(dataset.features, dims)):
        got = [m.dim for m in dataset.features]
        raise UsageError(f"data has feature dimensions {got}, model '{plan.model_name}' expects {dims}")
    where = dataset.path or "the data"
    if labelled and dataset.label_ids is None:
        raise UsageError(f"{where} has no labels")
    _check_ids(where, "label", dataset.label_ids, plan.target_dim)
    for matrix, model_input in zip(dataset.features, plan.inputs):
        _check_ids(where, f"feature of input '{model_input.name}'", matrix.indices, model_input.dim)
    gather_inputs = {layer.sources[0].index for layer in plan.layers
                     if layer.kernel == "gather" and layer.sources[0].is_input}
    if any(dataset.features[i].dense is not None for i in gather_inputs):
        # sparse-input kernels read CSR rows: a dense array for such an input is converted once, here
        features = tuple(_as_csr(m) if i in gather_inputs else m for i, m in enumerate(dataset.features))
        dataset = dataclasses.replace(dataset, features=features)
    return dataset


class Model:
    def __init__(self, plan: Plan, library: CompiledLibrary, buffers: tuple[BufferSpec, ...],
                 initialize: bool = True):
        """``initialize=False`` leaves every array zero, for a caller that fills them and then calls
        ``reconstruct`` or ``restore``."""
        self.plan = plan
        self.library = library
        self.buffers = buffers
        self.real = np.dtype(np.float32 if plan.real_type == "float" else np.float64)
        self.arrays: dict[str, np.ndarray] = {
            spec.name: np.zeros(spec.shape, dtype=self.real if spec.dtype == "real" else np.dtype(spec.dtype))
            for spec in buffers}
        self.sparse_layers = [layer for layer in plan.layers if layer.lsh is not None]
        self.sparse_output = plan.output.lsh is not None  # sparse inference, its candidate check and tuning
        # consumers of a sparse hidden layer group its active units by neuron as they group a sparse input's features
        hidden = [layer for layer in self.sparse_layers if layer.kernel == "sparse_hidden"]
        self._slot_ids = max([i.dim for i in plan.inputs] + [layer.out_dim for layer in hidden])
        self._least_workspace = max([plan.batch_size] + [plan.batch_size * layer.lsh.active for layer in hidden])
        self._training_reads_tables = any(layer.lsh.hashes_in_training for layer in self.sparse_layers)
        ffi = library.ffi
        self._table = ffi.new("void *[]", len(buffers))
        for spec in buffers:
            self._table[spec.slot] = ffi.cast("void *", ffi.from_buffer(self.arrays[spec.name]))
        self._step_struct = ffi.new("bolt_step *")
        self._loss = ffi.new("double *")
        self._workspace = ffi.new("bolt_workspace *")
        self._workspace_arrays: dict[str, np.ndarray] = {}
        self._grow_workspace(self._least_workspace)
        self._lock = threading.Lock()  # the scratch buffers are shared: one C call at a time per model
        self.step = 0
        self.epochs_trained = 0
        self.learning_rate = plan.learning_rate  # None until the first fit measures it (learning_rate=auto)
        self.measure_learning_rate = True  # False (boltc.load(tune=False)): auto is the optimizer's usual default
        self.rate_choice: rates.RateChoice | None = None  # what the first fit raced
        # dense inputs the spec standardises: their training statistics, learned by the first fit (None before)
        self.input_scaling: dict[int, Scaling] | None = None
        self.sparse_check: dict[str, float] | None = None  # measure_sparse_recall on the last fit's validation rows
        # sparse inference's LSH candidates per row besides the heavy rows (None: all the plan has room for); fit()
        # chooses it on its validation rows
        self.lsh_candidates: int | None = None
        self._sparse_warned = False
        self.threads = plan.threads  # may be changed between calls; results do not depend on it
        # data files read by fit and evaluate leave out (and count) rows that break their format; predict never
        self.skip_bad_rows = False
        self._batches_to_rebuild = 0
        self._rebuild_period = 0.0
        self._rebuilds = 0
        # the step whose weights sparse inference's heavy rows (and their packed copy) were found for: training never
        # reads them, sparse inference finds them again once the weights changed
        self._heavy_step = -1
        # set by boltc.load: called by the first fit() with its data, returns this model built on measured values
        self.tuner: Callable[[Dataset], Model] | None = None
        self.tuning = None  # the boltc.tune.Tuning this model's plan was made with, when fit() measured it
        # a model reading typed columns: the target's label names by id, learned from its first training file
        self.label_names: tuple[str, ...] | None = None
        # history inputs by index: each key's latest items over the files trained on (or absorbed by predict)
        self.histories: dict[int, HistoryState] = {}
        self._history_before: dict[int, tuple[str, HistoryState]] = {}  # the last file absorbed, and the state before it
        self.node_stores: dict[int, NodeStore] = {}  # neighbours inputs by index: the nodes of the files trained on
        if initialize:
            self.initialize(plan.seed)

    def _tune(self, train: Dataset) -> None:
        """Become the model planned on measured values. This untrained model's arrays are freed first: the tuner
        holds two models of its own at a time."""
        tuner, self.tuner = self.tuner, None
        plan, library, buffers = self.plan, self.library, self.buffers
        self.arrays, self._table = {}, None
        try:
            tuned = tuner(train)
        except BaseException:
            self._adopt(Model(plan, library, buffers))  # untrained as it was
            raise
        self._adopt(tuned)

    def _adopt(self, other: Model) -> None:
        """Become `other` (the same spec, re-planned on measured values, untrained), keeping the settings a user
        may have changed."""
        kept = {name: getattr(self, name) for name in ("threads", "skip_bad_rows", "learning_rate", "label_names",
                                                       "histories", "_history_before", "node_stores",
                                                       "measure_learning_rate")}
        self.__dict__.update(other.__dict__)
        self.__dict__.update(kept)

    # -- parameters ------------------------------------------------------------------------------------

    def initialize(self, seed: int) -> None:
        """Glorot-uniform weights, zero biases and optimizer state, fresh hash functions and tables; deterministic
        for a seed."""
        rng = np.random.default_rng(seed)
        for spec in self.buffers:
            array = self.arrays[spec.name]
            if spec.role == "weights":
                limit = math.sqrt(6.0 / (spec.fan_in + spec.fan_out))
                array[...] = rng.uniform(-limit, limit, size=spec.shape)
            else:
                array.fill(0)
        self.step = 0
        self.epochs_trained = 0
        self._rebuild_period = 0.0
        self.reconstruct(seed)

    def reconstruct(self, seed: int) -> None:
        """New LSH functions for every sparse layer (drawn as its hash family draws them, and a random neuron order
        for capped buckets and top-ups), then tables rebuilt."""
        self._draw_hash_functions(seed)
        self._rebuilds = 0
        self._scheduled_rebuild()

    def _draw_hash_functions(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 1 + self.step])
        for layer in self.sparse_layers:
            family = hash_family(layer.lsh.family)
            self.arrays[buffer_name(layer.index, family.functions_role)][...] = \
                family.draw(rng, layer.lsh.bins, layer.in_dim)
            self.arrays[buffer_name(layer.index, "lsh_order")][...] = rng.permutation(layer.out_dim)

    def rebuild(self) -> None:
        """Re-hash every sparse layer's neurons with its current weights (fit() does this on its schedule and
        once at its end, so that inference reads tables of the final weights)."""
        if self.sparse_layers:
            with self._lock:
                self.library.lib.bolt_rebuild(self._table, max(1, int(self.threads)))
            self._heavy_step = -1  # the weights may have changed under the same step (a best epoch restored)

    def _find_heavy(self) -> None:
        """The heavy rows of the current weights, for sparse inference."""
        with self._lock:
            self.library.lib.bolt_find_heavy(self._table, max(1, int(self.threads)))
        self._heavy_step = self.step

    def _tables_frozen(self) -> bool:
        freeze = self.sparse_layers[0].lsh.freeze_after_epochs
        return freeze is not None and self.epochs_trained >= freeze

    def _scheduled_rebuild(self) -> None:
        """Rebuild, and lengthen the period to the next one (the tables matter less as training settles)."""
        if not self.sparse_layers:
            return
        lsh = self.sparse_layers[0].lsh
        self._rebuilds += 1
        if lsh.reconstruct_every and self._rebuilds % lsh.reconstruct_every == 0:
            self._draw_hash_functions(self.plan.seed)  # fresh functions keep collisions from settling on old ones
        self.rebuild()
        self._rebuild_period = (self._rebuild_period * lsh.rebuild_growth) if self._rebuild_period else \
            float(lsh.rebuild_first)
        self._batches_to_rebuild = int(self._rebuild_period)

    def kernel_profile(self) -> dict[str, dict[str, float]]:
        """Per LSH-sparse layer (by name): what its kernels counted in training since the model was made or the
        profile was reset, by ``SPARSE_PROFILE_FIELDS`` (seconds, batches, entries and neurons touched)."""
        return {layer.name: dict(zip(SPARSE_PROFILE_FIELDS, self.arrays[buffer_name(layer.index, "profile")].tolist()))
                for layer in self.sparse_layers}

    def reset_kernel_profile(self) -> None:
        for layer in self.sparse_layers:
            self.arrays[buffer_name(layer.index, "profile")].fill(0)

    def parameters(self) -> dict[str, np.ndarray]:
        """The learned arrays by name (views: writing to them changes the model)."""
        return {s.name: self.arrays[s.name] for s in self.buffers if s.kind == "parameter"}

    # -- data ------------------------------------------------------------------------------------------

    def prepare_data(self, data, labelled: bool, learn_labels: bool = False, absorb_history: bool | None = None,
                     skip_bad_rows: bool | None = None, scaled: bool = True) -> Dataset:
        """A data file, Dataset or arrays as a Dataset checked against this model's inputs and target. A model
        reading typed columns takes CSV/TSV files; with ``learn_labels`` (training data) and no label names yet,
        it learns them from the file. History inputs see, before a file's own earlier rows, what the model keeps
        of earlier files; with ``absorb_history`` (default: ``learn_labels``) the file's rows join it.
        ``skip_bad_rows`` (default: the model's setting) leaves out the rows of a file that break its format.
        ``scaled``: standardised dense inputs as the model sees them (once their statistics are learned); fit()
        reads raw rows, learns the statistics from them, then scales."""
        skip = self.skip_bad_rows if skip_bad_rows is None else skip_bad_rows
        if self.reads_columns and isinstance(data, (str, Path)):
            if labelled and self.label_names is None and not learn_labels:
                raise UsageError(f"model '{self.plan.model_name}' has not learned its label names yet: fit it on "
                                 "training data first")
            data, learned, keys = read_columns(data, self.plan, self.library, self.label_names, labelled,
                                               skip_bad_rows=skip)
            if learned is not None:
                self.label_names = learned
            if keys:
                data = self._with_context(data, keys, learn_labels if absorb_history is None else absorb_history)
        dataset = dataset_for(self.plan, data, labelled, skip)
        return self._scaled(dataset) if scaled else dataset

    def _scaled(self, dataset: Dataset) -> Dataset:
        return apply_scaling(dataset, self.input_scaling or {})

    def _with_context(self, dataset: Dataset, keys: dict[int, HistoryKeys | LinkKeys], absorb: bool) -> Dataset:
        """The features of history and neighbours inputs, made from other rows and from what the model keeps of
        earlier files. A file read again after it joined the history (fit twice on it, or evaluated on its training
        file) sees the history as it was before it, so no row ever sees its own future."""
        features = list(dataset.features)
        for index, found in keys.items():
            column = self.plan.inputs[index].column
            if isinstance(found, LinkKeys):
                store = self.node_stores.get(index, NodeStore.empty())
                features[index], after = neighbour_features(found, dataset.features[column.source], store,
                                                            column.aggregate, column.direction)
                if absorb:
                    self.node_stores[index] = after
                continue
            fingerprint = found.fingerprint()
            before = self._history_before.get(index)
            state = before[1] if before is not None and before[0] == fingerprint else \
                self.histories.get(index, HistoryState.empty())
            features[index], after = history_features(found, state, column.last, column.features, self.library)
            if absorb:
                self._history_before[index] = (fingerprint, state)
                self.histories[index] = after
        return dataclasses.replace(dataset, features=tuple(features))

    @property
    def reads_columns(self) -> bool:
        return any(i.column is not None for i in self.plan.inputs)

    def _feed(self, dataset: Dataset) -> _Feed:
        needed = max([m.max_row_nnz * self.plan.batch_size for m in dataset.features if m.dense is None]
                     + [self._least_workspace])
        with self._lock:  # another thread's C call may be using the workspace this replaces
            if needed > int(self._workspace.capacity):
                self._grow_workspace(needed)
        return _Feed(self.library.ffi, dataset, self.plan.batch_size, max(1, int(self.threads)))

    def _grow_workspace(self, capacity: int) -> None:
        ffi, ws = self.library.ffi, self._workspace
        arrays = {
            "feature_slot": np.zeros(self._slot_ids, dtype=np.int32),
            "features": np.zeros(capacity, dtype=np.int32),
            "starts": np.zeros(capacity + 1, dtype=np.int64),
            "entry_rows": np.zeros(capacity, dtype=np.int32),
            "entry_values": np.zeros(capacity, dtype=np.float32),
        }
        ctypes = {"feature_slot": "int32_t *", "features": "int32_t *", "starts": "int64_t *",
                  "entry_rows": "int32_t *", "entry_values": "float *"}
        for name, array in arrays.items():
            setattr(ws, name, ffi.cast(ctypes[name], ffi.from_buffer(array)))
        ws.capacity = capacity
        self._workspace_arrays = arrays

    def _check(self, status: int) -> None:
        if status != 0:
            raise UsageError(f"the compiled model refused the call: {status_message(self.library.lib, status)}")

    # -- training --------------------------------------------------------------------------------------

    def fit(self, train, epochs: int | str | None = None, validation=None, batch_size: int | None = None,
            learning_rate: float | None = None, progress: bool | None = None, final_rebuild: bool = True,
            test=None) -> History:
        """Train on ``train``; returns per-epoch records and what was chosen.

        ``epochs``: a count, ``"auto"`` (until the first metric on the validation rows has failed to improve in the
        spec's ``patience`` epochs of the run, ``max_epochs`` at most), or None for the spec's. ``validation``: the
        rows the loop chooses on (a data file, ``Dataset`` or ``(X, y)``), a fraction of the training rows to hold
        out (never trained on), ``False`` for none, or None for the spec's (where it names none, epochs=auto holds
        out 5%, 2,000 rows at most). The spec's ``restore_best`` (default: when epochs run auto) ends with the best
        epoch's parameters. ``test`` is evaluated after every epoch for the record only, never to choose. Without a
        learning rate (here or in the spec) the first fit races rates on the training data (``rates``). Ctrl-C stops
        after the current batch and returns the history so far; the model stays usable. Sparse layers' tables are
        rebuilt at the end for inference unless ``final_rebuild=False`` (when more training follows at once).
        """
        raw = self.prepare_data(train, labelled=True, learn_labels=True, scaled=False)
        if self.tuner is not None and self.step == 0:
            self._tune(raw)
        plan = self.plan
        epochs = plan.epochs if epochs is None else epochs
        auto = epochs is None or (isinstance(epochs, str) and epochs == "auto")
        try:
            budget = plan.max_epochs if auto else operator.index(epochs)
        except TypeError:
            budget = -1
        if budget < 0:
            raise UsageError(f"epochs must be 0 or more, or auto, got {epochs!r}")
        batch_size = plan.batch_size if batch_size is None else batch_size
        if not 1 <= batch_size <= plan.batch_size:
            raise UsageError(f"batch_size must be between 1 and {plan.batch_size}, the size the model was compiled "
                             "for (change train { batch_size = ... } in the spec for larger batches)")
        if learning_rate is not None:
            if not (learning_rate > 0 and math.isfinite(learning_rate)):
                raise UsageError(f"learning_rate must be positive and finite, got {learning_rate}")
            self.learning_rate = learning_rate
        raw = self.prepare_data(raw, labelled=True, scaled=False)
        train_rows, validation_set, validation_source = self._split_validation(raw, validation, auto)
        if self.input_scaling is None:
            self.input_scaling = learn_scaling(raw, [i.index for i in plan.inputs if i.standardize], train_rows)
        dataset = self._scaled(raw)
        validation_set = self._scaled(validation_set) if validation_set is not None else None
        if auto and validation_set is None:
            raise UsageError("epochs=auto stops on a validation metric: give validation rows (a file, a data set or "
                             "a fraction of the training rows), not validation=False")
        if validation_set is not None and validation_set.n_rows == 0:
            raise UsageError(f"the validation rows ({validation_source}) are empty: training chooses on them")
        test_set = self.prepare_data(test, labelled=True) if test is not None else None
        feed = self._feed(dataset)
        history = History(validation_rows=validation_set.n_rows if validation_set is not None else 0,
                          validation_source=validation_source, monitor=plan.metrics[0] if plan.metrics else "loss")
        if self.learning_rate is None:
            self.rate_choice = self._choose_learning_rate(feed, train_rows, batch_size, progress)
            self.learning_rate = self.rate_choice.learning_rate if self.rate_choice is not None else \
                UNMEASURED_LEARNING_RATE[plan.optimizer]
        history.learning_rate = self.learning_rate
        best_parameters: dict[str, np.ndarray] | None = None
        restore_best = auto if plan.restore_best is None else plan.restore_best
        planned_batches = budget * -(-len(train_rows) // batch_size)
        started = time.perf_counter()
        validation_seconds = 0.0
        try:
            for _ in range(budget):
                with interrupts_deferred() as interrupted:  # an epoch that ran to its end is counted
                    order = train_rows[self.epoch_order(self.epochs_trained, len(train_rows))]
                    record = self._epoch(feed, order, batch_size, progress, interrupted,
                                         schedule=(len(history.epochs) * -(-len(train_rows) // batch_size),
                                                   planned_batches))
                    self.epochs_trained += 1
                    before = time.perf_counter()
                    if validation_set is not None:
                        record.validation = self.evaluate(validation_set, progress=False)
                    if test_set is not None:
                        record.test = self.evaluate(test_set, progress=False)
                    validation_seconds += time.perf_counter() - before
                    history.epochs.append(record)
                if validation_set is None:
                    continue
                if history.improved_by(record):
                    history.best_epoch, history.best_metric = record.epoch, record.validation[history.monitor]
                    if restore_best:
                        best_parameters = self._keep_parameters(best_parameters)
                elif auto:
                    history.epochs_without_improvement += 1
                    if history.epochs_without_improvement >= plan.patience:
                        history.stopped_early = True
                        break
                    self.learning_rate *= PLATEAU_DECAY
                    if best_parameters is not None:  # a worse epoch is left behind, not trained on from
                        self._return_to(best_parameters)
                        history.returns_to_best += 1
        except KeyboardInterrupt:
            pass
        restored = restore_best and best_parameters is not None and history.best_epoch != history.epochs[-1].epoch
        if restored:
            self._return_to(best_parameters, rebuild=False)  # the final rebuild below follows them
            history.restored_epoch = history.best_epoch
        if final_rebuild and history.epochs and self.sparse_layers:
            # frozen tables keep their inserted labels (sparse inference finds the heavy rows of the final weights)
            frozen = self._tables_frozen() and not restored
            if not frozen and (restored or not self._training_reads_tables or
                               self._batches_to_rebuild != int(self._rebuild_period)):
                self.rebuild()  # tables of the final weights for inference; the schedule goes on where it was
        history.wall_seconds = time.perf_counter() - started - validation_seconds
        if final_rebuild and history.epochs and self.sparse_output:
            # measured for these weights, or not at all: an earlier fit's choice would no longer hold
            self.sparse_check, self.lsh_candidates = None, None
            self._sparse_warned = False  # what sparse inference does now is worth a word again
            if validation_set is not None:
                before = time.perf_counter()
                self.choose_lsh_candidates(validation_set)
                validation_seconds += time.perf_counter() - before
        history.validation_seconds = validation_seconds
        return history

    def choose_lsh_candidates(self, data, rows_most: int = SPARSE_CHECK_ROWS) -> dict[str, float]:
        """The fewest LSH candidates per row (of a ladder of shares of the plan's room) with which sparse inference
        keeps dense accuracy on (at most `rows_most` of) `data` (``sparse_kept``); sets ``lsh_candidates`` and
        ``sparse_check`` (its ``measure_sparse_recall``) and returns the check. Where the heavy rows hold the answers
        (labels of Zipf-like frequencies) the hashing's candidates, gathered row by row, cost more than they find.
        Where no count keeps it (flat label frequencies: the heavy rows hold little and the hashing misses the rest),
        sparse inference scores every output (``sparse_scores_all``, ``scores_all`` in the check): losing a point of
        precision without a word is worse than dense speed with one."""
        self.sparse_check = None  # measured afresh: an earlier check must not turn the measured sparse scoring dense
        dataset = self._checked_dataset(data, rows_most)
        metric = self._checked_metric(dataset)
        # one dense pass (a full pass over the output layer per row) gives both dense's top-1 and its metric
        dense_ids = self.predict(dataset, top_k=min(ranking.largest_k([metric] if metric else []),
                                                    self.plan.output.out_dim))[0]
        dense_top = dense_ids[:, :1]
        dense_value = self._ranked(dataset, dense_ids, [metric])[metric] if metric else None
        room = self.plan.output.lsh.inference_active - self.plan.output.lsh.heavy
        for share in LSH_CANDIDATE_LADDER:
            self.lsh_candidates = None if share == 1 else int(share * room)
            check = self._sparse_recall(dataset, dense_top)
            if metric:
                check.update(dense_metric=dense_value,
                             sparse_metric=self.evaluate(dataset, [metric], progress=False, sparse=True)[metric])
            if sparse_kept(check):
                break
        self.sparse_check = {**check, "scores_all": float(not sparse_kept(check)),
                             "lsh_candidates": float(-1 if self.lsh_candidates is None else self.lsh_candidates)}
        return self.sparse_check

    def _checked_metric(self, dataset: Dataset) -> str | None:
        """The metric sparse inference is held to on labelled checked rows: the spec's first, where it ranks."""
        metric = self.plan.metrics[0] if self.plan.metrics else None
        return metric if metric and metric != "loss" and dataset.label_indptr is not None else None

    def _sparse_recall(self, dataset: Dataset, dense_top: np.ndarray) -> dict[str, float]:
        ids, counts = self.candidate_sets(dataset)
        found = (ids == dense_top).any(axis=1)
        return {"rows": float(dataset.n_rows), "dense_top1_recall": float(found.mean()) if len(found) else 1.0,
                "mean_candidates": float(counts.mean()) if len(counts) else 0.0}

    def measure_sparse_recall(self, data, rows_most: int = SPARSE_CHECK_ROWS) -> dict[str, float]:
        """How often sparse inference scores the neuron dense inference ranks first, on (at most `rows_most` of)
        `data`: fit() measures it on its validation rows, a saved model keeps it, ``predict --sparse`` warns when it
        is low."""
        return self._sparse_recall(*self._checked_rows(data, rows_most))

    def _checked_rows(self, data, rows_most: int) -> tuple[Dataset, np.ndarray]:
        """At most `rows_most` rows of `data`, and dense inference's top-1 for each."""
        dataset = self._checked_dataset(data, rows_most)
        return dataset, self.predict(dataset, top_k=1)[0]

    def _checked_dataset(self, data, rows_most: int) -> Dataset:
        dataset = self.prepare_data(data, labelled=False)
        return take_rows(dataset, np.arange(rows_most)) if dataset.n_rows > rows_most else dataset

    def _return_to(self, kept: dict[str, np.ndarray], rebuild: bool = True) -> None:
        """The kept parameters back in the model (Adam's moments go on as they are), and tables hashed from them."""
        for name, array in kept.items():
            np.copyto(self.arrays[name], array)
        self._heavy_step = -1
        if rebuild and self.sparse_layers:
            self.rebuild()

    def _keep_parameters(self, kept: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        """A copy of the parameters (into `kept`'s arrays when given): a third of what the model holds with Adam's
        moments, so keeping the best epoch adds a third to the model's memory, never doubles it."""
        if kept is None:
            return {name: array.copy() for name, array in self.parameters().items()}
        for name, array in self.parameters().items():
            np.copyto(kept[name], array)
        return kept

    def _split_validation(self, dataset: Dataset, validation, auto: bool) -> tuple[np.ndarray, Dataset | None, str]:
        """The training rows, the validation set (unscaled) and where it came from: `validation` as ``fit`` takes
        it, for a run of `auto` epochs or not."""
        plan, all_rows = self.plan, np.arange(dataset.n_rows, dtype=np.int64)
        rows_most = None
        if validation is None:
            if plan.validation_file is not None:
                validation = plan.validation_file
            elif plan.validation_share is not None:
                validation = plan.validation_share
            elif auto:
                validation, rows_most = plan.auto_validation_share, plan.auto_validation_rows_most
            else:
                validation = False
        if validation is False:
            return all_rows, None, "none"
        if isinstance(validation, float):
            if not 0 < validation < 1:
                raise UsageError(f"a validation fraction must be between 0 and 1, got {validation}")
            held = min(max(int(round(validation * dataset.n_rows)), 1), dataset.n_rows - 1,
                       rows_most or dataset.n_rows)
            if held < 1:
                raise UsageError(f"{dataset.path or 'the training data'} has {dataset.n_rows} row(s): too few to "
                                 "hold out validation rows")
            shuffled = np.random.default_rng([plan.seed, HOLDOUT_STREAM]).permutation(dataset.n_rows)
            held_rows = np.sort(shuffled[:held])
            kept = np.sort(shuffled[held:])
            return kept, take_rows(dataset, held_rows), \
                f"{held:,} training rows held out ({held / dataset.n_rows:.1%}, seed {plan.seed}), never trained on"
        described = validation if isinstance(validation, (str, Path)) else "the validation set given"
        return all_rows, self.prepare_data(validation, labelled=True, scaled=False), str(described)

    def _choose_learning_rate(self, feed: _Feed, train_rows: np.ndarray, batch_size: int,
                              progress: bool | None) -> rates.RateChoice | None:
        """learning_rate=auto: race the grid (``rates``) on this fresh model, from the cache when it was raced on
        the same data, spec and machine. With measuring off, the optimizer's usual default."""
        if not self.measure_learning_rate or self.step != 0 or len(train_rows) == 0:
            return None
        machine = probe()
        key = rates.choice_key([machine.cpu_fingerprint, machine.compiler_id, self.plan.to_json(), batch_size,
                                data_fingerprint(feed.dataset),
                                hashlib.sha256(train_rows.tobytes()).hexdigest()])
        found = rates.cached(key)
        if found is not None:
            return found
        started = time.perf_counter()
        batches = rates.trial_batches(-(-len(train_rows) // batch_size))
        order = train_rows[self.epoch_order(0, len(train_rows))][: batches * batch_size]
        trained_rows = self._rows_trained_by(feed.dataset, order)
        weights = {spec.name: self.arrays[spec.name][trained_rows[spec.layer]] if spec.layer in trained_rows else
                   self.arrays[spec.name].copy() for spec in self.buffers if spec.role == "weights"}
        grid = rates.GRID[self.plan.optimizer]
        bar = Progress("learning rate", len(grid) * len(order), enabled=progress)
        trials: list[rates.RateTrial] = []
        fresh = None
        try:
            while (rate := rates.next_rate(grid, trials)) is not None:
                fresh = self._restart(weights, trained_rows, fresh)
                self.learning_rate = rate
                losses: list[float] = []
                trial_started = time.perf_counter()
                with interrupts_deferred() as interrupted:
                    try:
                        self._epoch(feed, order, batch_size, False, interrupted, batch_losses=losses)
                    except TrainingError:
                        losses.append(float("inf"))
                trials.append(rates.RateTrial(rate, rates.progressive_loss(losses),
                                              time.perf_counter() - trial_started))
                bar.advance(len(order), f"{rate:g}: {trials[-1].loss:.4f}")
        finally:
            bar.close()
            self._restart(weights, trained_rows, fresh)
            self.learning_rate = None  # an interrupted or failed race leaves the choice to the next fit
        fastest = rates.fastest(trials)
        if fastest is None:
            raise TrainingError(f"the loss diverged at every learning rate down to {min(grid):g}: check the data "
                                "(values far outside a float's range?) or name a learning rate")
        choice = rates.RateChoice(key, rates.step_below(grid, fastest), fastest, tuple(trials), batches, len(order),
                                  time.perf_counter() - started)
        rates.store(choice)
        return choice

    def _rows_trained_by(self, dataset: Dataset, rows: np.ndarray) -> dict[int, np.ndarray]:
        """For each layer that gathers the weight rows of a sparse input, by layer index, the rows that training on
        `rows` of `dataset` can change: those of the features present in them (lazy Adam leaves the rest alone)."""
        seen = take_rows(dataset, rows).features
        return {layer.index: np.unique(seen[layer.sources[0].index].indices) for layer in self.plan.layers
                if layer.kernel == "gather" and layer.sources[0].is_input}

    def _restart(self, weights: dict[str, np.ndarray], trained_rows: dict[int, np.ndarray],
                 fresh: _FreshTables | None = None) -> _FreshTables:
        """Back to the state ``initialize`` made, with its initial `weights` kept aside (drawing them again from
        the seed costs seconds at 670K outputs), and the hash functions and tables of an earlier restart copied back
        (`fresh`) rather than drawn and rebuilt again (a second at 670K outputs); returns them. A gathering layer's
        weights and moments are put back only in its `trained_rows` (``weights`` holds those rows alone): at 2^20
        features, copying and zeroing all of them cost more than the trials' training."""
        for spec in self.buffers:
            rows = trained_rows.get(spec.layer) if spec.role in ROW_TRAINED_ROLES else None
            if rows is not None:
                self.arrays[spec.name][rows] = weights[spec.name] if spec.role == "weights" else 0
            elif spec.name in weights:
                np.copyto(self.arrays[spec.name], weights[spec.name])
            elif fresh is not None and spec.name in fresh.arrays:
                np.copyto(self.arrays[spec.name], fresh.arrays[spec.name])
            elif spec.role == "weights":
                raise AssertionError(f"no initial weights for {spec.name}")
            else:
                self.arrays[spec.name].fill(0)
        self.step = 0
        self.epochs_trained = 0
        self._rebuild_period = 0.0
        if fresh is None:
            self.reconstruct(self.plan.seed)
            fresh = _FreshTables({spec.name: self.arrays[spec.name].copy() for spec in self.buffers
                                  if spec.kind in ("table", "hash")},
                                 (self._rebuilds, self._rebuild_period, self._batches_to_rebuild))
        else:
            self._rebuilds, self._rebuild_period, self._batches_to_rebuild = fresh.schedule
            self._heavy_step = -1
        return fresh

    def epoch_order(self, epoch: int, n_rows: int) -> np.ndarray:
        """The order in which epoch `epoch` (0-based) visits the rows. It depends only on the seed and the epoch's
        number, so training in several fit() calls, or resuming a saved model, sees the same order as one call."""
        return np.random.default_rng([self.plan.seed, epoch]).permutation(n_rows)

    def _rate_at(self, batch_in_fit: int, planned_batches: int) -> float:
        """The learning rate of the next batch: warm-up over the spec's first batches, then its decay schedule."""
        plan, factor = self.plan, 1.0
        if plan.warmup and self.step < plan.warmup:
            factor = (self.step + 1) / plan.warmup
        done = min(1.0, batch_in_fit / max(1, planned_batches))
        if plan.schedule == "linear":
            factor *= 1.0 - done
        elif plan.schedule == "cosine":
            factor *= 0.5 * (1.0 + math.cos(math.pi * done))
        return self.learning_rate * factor

    def _epoch(self, feed: _Feed, order: np.ndarray, batch_size: int, progress: bool | None,
               interrupted: threading.Event, schedule: tuple[int, int] = (0, 0),
               batch_losses: list[float] | None = None) -> EpochRecord:
        """One pass in ``order``; raises KeyboardInterrupt between batches once ``interrupted`` is set, never
        between a batch's update and its bookkeeping. ``schedule``: the batches of this fit before this epoch, and
        all it plans (0: a constant rate)."""
        lib, plan, step = self.library.lib, self.plan, self._step_struct
        step.learning_rate, step.beta1, step.beta2, step.eps = self.learning_rate, plan.beta1, plan.beta2, plan.eps
        scheduled = schedule[1] > 0 and (plan.warmup > 0 or plan.schedule != "constant")  # the race: constant
        frozen = bool(self.sparse_layers) and self._tables_frozen()
        step.insert_labels = int(frozen)
        n_rows = len(order)
        bar = Progress(f"epoch {self.epochs_trained + 1}", n_rows, enabled=progress)
        loss_total, started = 0.0, time.perf_counter()
        for batch_number, start in enumerate(range(0, n_rows, batch_size)):
            if interrupted.is_set():  # checked before a batch: an interrupt during the last one ends the epoch whole
                bar.close()
                raise KeyboardInterrupt
            rows = order[start:start + batch_size]
            feed.select(rows)
            step.step = self.step + 1
            if scheduled:
                step.learning_rate = self._rate_at(schedule[0] + batch_number, schedule[1])
            with self._lock:
                status = lib.bolt_train_batch(self._table, feed.batch, self._workspace, step, self._loss)
                batch_loss = self._loss[0]
            if status == lib.BOLT_ERROR_NONFINITE_LOSS:
                raise TrainingError(f"the loss became {batch_loss} at batch {batch_number + 1} of epoch "
                                    f"{self.epochs_trained + 1}; training stopped before that batch's update "
                                    "(try a lower learning rate)")
            self._check(status)
            self.step += 1
            loss_total += batch_loss
            if batch_losses is not None:
                batch_losses.append(batch_loss / len(rows))
            if self._training_reads_tables and not frozen:
                self._batches_to_rebuild -= 1
                if self._batches_to_rebuild <= 0:
                    self._scheduled_rebuild()
            bar.advance(len(rows), f"loss {loss_total / min(start + len(rows), n_rows):.4f}")
        seconds = time.perf_counter() - started
        bar.close()
        return EpochRecord(self.epochs_trained + 1, loss_total / max(n_rows, 1), seconds, n_rows)

    # -- inference -------------------------------------------------------------------------------------

    def _infer(self, dataset: Dataset, top_k: int, progress: bool | None, label: str, sparse: bool,
               after_batch=None):
        plan, lib = self.plan, self.library.lib
        ffi = self.library.ffi
        if sparse and not self.sparse_output:
            raise UsageError(f"model '{plan.model_name}' has no LSH-sparse layer: sparse inference needs an output "
                             "layer with sparsity")
        most = plan.output.lsh.inference_active if sparse else plan.output.out_dim
        if not 1 <= top_k <= most:
            raise UsageError(f"top_k must be between 1 and {most}" + (" (the active neurons per sample)" if sparse
                                                                      else "") + f", got {top_k}")
        if sparse and self._heavy_step != self.step:
            self._find_heavy()
        feed = self._feed(dataset)
        feed.batch.sparse = int(sparse)
        feed.batch.lsh_candidates = -1 if self.lsh_candidates is None else self.lsh_candidates
        n_rows = dataset.n_rows
        ids = np.zeros((n_rows, top_k), dtype=np.int32)
        scores = np.zeros((n_rows, top_k), dtype=np.float32)
        loss_total = 0.0
        bar = Progress(label, n_rows, enabled=progress)
        for start in range(0, n_rows, plan.batch_size):
            rows = np.arange(start, min(start + plan.batch_size, n_rows), dtype=np.int64)
            feed.select(rows)
            with self._lock:
                status = lib.bolt_infer_batch(self._table, feed.batch, top_k,
                                              ffi.cast("int32_t *", ffi.from_buffer(ids[start:])),
                                              ffi.cast("float *", ffi.from_buffer(scores[start:])), self._loss)
                if after_batch is not None and status == 0:
                    after_batch(start, len(rows))  # reads scratch buffers the next call overwrites
                batch_loss = self._loss[0]
            self._check(status)
            loss_total += batch_loss
            bar.advance(len(rows))
        bar.close()
        return ids, scores, loss_total

    def evaluate(self, data, metrics: tuple[str, ...] | list[str] | None = None, progress: bool | None = None,
                 sparse: bool = False) -> dict[str, float]:
        """Metrics (default: the spec's, e.g. ``["accuracy", "precision@5", "loss"]``) over labelled data.

        ``sparse=True`` scores only the neurons LSH selects in sparse layers (fast; the loss is then undefined and
        reported as NaN), or every output where ``sparse_scores_all`` (the last fit found the candidates miss)."""
        labels = tuple(metrics or self.plan.metrics)
        problem = ranking.invalid(labels, self.plan.output.out_dim)
        if problem:
            raise UsageError(problem)
        dataset = self.prepare_data(data, labelled=True)
        sparse = self._scores_sparsely(sparse)
        started = time.perf_counter()
        ids, _, loss_total = self._infer(dataset, min(ranking.largest_k(labels), self.plan.output.out_dim),
                                         progress, "evaluate", sparse)
        if sparse:
            loss_total = float("nan")
        seconds = time.perf_counter() - started
        results = self._ranked(dataset, ids, labels, loss_total)
        self.last_eval_seconds = seconds
        return results

    def _ranked(self, dataset: Dataset, ids: np.ndarray, labels, loss_total: float = float("nan")) -> dict[str, float]:
        """The metrics `labels` of the ranked output ids [rows, k] against `dataset`'s labels."""
        row_ids = np.arange(dataset.n_rows, dtype=np.int64)
        hit_matrix = ranking.hits(ids, dataset.label_indptr, dataset.label_ids, row_ids, self.plan.output.out_dim)
        return ranking.compute(labels, hit_matrix, ranking.label_counts(dataset.label_indptr, row_ids), loss_total)

    def candidate_sets(self, data) -> tuple[np.ndarray, np.ndarray]:
        """The neurons sparse inference scores for each row of ``data`` in the output layer: ids [rows, width]
        (the first ``counts[r]`` of row r are valid, in selection order) and counts [rows]. ``boltc tune`` judges
        hash configurations by how many of each row's best-scoring neurons these sets hold."""
        if not self.sparse_output:
            raise UsageError(f"model '{self.plan.model_name}' has no LSH-sparse output layer")
        dataset = self.prepare_data(data, labelled=False)
        layer = self.plan.output
        width = layer.lsh.inference_active
        ids = np.full((dataset.n_rows, width), -1, dtype=np.int32)
        counts = np.zeros(dataset.n_rows, dtype=np.int32)
        active = self.arrays[buffer_name(layer.index, "active")]
        active_counts = self.arrays[buffer_name(layer.index, "active_counts")]

        def keep(start: int, rows: int) -> None:
            counts[start:start + rows] = active_counts[:rows]
            valid = np.arange(width) < active_counts[:rows, None]  # past a row's count: the last call's leftovers
            ids[start:start + rows] = np.where(valid, active[:rows], -1)

        self._infer(dataset, 1, False, "candidates", True, after_batch=keep)
        return ids, counts

    def predict(self, data, top_k: int = 1, progress: bool | None = False, sparse: bool = False,
                update_history: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``top_k`` best output ids per row, best first, and their scores (probabilities; with
        ``sparse=True``, probabilities over the neurons sparse inference scores only: the heavy rows and the LSH
        candidates). With ``update_history`` the file's rows join what history inputs see next."""
        # never skipping rows: the output has a row per input row, and a left-out one would shift all after it
        dataset = self.prepare_data(data, labelled=False, absorb_history=update_history, skip_bad_rows=False)
        ids, scores, _ = self._infer(dataset, top_k, progress, "predict", self._scores_sparsely(sparse))
        return ids, scores

    @property
    def sparse_scores_all(self) -> bool:
        """Whether sparse inference scores every output: the last fit found no LSH candidate count that keeps
        dense inference's top-1 (``scores_all`` in ``sparse_check``, saved with it)."""
        return bool(self.sparse_check and self.sparse_check.get("scores_all"))

    def _scores_sparsely(self, sparse: bool) -> bool:
        """Whether a call that asks for sparse inference scores the heavy rows and LSH candidates only: not where the
        last fit measured that they miss dense inference's best (it scores every output then). Warns once per model
        where sparse inference is slow or may lose accuracy: either would otherwise go unnoticed."""
        check = self.sparse_check
        if not sparse or self._sparse_warned or not check or sparse_kept(check):
            return sparse and not self.sparse_scores_all
        self._sparse_warned = True
        found = f"held dense inference's best output for only {check['dense_top1_recall']:.1%} of " \
                f"{int(check['rows']):,} validation rows" + (
                    f" and scored {self.plan.metrics[0]} {check['sparse_metric']:.4f} on them against dense's "
                    f"{check['dense_metric']:.4f}" if "sparse_metric" in check else "")
        if self.sparse_scores_all:
            warnings.warn(f"sparse inference scores every output of this model, at dense inference's speed: after "
                          f"training, its LSH candidates {found}, so scoring them alone would lose accuracy",
                          stacklevel=3)
            return False
        warnings.warn(f"after training, sparse inference's candidates {found}: it may be less accurate than dense "
                      "inference; predict without --sparse / sparse=True to keep dense accuracy", stacklevel=3)
        return True

    # -- persistence -----------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write parameters and optimizer state; ``boltc.load_model`` restores the model and can resume training."""
        header = {
            "boltc_version": __version__,
            "model_name": self.plan.model_name,
            "spec_path": self.plan.spec_path,
            "spec_source": self.plan.spec_source,
            "real_type": self.plan.real_type,
            "step": self.step,
            "epochs_trained": self.epochs_trained,
            "learning_rate": self.learning_rate,
            # values boltc tune measured: the plan, and so the buffers, depend on them
            "measured": {str(index): dataclasses.asdict(value) for index, value in self.plan.measured.items()},
            "label_names": list(self.label_names) if self.label_names is not None else None,
            "sparse_check": self.sparse_check,
        }
        kept = {f"history.{index}.{part}": getattr(state, part) for index, state in self.histories.items()
                for part in ("users", "indptr", "items")}
        kept.update({f"nodes.{index}.{part}": getattr(store, part) for index, store in self.node_stores.items()
                     for part in NodeStore.PARTS})
        kept.update({f"scaling.{index}.{part}": getattr(scale, part)
                     for index, scale in (self.input_scaling or {}).items() for part in SCALING_PARTS})
        checkpoint.write_model_file(path, header, {**self.saved_arrays(), **kept})

    def _check_node_store(self, path: str, index: int, store: NodeStore) -> None:
        """A saved node store's offsets and feature ids, which the neighbour aggregation reads in C."""
        nodes = len(store.nodes)
        saved_contents.check_ragged(path, f"nodes.{index}.feature_indptr", store.feature_indptr, nodes,
                                    len(store.feature_indices))
        saved_contents.check_ragged(path, f"nodes.{index}.link_indptr", store.link_indptr, nodes, len(store.links))
        if len(store.feature_values) != len(store.feature_indices) or not np.isfinite(store.feature_values).all():
            raise ModelFileError(path, f"array 'nodes.{index}.feature_values' does not match its feature ids")
        source = self.plan.inputs[self.plan.inputs[index].column.source]
        saved_contents.check_ids(path, f"nodes.{index}.feature_indices", store.feature_indices, source.dim,
                                 f"input '{source.name}''s features")

    def _restored_scaling(self, path: str, arrays: dict[str, np.ndarray]) -> dict[int, Scaling] | None:
        """A trained model's standardisation statistics: every standardised input must have them, of its width. A
        file with none is an untrained model's (learned at its first fit) or one trained before boltc standardised
        inputs (its weights expect raw ones)."""
        if not any(name.startswith("scaling.") for name in arrays):
            return {} if self.step else None
        scaling = {}
        for model_input in self.plan.inputs:
            if not model_input.standardize:
                continue
            parts = [arrays.get(f"scaling.{model_input.index}.{part}") for part in SCALING_PARTS]
            if any(p is None or p.shape != (model_input.dim,) or p.dtype != np.float32 or not np.isfinite(p).all()
                   for p in parts):
                raise ModelFileError(path, f"the file has no usable standardisation of input '{model_input.name}'")
            scaling[model_input.index] = Scaling(*parts)
        return scaling

    def saved_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a model file holds: parameters, optimizer state and hash functions (tables are rebuilt)."""
        return {s.name: self.arrays[s.name] for s in self.buffers if s.kind in SAVED_KINDS}

    def restore(self, path: str, header: dict, arrays: dict[str, np.ndarray]) -> None:
        """Fill this model from a model file's contents (its spec must have produced the same buffers)."""
        for spec in self.buffers:
            if spec.kind not in SAVED_KINDS:
                continue
            if spec.name not in arrays:
                raise ModelFileError(path, f"the file has no array '{spec.name}': it was saved from another spec")
            stored = arrays[spec.name]
            if tuple(stored.shape) != spec.shape:
                raise ModelFileError(path, f"array '{spec.name}' has shape {tuple(stored.shape)}, the spec needs "
                                     f"{spec.shape}")
        saved = [spec for spec in self.buffers if spec.kind in SAVED_KINDS]
        saved_contents.check_buffers(path, self.plan, saved, arrays)
        for spec in saved:
            if arrays[spec.name] is not self.arrays[spec.name]:  # not already read in place
                self.arrays[spec.name][...] = arrays[spec.name]
        try:
            self.step = int(header.get("step", 0))
            self.epochs_trained = int(header.get("epochs_trained", 0))
            rate = header.get("learning_rate", self.plan.learning_rate)
            self.learning_rate = None if rate is None else float(rate)
        except (TypeError, ValueError, OverflowError):
            raise ModelFileError(path, "the file's training state (step, epochs, learning rate) is unreadable") \
                from None
        names = header.get("label_names")
        if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)
                                  or len(names) > self.plan.target_dim):
            raise ModelFileError(path, "the file's label names are unreadable")
        self.label_names = tuple(names) if names is not None else None
        check = header.get("sparse_check")
        if check is not None and not (isinstance(check, dict) and {"rows", "dense_top1_recall"} <= set(check)
                                      and all(isinstance(v, (int, float)) and math.isfinite(v)
                                              for v in check.values())):
            raise ModelFileError(path, "the file's sparse inference check is unreadable")
        self.sparse_check = check
        chosen = int((check or {}).get("lsh_candidates", -1))
        self.lsh_candidates = None if chosen < 0 else chosen
        self.histories = {index: HistoryState(*(arrays[f"history.{index}.{part}"] for part in ("users", "indptr", "items")))
                          for index, i_plan in enumerate(self.plan.inputs)
                          if i_plan.column is not None and f"history.{index}.users" in arrays}
        for index, history in self.histories.items():
            saved_contents.check_ragged(path, f"history.{index}.indptr", history.indptr, len(history.users),
                                        len(history.items))
        self._history_before = {}
        self.node_stores = {index: NodeStore(*(arrays[f"nodes.{index}.{part}"] for part in NodeStore.PARTS))
                            for index in range(len(self.plan.inputs)) if f"nodes.{index}.nodes" in arrays}
        for index, store in self.node_stores.items():
            self._check_node_store(path, index, store)
        self.input_scaling = self._restored_scaling(path, arrays)
        self._rebuild_period, self._rebuilds = 0.0, 0  # the saved hash functions are kept: this is rebuild one
        self._scheduled_rebuild()
