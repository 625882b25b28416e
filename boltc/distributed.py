"""Data-parallel training over several processes or machines, on Ray.

Every worker holds a whole replica of the model and its own share of the training rows. Each step trains on the
global batch that one process would train on (the epoch's seeded order over all rows, ``Model.epoch_order``): every
worker computes the gradients of the rows of that batch that it holds, the workers exchange only the rows those
gradients touched (``boltc.exchange``), and every worker applies the same summed rows with the same lazy Adam. The
replicas so stay identical, rebuild their hash tables themselves at the same steps, and never send them.

Why Ray actors and its object store rather than Ray Train's TorchTrainer with gloo: the rows a step touches differ
from worker to worker and from step to step, which gloo's all-gather (equal-sized tensors) would need an extra round
and padding for; a share put in the object store is read by the other workers of a machine without a copy and sent
once to each other machine; and torch (hundreds of MB) would be a dependency for one collective. The driver submits
a window of steps ahead (each worker runs its calls in order), so it is never on a step's critical path.

A worker that dies (its process killed, its machine lost) ends the attempt: the group is started again from the last
checkpoint (a model file written atomically after every epoch), at most ``max_failures`` times.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from boltc import checkpoint, exchange
from boltc.data import Dataset, concatenated, take_rows
from boltc.diagnostics import UsageError
from boltc.streaming import ChunkReader, Stream
from boltc.training import (EpochRecord, History, epoch_end_rebuild, next_step, nonfinite_loss,
                             step_settings, step_taken, tables_for_inference)

STEPS_AHEAD = 4  # steps the driver submits before waiting for the oldest one's end
RAY_MISSING = ("training on several workers needs Ray: pip install 'boltc[distributed]' (installs ray); "
               "without --workers, training runs in this process")


@dataclass
class ExchangeRecord:
    """What the exchange of one epoch cost, per worker and step on average."""

    epoch: int
    steps: int
    bytes_sent: float  # a worker's share, sent to every other worker
    touched_bytes: float  # the gradient rows (and ids) of the union the step applied: what one process would touch
    compute_seconds: float  # a worker's forward and backward
    apply_seconds: float  # summing the shares and stepping the union
    wall_seconds: float  # the epoch's steps, seen by the driver

    @property
    def communication_share(self) -> float:
        """The share of a step's time not spent computing or applying: waiting for, sending and reading shares."""
        busy = (self.compute_seconds + self.apply_seconds) * self.steps
        return max(0.0, 1.0 - busy / self.wall_seconds) if self.wall_seconds > 0 else 0.0


@dataclass
class DistributedHistory(History):
    workers: int = 1
    threads_per_worker: int = 1
    exchanges: list[ExchangeRecord] = field(default_factory=list)
    restarts: int = 0  # attempts started again from a checkpoint after a worker died


@dataclass(frozen=True)
class TrainingData:
    """Where a worker reads its share: an XMC text file (cut into byte ranges) or a directory or glob of files
    (dealt out whole), or, for a model with typed columns or data in memory, all of it, keeping its share of
    the rows."""

    path: str | None = None
    dataset: Dataset | None = None
    skip_bad_rows: bool = False


class Worker:
    """One replica: the model, its share of the training rows, and the steps of an epoch over them. Ray runs it as
    an actor (``ray.remote(Worker)``); the methods are what the driver calls, in order."""

    def __init__(self, rank: int, world: int, model_bytes: bytes, data: TrainingData, threads: int,
                 wire: str = "fp32"):
        self.rank, self.world, self.wire = rank, world, wire
        self.model = _model_of(model_bytes)
        self.model.threads = threads
        self.dataset = self._share(data)
        self.feed = self.model.compiled.feed(self.dataset, threads)
        self.offset = self.total = 0
        self.steps: list[np.ndarray] = []
        self.global_rows: list[int] = []
        self.frozen = False
        self.step_in_epoch = 0
        self.compute_seconds = self.apply_seconds = 0.0
        self.bytes_sent = self.touched_bytes = 0

    def _share(self, data: TrainingData) -> Dataset:
        model = self.model
        if data.dataset is not None or model.reads_columns or len(model.plan.inputs) != 1:
            whole = model.prepare_data(data.dataset if data.dataset is not None else data.path, labelled=True,
                                       skip_bad_rows=data.skip_bad_rows)
            first, end = (whole.n_rows * self.rank) // self.world, (whole.n_rows * (self.rank + 1)) // self.world
            return take_rows(whole, np.arange(first, end))
        reader = ChunkReader(Stream(data.path, shard=(self.rank, self.world)), model.plan.inputs[0].dim,
                             model.plan.target_dim, data.skip_bad_rows)
        parts = [model.prepare_data(chunk, labelled=True) for chunk, _ in reader.chunks()]
        if not parts:
            return take_rows(model.prepare_data(data.path, labelled=True), np.zeros(0, np.int64))
        return concatenated(data.path, parts)

    def pid(self) -> int:
        return os.getpid()

    def rows(self) -> int:
        return self.dataset.n_rows

    def place(self, offset: int, total: int) -> None:
        """This worker's rows are rows offset .. offset + rows() - 1 of the `total` rows of all workers."""
        self.offset, self.total = offset, total

    def begin_epoch(self, batch_size: int, batches_per_step: int = 1) -> int:
        """The epoch's steps: its order over all rows cut into global batches, `batches_per_step` of them a step
        (their gradients accumulated), and the rows of each that this worker holds; returns the number of steps."""
        model = self.model
        order = model.epoch_order(model.epochs_trained, self.total)
        positions = np.flatnonzero((order >= self.offset) & (order < self.offset + self.dataset.n_rows))
        mine = order[positions] - self.offset
        batches = -(-self.total // batch_size)
        cuts = np.searchsorted(positions // batch_size, np.arange(batches + 1))
        steps = -(-batches // batches_per_step)
        groups = [range(s * batches_per_step, min(batches, (s + 1) * batches_per_step)) for s in range(steps)]
        self.steps = [[mine[cuts[b]:cuts[b + 1]] for b in group] for group in groups]
        self.global_rows = [sum(min(batch_size, self.total - b * batch_size) for b in group) for group in groups]
        self.frozen = step_settings(model)
        self.compute_seconds = self.apply_seconds = 0.0
        self.bytes_sent = self.touched_bytes = 0
        return steps

    def compute(self, step: int) -> exchange.Share:
        started = time.perf_counter()
        self.step_in_epoch = step  # named by a non-finite loss's message
        next_step(self.model, None)
        share = exchange.collect(self.model, self.feed, self.steps[step], self.global_rows[step], self.wire)
        self.bytes_sent += share.nbytes * (self.world - 1)
        self.compute_seconds += time.perf_counter() - started
        return share

    def apply(self, *shares: exchange.Share) -> tuple[float, int]:
        """The step of every worker's shares (in rank order): the batch's summed loss and its rows."""
        started = time.perf_counter()
        applied = exchange.apply_shares(self.model, list(shares))
        if not math.isfinite(applied.loss):
            raise nonfinite_loss(self.model, applied.loss, self.step_in_epoch)
        step_taken(self.model, self.frozen)
        self.touched_bytes += applied.union_bytes
        self.apply_seconds += time.perf_counter() - started
        return applied.loss, applied.rows

    def end_epoch(self) -> tuple[float, float, int, int]:
        """The epoch is counted and its last weights hashed; returns this worker's compute and apply seconds,
        bytes sent and touched bytes over it."""
        self.model.epochs_trained += 1
        epoch_end_rebuild(self.model)
        return self.compute_seconds, self.apply_seconds, self.bytes_sent, self.touched_bytes

    def evaluate(self, data) -> dict[str, float]:
        return self.model.evaluate(data, progress=False)

    def saved(self) -> bytes:
        """The model file of this replica: the driver writes it where the run keeps its checkpoint (this worker
        may run on another machine)."""
        with tempfile.TemporaryDirectory(prefix="boltc-worker-") as folder:
            self.model.save(Path(folder) / "replica.boltm")
            return (Path(folder) / "replica.boltm").read_bytes()

    def finish(self, validation) -> bytes:
        """The model as fit() leaves it (final tables; sparse inference's candidate count chosen on the
        validation rows), saved."""
        model = self.model
        tables_for_inference(model, restored=False)
        if validation is not None and model.sparse_output:
            model.forget_sparse_check()
            model.choose_lsh_candidates(model.prepare_data(validation, labelled=True))
        return self.saved()


def _model_of(contents: bytes):
    """A model from a model file's contents, written to a file of its own first (load_model reads a path)."""
    from boltc.pipeline import load_model

    with tempfile.TemporaryDirectory(prefix="boltc-worker-") as folder:
        path = Path(folder) / "start.boltm"
        path.write_bytes(contents)
        return load_model(path)


@dataclass
class Settings:
    """What a distributed run trains: the workers and how they exchange, and the epochs."""

    workers: int
    epochs: int
    threads_per_worker: int = 1
    address: str | None = None  # a Ray cluster's address ("auto", "ray://host:port"); None: a local instance
    wire: str = "fp32"  # gradient rows on the wire: fp32, or bf16 (half the bytes, rounded)
    batches_per_step: int = 1  # global batches whose gradients one exchange carries (one update for all of them)
    max_failures: int = 3
    validation: str | None = None  # a file evaluated after every epoch (by the first worker)
    checkpoint: str | None = None  # a model file written after every epoch
    batch_size: int | None = None
    in_process: bool = False  # the workers one after another in this process, without Ray (tests, debugging)


class _LocalGroup:
    """The workers in this process, called one after another: the same steps, without Ray."""

    def __init__(self, settings: Settings, model_bytes: bytes, data: TrainingData):
        self.workers = [Worker(rank, settings.workers, model_bytes, data, settings.threads_per_worker, settings.wire)
                        for rank in range(settings.workers)]

    def each(self, method: str, *args) -> list:
        return [getattr(worker, method)(*args) for worker in self.workers]

    def at(self, rank: int, method: str, *args):
        return getattr(self.workers[rank], method)(*args)

    def steps(self, count: int) -> list[tuple[float, int]]:
        done = []
        for step in range(count):
            shares = [worker.compute(step) for worker in self.workers]
            done.append([worker.apply(*shares) for worker in self.workers][0])
        return done

    def close(self) -> None:
        self.workers = []


class _RayGroup:
    """The workers as Ray actors, each given the CPUs of its threads; the driver submits steps a window ahead."""

    def __init__(self, settings: Settings, model_bytes: bytes, data: TrainingData):
        import ray

        self.ray = ray
        actor = ray.remote(Worker).options(num_cpus=settings.threads_per_worker, max_restarts=0)
        model_ref, data_ref = ray.put(model_bytes), ray.put(data)  # stored once, read by every worker
        self.workers = [actor.remote(rank, settings.workers, model_ref, data_ref, settings.threads_per_worker,
                                     settings.wire) for rank in range(settings.workers)]

    def each(self, method: str, *args) -> list:
        return self.ray.get([getattr(worker, method).remote(*args) for worker in self.workers])

    def at(self, rank: int, method: str, *args):
        return self.ray.get(getattr(self.workers[rank], method).remote(*args))

    def steps(self, count: int) -> list[tuple[float, int]]:
        pending, done = [], []
        for step in range(count):
            shares = [worker.compute.remote(step) for worker in self.workers]
            pending.append([worker.apply.remote(*shares) for worker in self.workers])
            if len(pending) > STEPS_AHEAD:
                done.append(self.ray.get(pending.pop(0))[0])
        done.extend(self.ray.get(applied)[0] for applied in pending)
        return done

    def close(self) -> None:
        for worker in self.workers:
            self.ray.kill(worker)
        self.workers = []


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


def prepare(model, train_data) -> None:
    """What the first fit() fixes before its epochs, fixed once for every worker: sizes learned from the data,
    the tuned plan, the learning rate raced on the first rows, the inputs' statistics."""
    if model.step == 0 and model.epochs_trained == 0:
        source = Stream(str(train_data)) if isinstance(train_data, (str, Path)) and not model.reads_columns \
            and len(model.plan.inputs) == 1 else train_data
        model.fit(source, epochs=0, validation=False, progress=False)


def train(model, train_data, settings: Settings, on_group: Callable | None = None):
    """Train `model` for ``settings.epochs`` epochs in all (counting those it has) on ``settings.workers``
    workers, from an XMC file or directory of files (each worker reads its share) or data in memory; returns the
    trained model, as the first worker's replica ends, and the run's history. ``on_group`` is called with each
    group of workers started (a test kills one through it)."""
    if settings.workers < 1:
        raise UsageError(f"workers must be 1 or more, got {settings.workers}")
    if model.sparse_layers and model.sparse_layers[0].lsh.freeze_after_epochs is not None:
        raise UsageError(f"model '{model.plan.model_name}' freezes its tables (freeze_tables_after): each worker "
                         "would insert only its own rows' labels, and the replicas would part; train it in one "
                         "process")
    if model.plan.warmup or model.plan.schedule != "constant":
        raise UsageError(f"model '{model.plan.model_name}' has a learning-rate warmup or schedule, which distributed "
                         "training does not follow yet: train it in one process, or with a constant rate")
    if settings.batches_per_step < 1:
        raise UsageError(f"batches per exchange must be 1 or more, got {settings.batches_per_step}")
    if settings.wire not in exchange.WIRE_PRECISIONS:
        raise UsageError(f"the wire precision must be one of {', '.join(exchange.WIRE_PRECISIONS)}, got "
                         f"{settings.wire!r}")
    ray = None if settings.in_process else _ray()
    prepare(model, train_data)
    data = TrainingData(path=str(train_data), skip_bad_rows=model.skip_bad_rows) \
        if isinstance(train_data, (str, Path)) else \
        TrainingData(dataset=model.prepare_data(train_data, labelled=True, scaled=False))
    batch_size = settings.batch_size or model.plan.batch_size
    if not 1 <= batch_size <= model.plan.batch_size:
        raise UsageError(f"batch_size must be between 1 and {model.plan.batch_size}, the size the model was compiled "
                         "for: the global batch, which the workers share")
    started_ray = ray is not None and not ray.is_initialized()
    if started_ray:
        ray.init(address=settings.address, include_dashboard=False, log_to_driver=False,
                 **({} if settings.address else {"num_cpus": settings.workers * settings.threads_per_worker}))
    history = DistributedHistory(workers=settings.workers, threads_per_worker=settings.threads_per_worker,
                                 learning_rate=model.learning_rate or 0.0)
    work = Path(tempfile.mkdtemp(prefix="boltc-distributed-"))
    last = Path(settings.checkpoint) if settings.checkpoint else work / "last.boltm"
    try:
        model.save(last)
        failures = 0
        while True:
            group = (_RayGroup if ray is not None else _LocalGroup)(settings, last.read_bytes(), data)
            try:
                if on_group is not None:
                    on_group(group)
                _epochs(group, checkpoint.read_header(last)[0]["epochs_trained"], settings, batch_size, history, last)
                _write(last, group.at(0, "finish", settings.validation))
                break
            except Exception as exc:
                if ray is None or not isinstance(exc, ray.exceptions.RayActorError):
                    raise
                failures += 1
                if failures > settings.max_failures:
                    raise UsageError(f"a worker died {failures} times; the last checkpoint is {last}") from exc
                history.restarts += 1
                resumed = checkpoint.read_header(last)[0]["epochs_trained"]  # the next attempt starts there
                del history.epochs[resumed:], history.exchanges[resumed:]
            finally:
                group.close()
        from boltc.pipeline import load_model

        return load_model(last), history
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if started_ray:
            ray.shutdown()


def _write(path: Path, contents: bytes) -> None:
    checkpoint.write_atomically(path, lambda handle: handle.write(contents))


def _epochs(group, done: int, settings: Settings, batch_size: int, history: DistributedHistory, last: Path) -> None:
    """Epochs `done` + 1 .. settings.epochs, each checkpointed into `last` by the first worker."""
    sizes = group.each("rows")
    offsets = np.cumsum([0] + sizes)
    total = int(offsets[-1])
    if total == 0:
        raise UsageError("the training data has no rows")
    for rank, first_row in enumerate(offsets[:-1]):
        group.at(rank, "place", int(first_row), total)
    for epoch in range(done, settings.epochs):
        steps = group.each("begin_epoch", batch_size, settings.batches_per_step)[0]
        started = time.perf_counter()
        results = group.steps(steps)
        wall = time.perf_counter() - started
        costs = group.each("end_epoch")
        record = EpochRecord(epoch + 1, sum(loss for loss, _ in results) / total, wall, total)
        if settings.validation is not None:
            record.validation = group.at(0, "evaluate", settings.validation)
        history.epochs.append(record)
        history.exchanges.append(ExchangeRecord(
            epoch + 1, steps, bytes_sent=float(np.mean([c[2] for c in costs])) / steps,
            touched_bytes=costs[0][3] / steps, compute_seconds=float(np.mean([c[0] for c in costs])) / steps,
            apply_seconds=float(np.mean([c[1] for c in costs])) / steps, wall_seconds=wall))
        _write(last, group.at(0, "saved"))
