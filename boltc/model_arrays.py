"""The arrays of one compiled model and its C entry points: what the generated code reads and writes, the table of
pointers it is called with, the scratch a sparse input needs, and one lock, since the scratch buffers are shared.

Everything above this (training, inference, model files) goes through here to reach C; nothing here knows about
data files, schedules or metrics.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from boltc.abi import SPARSE_PROFILE_FIELDS, BufferSpec, buffer_name, status_message
from boltc.build import CompiledLibrary
from boltc.data import Dataset
from boltc.diagnostics import UsageError
from boltc.hashing import family as hash_family
from boltc.plan import Plan


class Feed:
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


class ModelArrays:
    def __init__(self, plan: Plan, library: CompiledLibrary, buffers: tuple[BufferSpec, ...]):
        self.plan, self.library, self.buffers = plan, library, buffers
        self.real = np.dtype(np.float32 if plan.real_type == "float" else np.float64)
        self.arrays: dict[str, np.ndarray] = {
            spec.name: np.zeros(spec.shape, dtype=self.real if spec.dtype == "real" else np.dtype(spec.dtype))
            for spec in buffers}
        self.sparse_layers = [layer for layer in plan.layers if layer.lsh is not None]
        # consumers of a sparse hidden layer group its active units by neuron as they group a sparse input's features
        hidden = [layer for layer in self.sparse_layers if layer.emits_active_units]
        self._slot_ids = max([i.dim for i in plan.inputs] + [layer.out_dim for layer in hidden])
        self._least_workspace = max([plan.batch_size] + [plan.batch_size * layer.lsh.active for layer in hidden])
        ffi = library.ffi
        self._table = ffi.new("void *[]", len(buffers))
        for spec in buffers:
            self._table[spec.slot] = ffi.cast("void *", ffi.from_buffer(self.arrays[spec.name]))
        self.step_struct = ffi.new("bolt_step *")
        self._loss = ffi.new("double *")
        self._workspace = ffi.new("bolt_workspace *")
        self._workspace_arrays: dict[str, np.ndarray] = {}
        self._grow_workspace(self._least_workspace)
        self.lock = threading.Lock()  # the scratch buffers are shared: one C call at a time per model
        # per exchanged parameter, the buffers a worker's share of a distributed step is collected into (their
        # pages are taken as they are written)
        self._shares: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def adopt(self, arrays: dict[str, np.ndarray]) -> None:
        """Take `arrays` (a mapped model file's) as the buffers of their names: the C code reads them where they
        lie, and the zeroed arrays they replace are freed."""
        ffi = self.library.ffi
        with self.lock:
            for spec in self.buffers:
                if spec.name in arrays:
                    self.arrays[spec.name] = arrays[spec.name]
                    self._table[spec.slot] = ffi.cast("void *", ffi.from_buffer(arrays[spec.name]))

    # -- initial values --------------------------------------------------------------------------------

    def initialize_parameters(self, seed: int) -> None:
        """Glorot-uniform weights, everything else zero; deterministic for a seed."""
        rng = np.random.default_rng(seed)
        for spec in self.buffers:
            array = self.arrays[spec.name]
            if spec.role == "weights":
                limit = math.sqrt(6.0 / (spec.fan_in + spec.fan_out))
                array[...] = rng.uniform(-limit, limit, size=spec.shape)
            else:
                array.fill(0)

    def draw_hash_functions(self, seed: int, step: int) -> None:
        """New LSH functions for every sparse layer (drawn as its hash family draws them) and a random neuron order
        for capped buckets and top-ups; the tables need a rebuild after."""
        rng = np.random.default_rng([seed, 1 + step])
        for layer in self.sparse_layers:
            family = hash_family(layer.lsh.family)
            self.arrays[buffer_name(layer.index, family.functions_role)][...] = \
                family.draw(rng, layer.lsh.bins, layer.in_dim)
            self.arrays[buffer_name(layer.index, "lsh_order")][...] = rng.permutation(layer.out_dim)

    # -- the C entry points ----------------------------------------------------------------------------

    def feed(self, dataset: Dataset, threads: int) -> Feed:
        needed = max([m.max_row_nnz * self.plan.batch_size for m in dataset.features if m.dense is None]
                     + [self._least_workspace])
        with self.lock:  # another thread's C call may be using the workspace this replaces
            if needed > int(self._workspace.capacity):
                self._grow_workspace(needed)
        return Feed(self.library.ffi, dataset, self.plan.batch_size, max(1, int(threads)))

    def train_batch(self, feed: Feed) -> tuple[int, float]:
        """One training step on the feed's selected rows with the settings in ``step_struct``: status and the
        batch's summed loss."""
        with self.lock:
            status = self.library.lib.bolt_train_batch(self._table, feed.batch, self._workspace, self.step_struct,
                                                       self._loss)
            return status, self._loss[0]

    def infer_batch(self, feed: Feed, top_k: int, ids: np.ndarray, scores: np.ndarray, after_batch=None) -> float:
        """The top k of the feed's selected rows into `ids` and `scores` (rows from their start), and the summed
        loss; `after_batch` reads scratch buffers before the next call overwrites them."""
        ffi = self.library.ffi
        with self.lock:
            status = self.library.lib.bolt_infer_batch(self._table, feed.batch, top_k,
                                                       ffi.cast("int32_t *", ffi.from_buffer(ids)),
                                                       ffi.cast("float *", ffi.from_buffer(scores)), self._loss)
            if after_batch is not None and status == 0:
                after_batch()
            loss = self._loss[0]
        self.check(status)
        return loss

    def collect_share(self, parameter: int, rows: int, width: int, step: int, threads: int
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The ids (ascending) and gradients of the rows of exchanged parameter `parameter` [rows, width] that the
        backward of step `step` collected: views of buffers of this model's, which its next collect overwrites."""
        ffi = self.library.ffi
        if parameter not in self._shares:
            self._shares[parameter] = (np.empty(rows, np.int64), np.empty((rows, width), self.real))
        ids, gradients = self._shares[parameter]
        count = ffi.new("int64_t *")
        with self.lock:
            status = self.library.lib.bolt_collect_share(self._table, parameter, step,
                                                         ffi.cast("int64_t *", ffi.from_buffer(ids)),
                                                         ffi.from_buffer(gradients), max(1, int(threads)), count)
        self.check(status)
        return ids[:count[0]], gradients[:count[0]].reshape(-1) if width == 1 else gradients[:count[0]]

    def step_shares(self, parameter: int, ids: list[np.ndarray | None], gradients: list[np.ndarray | None],
                    threads: int) -> int:
        """The step (settings in ``step_struct``) of exchanged parameter `parameter` from the workers' shares in
        rank order: each share's ascending row ids (None: sent whole) and gradients (None: no rows) (``boltc.exchange``).
        Returns the rows stepped."""
        ffi = self.library.ffi
        count = len(gradients)
        id_pointers, counts = ffi.new("int64_t *[]", count), ffi.new("int64_t[]", count)
        gradient_pointers = ffi.new("void *[]", count)
        kept = []
        for s, (share_ids, share_gradients) in enumerate(zip(ids, gradients)):
            if share_gradients is None:
                continue
            share_gradients = np.ascontiguousarray(share_gradients, dtype=self.real)
            kept.append(share_gradients)
            gradient_pointers[s] = ffi.cast("void *", ffi.from_buffer(share_gradients))
            counts[s] = len(share_gradients)
            if share_ids is not None:
                share_ids = np.ascontiguousarray(share_ids, dtype=np.int64)
                kept.append(share_ids)
                id_pointers[s] = ffi.cast("int64_t *", ffi.from_buffer(share_ids))
                counts[s] = len(share_ids)
        applied = ffi.new("int64_t *")
        with self.lock:
            status = self.library.lib.bolt_step_shares(self._table, parameter, count, id_pointers, counts,
                                                       gradient_pointers, self.step_struct, max(1, int(threads)),
                                                       applied)
        self.check(status)
        return int(applied[0])

    def rebuild(self, threads: int) -> None:
        with self.lock:
            self.library.lib.bolt_rebuild(self._table, max(1, int(threads)))

    def find_heavy(self, threads: int) -> None:
        with self.lock:
            self.library.lib.bolt_find_heavy(self._table, max(1, int(threads)))

    def check(self, status: int) -> None:
        if status != 0:
            raise UsageError(f"the compiled model refused the call: {status_message(self.library.lib, status)}")

    def nonfinite_loss(self, status: int) -> bool:
        return status == self.library.lib.BOLT_ERROR_NONFINITE_LOSS

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

    # -- views -----------------------------------------------------------------------------------------

    def kernel_profile(self) -> dict[str, dict[str, float]]:
        return {layer.name: dict(zip(SPARSE_PROFILE_FIELDS, self.arrays[buffer_name(layer.index, "profile")].tolist()))
                for layer in self.sparse_layers}

    def reset_kernel_profile(self) -> None:
        for layer in self.sparse_layers:
            self.arrays[buffer_name(layer.index, "profile")].fill(0)

    def parameters(self) -> dict[str, np.ndarray]:
        return {s.name: self.arrays[s.name] for s in self.buffers if s.kind == "parameter"}
