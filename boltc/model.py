"""The trained-model object users hold: fit, evaluate, predict, save.

It sees only the ``Plan``, the ``CompiledLibrary`` and the buffer table, never the spec, and holds what a model is
besides its arrays: its training state, what it learned from data (label names, histories, neighbours, input
statistics) and the sparse-inference check. Each job lives in a module of its own: the arrays and C entry points
(``model_arrays``), the training loop (``training``), the sparse-inference check (``sparse_check``), the model file
(``model_file``); this class keeps the data preparation and inference, and hands the rest over.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from boltc import facts, ir, model_file, rates, sparse_check, training
from boltc import metrics as ranking
from boltc.abi import BufferSpec
from boltc.build import CompiledLibrary
from boltc.columns import HistoryState, NodeStore, TextFile, concatenated_keys, read_columns, with_context
from boltc.data import (Dataset, FeatureMatrix, Scaling, apply_scaling, concatenated, data_files, from_arrays,
                        read_xmc)
from boltc.diagnostics import UsageError
from boltc.model_arrays import ModelArrays
from boltc.plan import Plan
from boltc.progress import Progress
from boltc.sparse_check import SPARSE_CHECK_ROWS
from boltc.streaming import ChunkReader, Stream, streamed_if_large
from boltc.tables import Records
from boltc.training import History, RebuildSchedule

# what a tuner hands a model to become: the plan made on measured values, its library and buffers, and the
# boltc.tune.Tuning that measured them
Tuned = tuple[Plan, CompiledLibrary, tuple[BufferSpec, ...], object]
# what a learner hands a model whose spec leaves sizes to the data: the plan made on them, its library and buffers
Compiled = tuple[Plan, CompiledLibrary, tuple[BufferSpec, ...]]


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
    gather_inputs = {layer.sources[0].index for layer in plan.layers if layer.gathers_input_rows}
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
        self.compiled = ModelArrays(plan, library, buffers)
        self.step = 0
        self.epochs_trained = 0
        self.rebuild_schedule = RebuildSchedule()
        self.learning_rate = plan.learning_rate  # None until the first fit measures it (learning_rate=auto)
        self.measure_learning_rate = True  # False (boltc.load(tune=False)): auto is the optimizer's usual default
        self.rate_choice: rates.RateChoice | None = None  # what the first fit raced
        # dense inputs the spec standardises: their training statistics, learned by the first fit (None before)
        self.input_scaling: dict[int, Scaling] | None = None
        self.sparse_check: dict[str, float] | None = None  # measure_sparse_recall on the last fit's validation rows
        # sparse inference's LSH candidates per row besides the heavy rows (None: all the plan has room for); fit()
        # chooses it on its validation rows
        self.lsh_candidates: int | None = None
        self.sparse_warned = False
        self.threads = plan.threads  # may be changed between calls; results do not depend on it
        # data files read by fit and evaluate leave out (and count) rows that break their format; predict never
        self.skip_bad_rows = False
        # loaded from a file saved for inference only (no optimizer state): it predicts and evaluates, never trains
        self.inference_only = False
        # the step whose weights sparse inference's heavy rows (and their packed copy) were found for: training never
        # reads them, sparse inference finds them again once the weights changed
        self._heavy_step = -1
        self.tables_step = -1  # the step whose weights the LSH tables were last rebuilt from
        # set by boltc.load: called by the first fit() with its data, returns the plan, library and buffers of the
        # spec planned on measured values, which this model then takes instead of its own (untrained) ones
        self.tuner: Callable[[Dataset, ir.Learned | None], Tuned] | None = None
        # set by boltc.load where the plan is provisional (ir.Model.provisional): called by the first fit() with what
        # the training data says of the spec's auto sizes, returns what this model becomes (as the tuner's)
        self.learner: Callable[[ir.Learned], Compiled] | None = None
        self.tuning = None  # the boltc.tune.Tuning this model's plan was made with, when fit() measured it
        # a model reading typed columns: the target's label names by id, learned from its first training file
        self.label_names: tuple[str, ...] | None = None
        # history inputs by index: each key's latest items over the files trained on (or absorbed by predict)
        self.histories: dict[int, HistoryState] = {}
        self.history_before: dict[int, tuple[str, HistoryState]] = {}  # the last file absorbed, and the state before
        self.node_stores: dict[int, NodeStore] = {}  # neighbours inputs by index: the nodes of the files trained on
        if initialize:
            self.initialize(plan.seed)

    # -- the arrays --------------------------------------------------------------------------------------

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        return self.compiled.arrays

    @property
    def buffers(self) -> tuple[BufferSpec, ...]:
        return self.compiled.buffers

    @property
    def library(self) -> CompiledLibrary:
        return self.compiled.library

    @property
    def real(self) -> np.dtype:
        return self.compiled.real

    @property
    def sparse_layers(self) -> list:
        return self.compiled.sparse_layers

    @property
    def sparse_output(self) -> bool:
        """Whether the output layer is LSH-sparse: sparse inference, its candidate check and tuning are its."""
        return self.plan.output.lsh is not None

    @property
    def training_reads_tables(self) -> bool:
        return any(layer.lsh.hashes_in_training for layer in self.sparse_layers)

    def tune(self, train: Dataset) -> None:
        """Take the arrays of the spec planned on values the tuner measures on `train` (untrained, as these are);
        what the model learned from data and the settings a user changed stay. This model's arrays are freed first:
        the tuner holds two models of its own at a time."""
        tuner, self.tuner = self.tuner, None
        plan, library, buffers = self.plan, self.library, self.buffers
        self.compiled = None
        try:
            plan, library, buffers, self.tuning = tuner(train, plan.learned)
        finally:
            self.plan, self.compiled = plan, ModelArrays(plan, library, buffers)
            self.initialize(plan.seed)

    def learn_sizes(self, train, skip_bad_rows: bool | None = None) -> None:
        """Read what `train` says of the sizes the spec leaves to the data (``boltc.facts``), and take the arrays of
        the spec compiled on them (untrained, as these are); a typed-column model keeps the label names read."""
        skip = self.skip_bad_rows if skip_bad_rows is None else skip_bad_rows
        learned, names = facts.learn(self.plan, self.library, train, skip)
        plan, library, buffers = self.learner(learned)
        compiled = ModelArrays(plan, library, buffers)  # made before anything changes: a failure leaves it as it was
        self.learner, self.label_names, self.plan, self.compiled = None, names, plan, compiled
        self.initialize(plan.seed)

    def _refuse_provisional(self) -> None:
        if self.plan.provisional:
            raise UsageError(f"model '{self.plan.model_name}' learns sizes its spec leaves to the data (a label count "
                             "or numerical bins) from its training data: fit it first")

    def initialize(self, seed: int) -> None:
        """Glorot-uniform weights, zero biases and optimizer state, fresh hash functions and tables; deterministic
        for a seed."""
        self.compiled.initialize_parameters(seed)
        self.step = 0
        self.epochs_trained = 0
        self.rebuild_schedule = RebuildSchedule()
        self.reconstruct(seed)

    def reconstruct(self, seed: int) -> None:
        """New LSH functions for every sparse layer (drawn as its hash family draws them, and a random neuron order
        for capped buckets and top-ups), then tables rebuilt."""
        training.reconstruct(self, seed)

    def rebuild(self) -> None:
        """Re-hash every sparse layer's neurons with its current weights (fit() does this on its schedule and at
        the end of every epoch, so that inference reads tables of the final weights)."""
        if self.sparse_layers:
            self.compiled.rebuild(self.threads)
            self.tables_step = self.step
            self.weights_changed()

    def weights_changed(self) -> None:
        """The weights changed under the same step (a best epoch restored): sparse inference's heavy rows are found
        again."""
        self._heavy_step = -1

    def kernel_profile(self) -> dict[str, dict[str, float]]:
        """Per LSH-sparse layer (by name): what its kernels counted in training since the model was made or the
        profile was reset, by ``SPARSE_PROFILE_FIELDS`` (seconds, batches, entries and neurons touched)."""
        return self.compiled.kernel_profile()

    def reset_kernel_profile(self) -> None:
        self.compiled.reset_kernel_profile()

    def parameters(self) -> dict[str, np.ndarray]:
        """The learned arrays by name (views: writing to them changes the model)."""
        return self.compiled.parameters()

    # -- data ------------------------------------------------------------------------------------------

    def prepare_data(self, data, labelled: bool, learn_labels: bool = False, absorb_history: bool | None = None,
                     skip_bad_rows: bool | None = None, scaled: bool = True) -> Dataset:
        """A data file, Dataset or arrays as a Dataset checked against this model's inputs and target. A model
        reading typed columns takes CSV/TSV files; with ``learn_labels`` (training data) and no label names yet,
        it learns them from the file. History inputs see, before a file's own earlier rows, what the model keeps
        of earlier files; with ``absorb_history`` (default: ``learn_labels``) the file's rows join it.
        A model whose spec leaves sizes to the data learns them from its training data first (``learn_sizes``).
        ``skip_bad_rows`` (default: the model's setting) leaves out the rows of a file that break its format.
        ``scaled``: standardised dense inputs as the model sees them (once their statistics are learned); fit()
        reads raw rows, learns the statistics from them, then scales."""
        skip = self.skip_bad_rows if skip_bad_rows is None else skip_bad_rows
        if self.plan.provisional and learn_labels and self.learner is not None:
            self.learn_sizes(data, skip)
        self._refuse_provisional()
        if isinstance(data, TextFile) and not self.reads_columns:
            raise UsageError(f"model '{self.plan.model_name}' reads XMC text files: a delimiter and quoting apply to "
                             "the CSV/TSV files of models with typed columns")
        if self.reads_columns and isinstance(data, (str, Path, TextFile, Records)):
            data = self._read_text_files(data if isinstance(data, (TextFile, Records)) else TextFile(data), labelled,
                                         learn_labels, learn_labels if absorb_history is None else absorb_history, skip)
        dataset = dataset_for(self.plan, data, labelled, skip)
        return self.scaled(dataset) if scaled else dataset

    def _read_text_files(self, text: TextFile | Records, labelled: bool, learn_labels: bool, absorb_history: bool,
                         skip_bad_rows: bool) -> Dataset:
        """The CSV/TSV files `text` names (one, a directory's or a pattern's), in order, as one file (or records
        held in memory): label names learned over all of them when the model has none yet, histories and
        neighbourhoods over all their rows. The model learns nothing from them unless every file reads."""
        if labelled and self.label_names is None and not learn_labels:
            raise UsageError(f"model '{self.plan.model_name}' has not learned its label names yet: fit it on "
                             "training data first")
        learning = labelled and learn_labels and self.label_names is None
        names, parts, keys = self.label_names, [], []
        parts_read = [text] if isinstance(text, Records) else [dataclasses.replace(text, path=name)
                                                               for name in data_files(text.path)]
        for index, part_read in enumerate(parts_read):
            part, learned, part_keys = read_columns(part_read, self.plan, self.library,
                                                    names, labelled, skip_bad_rows=skip_bad_rows,
                                                    more_labels=learning and index > 0)
            names = learned if learned is not None else names
            parts.append(part)
            keys.append(part_keys)
        dataset = concatenated(text.name if isinstance(text, Records) else str(text.path), parts)
        self.label_names = names
        if keys[0]:
            dataset = with_context(self, dataset, concatenated_keys(keys, [p.n_rows for p in parts], self.plan),
                                   absorb_history)
        return dataset

    def scaled(self, dataset: Dataset) -> Dataset:
        """`dataset` with the standardised inputs as the model sees them (once their statistics are learned)."""
        return apply_scaling(dataset, self.input_scaling or {})

    @property
    def reads_columns(self) -> bool:
        return any(i.column is not None for i in self.plan.inputs)

    # -- training --------------------------------------------------------------------------------------

    def fit(self, train, epochs: int | str | None = None, validation=None, batch_size: int | None = None,
            learning_rate: float | None = None, progress: bool | None = None, final_rebuild: bool = True,
            test=None, checkpoint: str | Path | None = None) -> History:
        """Train on ``train``; returns per-epoch records and what was chosen (``boltc.training``).

        ``epochs``: a count, ``"auto"`` (until the first metric on the validation rows has failed to improve in the
        spec's ``patience`` epochs of the run, ``max_epochs`` at most), or None for the spec's. ``validation``: the
        rows the loop chooses on (a data file, ``Dataset`` or ``(X, y)``), a fraction of the training rows to hold
        out (never trained on), ``False`` for none, or None for the spec's (where it names none, epochs=auto holds
        out 5%, 2,000 rows at most). The spec's ``restore_best`` (default: when epochs run auto) ends with the best
        epoch's parameters. ``test`` is evaluated after every epoch for the record only, never to choose. Without a
        learning rate (here or in the spec) the first fit races rates on the training data (``rates``). Ctrl-C stops
        after the current batch and returns the history so far; the model stays usable. Sparse layers' tables are
        rebuilt at the end for inference unless ``final_rebuild=False`` (when more training follows at once).
        ``checkpoint``: a model file written (atomically) after every epoch; a job stopped after epoch k goes on from
        it (``boltc.load_model``, then ``fit`` of the epochs left) exactly as it would have gone on.
        """
        return training.fit(self, train, epochs, validation, batch_size, learning_rate, progress, final_rebuild, test,
                            checkpoint)

    def choose_lsh_candidates(self, data, rows_most: int = SPARSE_CHECK_ROWS) -> dict[str, float]:
        """The fewest LSH candidates per row with which sparse inference keeps dense accuracy on (at most
        `rows_most` of) `data`; sets ``lsh_candidates`` and ``sparse_check`` (``boltc.sparse_check``)."""
        return sparse_check.choose_lsh_candidates(self, data, rows_most)

    def measure_sparse_recall(self, data, rows_most: int = SPARSE_CHECK_ROWS) -> dict[str, float]:
        """How often sparse inference scores the neuron dense inference ranks first, on (at most `rows_most` of)
        `data`: fit() measures it on its validation rows, a saved model keeps it, ``predict --sparse`` warns when it
        is low."""
        return sparse_check.measure_sparse_recall(self, data, rows_most)

    def forget_sparse_check(self) -> None:
        """The weights changed: an earlier check of sparse inference no longer holds."""
        self.sparse_check, self.lsh_candidates = None, None
        self.sparse_warned = False  # what sparse inference does now is worth a word again

    def epoch_order(self, epoch: int, n_rows: int) -> np.ndarray:
        """The order in which epoch `epoch` (0-based) visits the rows. It depends only on the seed and the epoch's
        number, so training in several fit() calls, or resuming a saved model, sees the same order as one call."""
        return np.random.default_rng([self.plan.seed, epoch]).permutation(n_rows)

    def chunk_order(self, epoch: int, chunk: int, n_rows: int) -> np.ndarray:
        """The order in which epoch `epoch` visits the rows of chunk `chunk` of a stream: the first chunk's is
        ``epoch_order``'s, so that a stream of one chunk trains as the same rows held in memory."""
        if chunk == 0:
            return self.epoch_order(epoch, n_rows)
        return np.random.default_rng([self.plan.seed, epoch, chunk]).permutation(n_rows)

    # -- inference -------------------------------------------------------------------------------------

    def infer(self, dataset: Dataset, top_k: int, progress: bool | None, label: str, sparse: bool,
               after_batch=None):
        plan = self.plan
        if sparse and not self.sparse_output:
            raise UsageError(f"model '{plan.model_name}' has no LSH-sparse layer: sparse inference needs an output "
                             "layer with sparsity")
        most = plan.output.lsh.inference_active if sparse else plan.output.out_dim
        if not 1 <= top_k <= most:
            raise UsageError(f"top_k must be between 1 and {most}" + (" (the active neurons per sample)" if sparse
                                                                      else "") + f", got {top_k}")
        if sparse and self._heavy_step != self.step:
            self.compiled.find_heavy(self.threads)
            self._heavy_step = self.step
        feed = self.compiled.feed(dataset, self.threads)
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
            loss_total += self.compiled.infer_batch(
                feed, top_k, ids[start:], scores[start:],
                None if after_batch is None else lambda: after_batch(start, len(rows)))
            bar.advance(len(rows))
        bar.close()
        return ids, scores, loss_total

    def evaluate(self, data, metrics: tuple[str, ...] | list[str] | None = None, progress: bool | None = None,
                 sparse: bool = False) -> dict[str, float]:
        """Metrics (default: the spec's, e.g. ``["accuracy", "precision@5", "loss"]``) over labelled data (a
        ``boltc.Stream`` is evaluated chunk by chunk).

        ``sparse=True`` scores only the neurons LSH selects in sparse layers (fast; the loss is then undefined and
        reported as NaN), or every output where ``sparse_scores_all`` (the last fit found the candidates miss)."""
        self._refuse_provisional()  # its output's width is a placeholder
        labels = tuple(metrics or self.plan.metrics)
        problem = ranking.invalid(labels, self.plan.output.out_dim)
        if problem:
            raise UsageError(problem)
        sparse = sparse_check.scores_sparsely(self, sparse)
        top_k = min(ranking.largest_k(labels), self.plan.output.out_dim)
        hit_parts, count_parts, loss_total, seconds, skipped = [], [], 0.0, 0.0, 0
        for dataset in self._datasets(data, labelled=True):
            skipped += dataset.skipped_rows
            started = time.perf_counter()
            ids, _, loss = self.infer(dataset, top_k, progress, "evaluate", sparse)
            seconds += time.perf_counter() - started
            rows = np.arange(dataset.n_rows, dtype=np.int64)
            hit_parts.append(ranking.hits(ids, dataset.label_indptr, dataset.label_ids, rows,
                                          self.plan.output.out_dim))
            count_parts.append(ranking.label_counts(dataset.label_indptr, rows))
            loss_total += loss
        results = ranking.compute(labels, np.concatenate(hit_parts), np.concatenate(count_parts),
                                  float("nan") if sparse else loss_total)
        self.last_eval_seconds = seconds  # inference alone: reading the data is not counted
        self.last_eval_rows = (sum(len(counts) for counts in count_parts), skipped)  # rows evaluated, rows skipped
        return results

    def data_source(self, data):
        """`data` as fit, evaluate and predict read it: XMC files too large for the memory budget as a Stream."""
        if self.reads_columns:
            return data
        return streamed_if_large(data, self.plan.parameter_bytes + self.plan.optimizer_bytes)

    def _datasets(self, data, labelled: bool, absorb_history: bool | None = None,
                  skip_bad_rows: bool | None = None) -> Iterator[Dataset]:
        """`data` prepared as one Dataset, or a Stream's chunks one after another (also XMC files too large to
        hold whole: ``streaming.streamed_if_large``)."""
        data = self.data_source(data)
        if not isinstance(data, Stream):
            yield self.prepare_data(data, labelled=labelled, absorb_history=absorb_history, skip_bad_rows=skip_bad_rows)
            return
        if self.reads_columns or len(self.plan.inputs) != 1:
            raise UsageError(f"model '{self.plan.model_name}' has typed columns or several inputs: a stream reads "
                             "XMC text files for a model of one input")
        skip = self.skip_bad_rows if skip_bad_rows is None else skip_bad_rows
        reader = ChunkReader(data, self.plan.inputs[0].dim, self.plan.target_dim, skip)
        for chunk, _ in reader.chunks():
            yield self.prepare_data(chunk, labelled=labelled)

    def ranked(self, dataset: Dataset, ids: np.ndarray, labels, loss_total: float = float("nan")) -> dict[str, float]:
        """The metrics `labels` of the ranked output ids [rows, k] against `dataset`'s labels."""
        row_ids = np.arange(dataset.n_rows, dtype=np.int64)
        hit_matrix = ranking.hits(ids, dataset.label_indptr, dataset.label_ids, row_ids, self.plan.output.out_dim)
        return ranking.compute(labels, hit_matrix, ranking.label_counts(dataset.label_indptr, row_ids), loss_total)

    def candidate_sets(self, data) -> tuple[np.ndarray, np.ndarray]:
        """The neurons sparse inference scores for each row of ``data`` in the output layer: ids [rows, width]
        (the first ``counts[r]`` of row r are valid, in selection order) and counts [rows]. ``boltc tune`` judges
        hash configurations by how many of each row's best-scoring neurons these sets hold."""
        return sparse_check.candidate_sets(self, data)

    def predict(self, data, top_k: int = 1, progress: bool | None = False, sparse: bool = False,
                update_history: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``top_k`` best output ids per row, best first, and their scores (probabilities; with
        ``sparse=True``, probabilities over the neurons sparse inference scores only: the heavy rows and the LSH
        candidates). With ``update_history`` the file's rows join what history inputs see next."""
        found = list(self.predict_chunks(data, top_k, progress, sparse, update_history))
        return np.concatenate([ids for ids, _ in found]), np.concatenate([scores for _, scores in found])

    def predict_chunks(self, data, top_k: int = 1, progress: bool | None = False, sparse: bool = False,
                       update_history: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``predict``'s ids and scores a part at a time: all of them for data in memory, a chunk's for each
        chunk of a ``boltc.Stream`` (so that output can be written as the rows are read)."""
        sparse = sparse_check.scores_sparsely(self, sparse)
        # never skipping rows: the output has a row per input row, and a left-out one would shift all after it
        for dataset in self._datasets(data, labelled=False, absorb_history=update_history, skip_bad_rows=False):
            ids, scores, _ = self.infer(dataset, top_k, progress, "predict", sparse)
            yield ids, scores

    @property
    def sparse_scores_all(self) -> bool:
        """Whether sparse inference scores every output: the last fit found no LSH candidate count that keeps
        dense inference's top-1 (``scores_all`` in ``sparse_check``, saved with it)."""
        return bool(self.sparse_check and self.sparse_check.get("scores_all"))

    # -- persistence -----------------------------------------------------------------------------------

    def save(self, path: str | Path, inference_only: bool | None = None) -> None:
        """Write parameters and optimizer state; ``boltc.load_model`` restores the model and can resume training.
        ``inference_only=True`` writes what prediction needs only (no optimizer state; the LSH tables as they are),
        which ``load_model`` maps instead of reading: a third of the file, loaded in a fraction of the time, and
        predicting exactly as this model does; such a model cannot be trained. Default: as this model was loaded."""
        model_file.save(self, path, inference_only)

    def saved_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a model file holds: parameters, optimizer state and hash functions (tables are rebuilt)."""
        return model_file.saved_arrays(self)

    def restore(self, path: str, header: dict, arrays: dict[str, np.ndarray]) -> None:
        """Fill this model from a model file's contents (its spec must have produced the same buffers)."""
        model_file.restore(self, path, header, arrays)
