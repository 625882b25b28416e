"""The training loop of a Model: epochs of batches through the compiled code, the learning-rate race, validation,
early stopping and the return to the best epoch, the hash tables' rebuild schedule, and Ctrl-C between batches.

Functions of a ``boltc.model.Model``: it holds the state (its arrays, step count, rate, rebuild schedule); this
module holds what training does with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import math
import operator
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

from boltc import rates
from boltc.data import Dataset, data_fingerprint, learn_scaling, take_rows
from boltc.diagnostics import UsageError
from boltc.machine import probe
from boltc.model_arrays import Feed
from boltc.plan import PLATEAU_DECAY, UNMEASURED_LEARNING_RATE
from boltc.progress import Progress
from boltc.streaming import ChunkReader, Stream

if TYPE_CHECKING:
    from boltc.model import Model

HOLDOUT_STREAM = 7919  # the held-out validation rows' random stream, apart from the epochs' orders
# a gathering layer's arrays with a row per input feature, which training changes only in the rows of features seen
ROW_TRAINED_ROLES = ("weights", "weights_m", "weights_v")


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


@dataclass
class RebuildSchedule:
    """When the sparse layers' tables are rebuilt next: periods that grow as training settles."""

    period: float = 0.0  # batches between the last rebuild and the next (0: none scheduled yet)
    batches_left: int = 0
    rebuilds: int = 0  # since the last new hash functions


@dataclass
class _FreshTables:
    """The hash functions and tables of freshly initialised weights, and the rebuild schedule's state with them."""

    arrays: dict[str, np.ndarray]
    schedule: RebuildSchedule


@dataclass
class _Run:
    """What one fit() trains and chooses on."""

    dataset: Dataset  # scaled
    train_rows: np.ndarray
    validation: Dataset | None  # scaled
    validation_source: str
    test: Dataset | Stream | None  # evaluated after every epoch (a Stream chunk by chunk)
    budget: int  # epochs at most
    auto: bool
    batch_size: int
    restore_best: bool


def fit(model: Model, train, epochs: int | str | None = None, validation=None, batch_size: int | None = None,
        learning_rate: float | None = None, progress: bool | None = None, final_rebuild: bool = True,
        test=None, checkpoint: str | Path | None = None) -> History:
    """Model.fit (which documents it)."""
    if model.inference_only:
        raise UsageError(f"model '{model.plan.model_name}' was saved for inference only (no optimizer state): it "
                         "cannot be trained; load the full model file to train on")
    train = model.data_source(train)
    stream = StreamedEpochs(model, train) if isinstance(train, Stream) else None
    raw = stream.first if stream else model.prepare_data(train, labelled=True, learn_labels=True, scaled=False)
    if model.tuner is not None and model.step == 0 and model.sparse_output:  # sizes learned: the plan is final
        model.tune(raw)
    if learning_rate is not None:
        if not (learning_rate > 0 and math.isfinite(learning_rate)):
            raise UsageError(f"learning_rate must be positive and finite, got {learning_rate}")
        model.learning_rate = learning_rate
    run = _run_of(model, raw, epochs, validation, batch_size, test)
    feed = model.compiled.feed(run.dataset, model.threads)
    if stream is None:
        rows_per_epoch = len(run.train_rows)

        def parts(epoch: int) -> Iterable[tuple[Feed, np.ndarray]]:
            return [(feed, run.train_rows[model.epoch_order(epoch, rows_per_epoch)])]
    else:
        parts, rows_per_epoch = functools.partial(stream.parts, run.train_rows, feed), stream.rows_estimate(run)
    history = History(validation_rows=run.validation.n_rows if run.validation is not None else 0,
                      validation_source=run.validation_source,
                      monitor=model.plan.metrics[0] if model.plan.metrics else "loss")
    if model.learning_rate is None:
        model.rate_choice = choose_learning_rate(model, feed, run.train_rows, run.batch_size, progress)
        model.learning_rate = model.rate_choice.learning_rate if model.rate_choice is not None else \
            UNMEASURED_LEARNING_RATE[model.plan.optimizer]
    history.learning_rate = model.learning_rate
    started = time.perf_counter()
    best_parameters, validation_seconds = _epochs(model, run, parts, rows_per_epoch, history, progress, checkpoint)
    restored = run.restore_best and best_parameters is not None and \
        history.best_epoch != history.epochs[-1].epoch
    if restored:
        return_to(model, best_parameters, rebuild=False)  # the final rebuild below follows them
        history.restored_epoch = history.best_epoch
    if final_rebuild and history.epochs:
        tables_for_inference(model, restored)
    history.wall_seconds = time.perf_counter() - started - validation_seconds
    if final_rebuild and history.epochs and model.sparse_output:
        # measured for these weights, or not at all: an earlier fit's choice would no longer hold
        model.forget_sparse_check()
        if run.validation is not None:
            before = time.perf_counter()
            model.choose_lsh_candidates(run.validation)
            validation_seconds += time.perf_counter() - before
    history.validation_seconds = validation_seconds
    return history


def _run_of(model: Model, raw: Dataset, epochs, validation, batch_size: int | None, test) -> _Run:
    """fit()'s arguments checked against the plan, the validation rows split off, and the inputs' statistics
    learned from the training rows (at the first fit)."""
    plan = model.plan
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
    raw = model.prepare_data(raw, labelled=True, scaled=False)
    train_rows, validation_set, validation_source = split_validation(model, raw, validation, auto)
    if model.input_scaling is None:
        model.input_scaling = learn_scaling(raw, [i.index for i in plan.inputs if i.standardize], train_rows)
    if auto and validation_set is None:
        raise UsageError("epochs=auto stops on a validation metric: give validation rows (a file, a data set or "
                         "a fraction of the training rows), not validation=False")
    if validation_set is not None and validation_set.n_rows == 0:
        raise UsageError(f"the validation rows ({validation_source}) are empty: training chooses on them")
    return _Run(model.scaled(raw), train_rows,
                model.scaled(validation_set) if validation_set is not None else None, validation_source,
                model.prepare_data(test, labelled=True) if test is not None and not isinstance(test, Stream) else test,
                budget, auto, batch_size,
                auto if plan.restore_best is None else plan.restore_best)


def _epochs(model: Model, run: _Run, parts: Callable[[int], Iterable[tuple[Feed, np.ndarray]]], rows_per_epoch: int,
            history: History, progress: bool | None, checkpoint: str | Path | None = None
            ) -> tuple[dict[str, np.ndarray] | None, float]:
    """Up to the run's budget of epochs, each over `parts` of the epoch's number (a feed and the order in which to
    visit its rows; one for data in memory, a chunk's for a stream), each evaluated on the validation (and test)
    rows; epochs=auto stops at the spec's patience, and after a worse epoch goes on from the best one at a lower
    rate. Returns the best epoch's parameters (when the run restores them) and the seconds spent evaluating."""
    best_parameters, validation_seconds = None, 0.0
    batches_per_epoch = -(-rows_per_epoch // run.batch_size)
    try:
        for _ in range(run.budget):
            with interrupts_deferred() as interrupted:  # an epoch that ran to its end is counted
                record = run_epoch_parts(model, parts(model.epochs_trained), rows_per_epoch, run.batch_size,
                                         progress, interrupted, schedule=(len(history.epochs) * batches_per_epoch,
                                                                          run.budget * batches_per_epoch))
                model.epochs_trained += 1
                epoch_end_rebuild(model)
                before = time.perf_counter()
                if run.validation is not None:
                    record.validation = model.evaluate(run.validation, progress=False)
                if run.test is not None:
                    record.test = model.evaluate(run.test, progress=False)
                validation_seconds += time.perf_counter() - before
                history.epochs.append(record)
                if checkpoint is not None:
                    model.save(checkpoint)
            if run.validation is None:
                continue
            if history.improved_by(record):
                history.best_epoch, history.best_metric = record.epoch, record.validation[history.monitor]
                if run.restore_best:
                    best_parameters = keep_parameters(model, best_parameters)
            elif run.auto:
                history.epochs_without_improvement += 1
                if history.epochs_without_improvement >= model.plan.patience:
                    history.stopped_early = True
                    break
                model.learning_rate *= PLATEAU_DECAY
                if best_parameters is not None:  # a worse epoch is left behind, not trained on from
                    return_to(model, best_parameters)
                    history.returns_to_best += 1
    except KeyboardInterrupt:
        pass
    return best_parameters, validation_seconds


def epoch_end_rebuild(model: Model) -> None:
    """Tables of the epoch's last weights, whether or not training goes on (the schedule's countdown goes on
    where it was): what the end of fit() leaves for inference and a saved model, and the same tables at the same
    step in a run that goes on, so that training resumed from here (another fit, a loaded model) follows it."""
    if model.training_reads_tables and not tables_frozen(model) and model.tables_step != model.step:
        model.rebuild()


def tables_for_inference(model: Model, restored: bool) -> None:
    """Tables of the final weights for inference, where the last epoch's end did not leave them (tables training
    never reads, the best epoch's weights restored). Frozen tables keep their inserted labels (sparse inference
    finds the heavy rows of the final weights)."""
    if not model.sparse_layers:
        return
    frozen = tables_frozen(model) and not restored
    if not frozen and (restored or model.tables_step != model.step):
        model.rebuild()


def return_to(model: Model, kept: dict[str, np.ndarray], rebuild: bool = True) -> None:
    """The kept parameters back in the model (Adam's moments go on as they are), and tables hashed from them."""
    for name, array in kept.items():
        np.copyto(model.arrays[name], array)
    model.weights_changed()
    if rebuild and model.sparse_layers:
        model.rebuild()


def keep_parameters(model: Model, kept: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """A copy of the parameters (into `kept`'s arrays when given): a third of what the model holds with Adam's
    moments, so keeping the best epoch adds a third to the model's memory, never doubles it."""
    if kept is None:
        return {name: array.copy() for name, array in model.parameters().items()}
    for name, array in model.parameters().items():
        np.copyto(kept[name], array)
    return kept


def split_validation(model: Model, dataset: Dataset, validation,
                     auto: bool) -> tuple[np.ndarray, Dataset | None, str]:
    """The training rows, the validation set (unscaled) and where it came from: `validation` as ``fit`` takes
    it, for a run of `auto` epochs or not."""
    plan, all_rows = model.plan, np.arange(dataset.n_rows, dtype=np.int64)
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
    validation_set = model.prepare_data(validation, labelled=True, scaled=False)
    described = validation_set.path if validation_set.path and not isinstance(validation, Dataset) else \
        "the validation set given"
    return all_rows, validation_set, str(described)


def choose_learning_rate(model: Model, feed: Feed, train_rows: np.ndarray, batch_size: int,
                         progress: bool | None) -> rates.RateChoice | None:
    """learning_rate=auto: race the grid (``rates``) on this fresh model, from the cache when it was raced on
    the same data, spec and machine. With measuring off, the optimizer's usual default."""
    if not model.measure_learning_rate or model.step != 0 or len(train_rows) == 0:
        return None
    machine = probe()
    key = rates.choice_key([machine.cpu_fingerprint, machine.compiler_id, model.plan.to_json(), batch_size,
                            data_fingerprint(feed.dataset),
                            hashlib.sha256(train_rows.tobytes()).hexdigest()])
    found = rates.cached(key)
    if found is not None:
        return found
    started = time.perf_counter()
    batches = rates.trial_batches(-(-len(train_rows) // batch_size))
    order = train_rows[model.epoch_order(0, len(train_rows))][: batches * batch_size]
    trained_rows = rows_trained_by(model, feed.dataset, order)
    weights = {spec.name: model.arrays[spec.name][trained_rows[spec.layer]] if spec.layer in trained_rows else
               model.arrays[spec.name].copy() for spec in model.buffers if spec.role == "weights"}
    grid = rates.GRID[model.plan.optimizer]
    bar = Progress("learning rate", len(grid) * len(order), enabled=progress)
    trials: list[rates.RateTrial] = []
    fresh = None
    try:
        while (rate := rates.next_rate(grid, trials)) is not None:
            fresh = restart(model, weights, trained_rows, fresh)
            model.learning_rate = rate
            losses: list[float] = []
            trial_started = time.perf_counter()
            with interrupts_deferred() as interrupted:
                try:
                    run_epoch(model, feed, order, batch_size, False, interrupted, batch_losses=losses)
                except TrainingError:
                    losses.append(float("inf"))
            trials.append(rates.RateTrial(rate, rates.progressive_loss(losses),
                                          time.perf_counter() - trial_started))
            bar.advance(len(order), f"{rate:g}: {trials[-1].loss:.4f}")
    finally:
        bar.close()
        restart(model, weights, trained_rows, fresh)
        model.learning_rate = None  # an interrupted or failed race leaves the choice to the next fit
    fastest = rates.fastest(trials)
    if fastest is None:
        raise TrainingError(f"the loss diverged at every learning rate down to {min(grid):g}: check the data "
                            "(values far outside a float's range?) or name a learning rate")
    choice = rates.RateChoice(key, rates.step_below(grid, fastest), fastest, tuple(trials), batches, len(order),
                              time.perf_counter() - started)
    rates.store(choice)
    return choice


def rows_trained_by(model: Model, dataset: Dataset, rows: np.ndarray) -> dict[int, np.ndarray]:
    """For each layer that gathers the weight rows of a sparse input, by layer index, the rows that training on
    `rows` of `dataset` can change: those of the features present in them (lazy Adam leaves the rest alone)."""
    seen = take_rows(dataset, rows).features
    return {layer.index: np.unique(seen[layer.sources[0].index].indices) for layer in model.plan.layers
            if layer.gathers_input_rows}


def restart(model: Model, weights: dict[str, np.ndarray], trained_rows: dict[int, np.ndarray],
            fresh: _FreshTables | None = None) -> _FreshTables:
    """Back to the state ``initialize`` made, with its initial `weights` kept aside (drawing them again from
    the seed costs seconds at 670K outputs), and the hash functions and tables of an earlier restart copied back
    (`fresh`) rather than drawn and rebuilt again (a second at 670K outputs); returns them. A gathering layer's
    weights and moments are put back only in its `trained_rows` (``weights`` holds those rows alone): at 2^20
    features, copying and zeroing all of them cost more than the trials' training."""
    for spec in model.buffers:
        rows = trained_rows.get(spec.layer) if spec.role in ROW_TRAINED_ROLES else None
        if rows is not None:
            model.arrays[spec.name][rows] = weights[spec.name] if spec.role == "weights" else 0
        elif spec.name in weights:
            np.copyto(model.arrays[spec.name], weights[spec.name])
        elif fresh is not None and spec.name in fresh.arrays:
            np.copyto(model.arrays[spec.name], fresh.arrays[spec.name])
        elif spec.role == "weights":
            raise AssertionError(f"no initial weights for {spec.name}")
        else:
            model.arrays[spec.name].fill(0)
    model.step = 0
    model.epochs_trained = 0
    model.rebuild_schedule.period = 0.0
    if fresh is None:
        reconstruct(model, model.plan.seed)
        fresh = _FreshTables({spec.name: model.arrays[spec.name].copy() for spec in model.buffers
                              if spec.kind in ("table", "hash")}, dataclasses.replace(model.rebuild_schedule))
    else:
        model.rebuild_schedule = dataclasses.replace(fresh.schedule)
        model.weights_changed()
    return fresh


def rate_at(model: Model, batch_in_fit: int, planned_batches: int) -> float:
    """The learning rate of the next batch: warm-up over the spec's first batches, then its decay schedule."""
    plan, factor = model.plan, 1.0
    if plan.warmup and model.step < plan.warmup:
        factor = (model.step + 1) / plan.warmup
    done = min(1.0, batch_in_fit / max(1, planned_batches))
    if plan.schedule == "linear":
        factor *= 1.0 - done
    elif plan.schedule == "cosine":
        factor *= 0.5 * (1.0 + math.cos(math.pi * done))
    return model.learning_rate * factor


def run_epoch(model: Model, feed: Feed, order: np.ndarray, batch_size: int, progress: bool | None,
              interrupted: threading.Event, schedule: tuple[int, int] = (0, 0),
              batch_losses: list[float] | None = None) -> EpochRecord:
    """One pass over the feed's rows in ``order`` (``run_epoch_parts`` of one part)."""
    return run_epoch_parts(model, [(feed, order)], len(order), batch_size, progress, interrupted, schedule,
                           batch_losses)


def run_epoch_parts(model: Model, parts: Iterable[tuple[Feed, np.ndarray]], rows_expected: int, batch_size: int,
                    progress: bool | None, interrupted: threading.Event, schedule: tuple[int, int] = (0, 0),
                    batch_losses: list[float] | None = None) -> EpochRecord:
    """One pass over each part's feed in its order (batches never span parts); raises KeyboardInterrupt between
    batches once ``interrupted`` is set, never between a batch's update and its bookkeeping. ``schedule``: the
    batches of this fit before this epoch, and all it plans (0: a constant rate). ``rows_expected`` sizes the
    progress bar (a stream's estimate)."""
    plan = model.plan
    scheduled = schedule[1] > 0 and (plan.warmup > 0 or plan.schedule != "constant")  # the race: constant
    frozen = step_settings(model)
    bar = Progress(f"epoch {model.epochs_trained + 1}", rows_expected, enabled=progress)
    loss_total, started, n_rows, batch_number = 0.0, time.perf_counter(), 0, 0
    for feed, order in parts:
        for start in range(0, len(order), batch_size):
            if interrupted.is_set():  # checked before a batch: an interrupt during the last one ends the epoch whole
                bar.close()
                raise KeyboardInterrupt
            rows = order[start:start + batch_size]
            feed.select(rows)
            next_step(model, rate_at(model, schedule[0] + batch_number, schedule[1]) if scheduled else None)
            status, batch_loss = model.compiled.train_batch(feed)
            if model.compiled.nonfinite_loss(status):
                raise nonfinite_loss(model, batch_loss, batch_number)
            model.compiled.check(status)
            step_taken(model, frozen)
            batch_number += 1
            n_rows += len(rows)
            loss_total += batch_loss
            if batch_losses is not None:
                batch_losses.append(batch_loss / len(rows))
            bar.advance(len(rows), f"loss {loss_total / n_rows:.4f}")
    seconds = time.perf_counter() - started
    bar.close()
    return EpochRecord(model.epochs_trained + 1, loss_total / max(n_rows, 1), seconds, n_rows)


def step_settings(model: Model) -> bool:
    """The settings of an epoch's steps in ``compiled.step_struct`` (learning rate, Adam's constants, label
    insertion); returns whether the tables are frozen."""
    plan, step = model.plan, model.compiled.step_struct
    step.learning_rate, step.beta1, step.beta2, step.eps = model.learning_rate, plan.beta1, plan.beta2, plan.eps
    frozen = bool(model.sparse_layers) and tables_frozen(model)
    step.insert_labels = int(frozen)
    return frozen


def next_step(model: Model, learning_rate: float | None) -> None:
    """The next step's number (Adam's bias correction counts it) and, under a schedule, its learning rate."""
    step = model.compiled.step_struct
    step.step = model.step + 1
    if learning_rate is not None:
        step.learning_rate = learning_rate


def nonfinite_loss(model: Model, loss: float, batch_number: int) -> TrainingError:
    return TrainingError(f"the loss became {loss} at batch {batch_number + 1} of epoch {model.epochs_trained + 1}; "
                         "training stopped before that batch's update (try a lower learning rate)")


def step_taken(model: Model, frozen: bool) -> None:
    """A step's update is in the parameters: it is counted, and the tables are rebuilt when the schedule says."""
    model.step += 1
    if model.training_reads_tables and not frozen:
        model.rebuild_schedule.batches_left -= 1
        if model.rebuild_schedule.batches_left <= 0:
            scheduled_rebuild(model)


class StreamedEpochs:
    """fit() over a ``Stream``: the first chunk is read at once and stays in memory (the tuner, the rate race and
    held-out validation rows take it, as they would take the whole data set in memory); each epoch then visits
    the chunks in file order, each chunk's rows in a seeded order of their own (``Model.chunk_order``: the first
    chunk's is the order of data held whole, so a stream of one chunk trains exactly as the file in memory)."""

    def __init__(self, model: Model, stream: Stream):
        plan = model.plan
        if model.reads_columns or len(plan.inputs) != 1:
            raise UsageError(f"model '{plan.model_name}' reads " + ("typed columns" if model.reads_columns else
                             f"{len(plan.inputs)} inputs") + ": a stream reads XMC text files for a model of one input")
        if model.learner is not None:
            model.learn_sizes(stream)
        self.model, self.stream = model, stream
        self.reader = ChunkReader(stream, model.plan.inputs[0].dim, model.plan.target_dim, model.skip_bad_rows)
        self.pending = self.reader.chunks()
        self.first, self.first_position = next(self.pending)
        self.first = model.prepare_data(self.first, labelled=True, scaled=False)

    def rows_estimate(self, run: _Run) -> int:
        """The training rows of an epoch, estimated from the first chunk's share of the files' bytes."""
        share = self.first_position / max(self.reader.total_bytes, 1)
        return max(len(run.train_rows), int(len(run.train_rows) / share) if share > 0 else len(run.train_rows))

    def parts(self, first_rows: np.ndarray, first_feed: Feed, epoch: int) -> Iterator[tuple[Feed, np.ndarray]]:
        """The epoch's chunks: the first (held) one's training rows, then the others as they are read."""
        model = self.model
        yield first_feed, first_rows[model.chunk_order(epoch, 0, len(first_rows))]
        if self.pending is not None:  # the first epoch reads on from the first chunk
            later, self.pending = self.pending, None
        else:
            later = itertools.islice(self.reader.chunks(), 1, None)
        for index, (chunk, _) in enumerate(later, start=1):
            dataset = model.prepare_data(chunk, labelled=True)
            yield model.compiled.feed(dataset, model.threads), model.chunk_order(epoch, index, dataset.n_rows)


def reconstruct(model: Model, seed: int) -> None:
    """New LSH functions for every sparse layer (drawn as its hash family draws them, and a random neuron order
    for capped buckets and top-ups), then tables rebuilt."""
    model.compiled.draw_hash_functions(seed, model.step)
    model.rebuild_schedule.rebuilds = 0
    scheduled_rebuild(model)


def tables_frozen(model: Model) -> bool:
    freeze = model.sparse_layers[0].lsh.freeze_after_epochs
    return freeze is not None and model.epochs_trained >= freeze


def scheduled_rebuild(model: Model) -> None:
    """Rebuild, and lengthen the period to the next one (the tables matter less as training settles)."""
    if not model.sparse_layers:
        return
    lsh = model.sparse_layers[0].lsh
    model.rebuild_schedule.rebuilds += 1
    if lsh.reconstruct_every and model.rebuild_schedule.rebuilds % lsh.reconstruct_every == 0:
        # fresh functions keep collisions from settling on old ones
        model.compiled.draw_hash_functions(model.plan.seed, model.step)
    model.rebuild()
    schedule = model.rebuild_schedule
    schedule.period = schedule.period * lsh.rebuild_growth if schedule.period else float(lsh.rebuild_first)
    schedule.batches_left = int(schedule.period)
