"""Measured planning: the values of each LSH-sparse layer that BOLT derives from formulas, measured instead on the
user's data and this machine.

A short warm-up trains the formula's model on a sample of the data, so that the weights already point towards their
labels. Every candidate configuration (the update's part count and prefetch distance first, then hash family, K, L
and bucket cap) is planned, emitted and built like any spec, takes over the warmed weights and optimizer state
(and hash functions, where it hashes as the formula does), rebuilds its tables, and is scored by two measurements:
how many of the best-scoring neurons of held-out sample rows its LSH candidates hold (what LSH is for), how many of
the rows' labels they hold (what sparse P@k rests on), and the time of the layer's kernels in a training step plus
its share of the planned rebuilds. Both recalls leave out the heaviest rows, which sparse inference scores first
for every row whatever the hashing: they often hold every best-scoring neuron, and would make every hash variant
look perfect. The cheapest candidate whose two recalls are both within RECALL_KEPT of the formula's wins;
it must also be cheaper by more than TIME_NOISE than the formula's, measured again after the search, or the
formula's values stay. The choice is cached per machine, spec and data (``cache_root()/tuning``).

This module drives the stages (plan, emit, build, run) the way ``pipeline`` does; no stage calls back into it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass

import numpy as np

from boltc import ir
from boltc.abi import buffer_name
from boltc.build import build
from boltc.data import Dataset, data_fingerprint, take_rows
from boltc.emit import emit
from boltc.hashing import FAMILIES
from boltc.machine import Machine, read_cached_choice, store_choice
from boltc.model import Model
from boltc.plan import UNMEASURED_LEARNING_RATE, UPDATE_PARTS_MOST, LayerPlan, MeasuredLsh, Plan, lsh_plan, plan
from boltc.progress import Progress

TUNE_VERSION = 3
DEFAULT_BUDGET_SECONDS = 90.0  # boltc tune
# The first fit of a model that nothing was measured for waits this long: the warm-up and the formula's trial, and
# a candidate where they leave time. Longer searches are `boltc tune`'s, whose choice the fit then finds cached.
FIT_BUDGET_SECONDS = 5.0
# A candidate must find at least this share of the labels that the formula's configuration finds for the same rows.
RECALL_KEPT = 0.98
# Timings on a shared machine move by several percent from batch to batch: a candidate must be at least this much
# cheaper than the formula's to replace it.
TIME_NOISE = 0.05
# Hash variants are compared only when the formula's hashing finds the best neurons or the labels at least this many
# times more often than chance.
INFORMATIVE_LIFT = 2.0
# The warm-up is short: it only has to move the weights away from their random start; recall is then judged on the
# neurons the warmed weights score highest, which is what hashing must find at any stage of training, while the
# labels' own recall (also reported) means little until training has gone on for a while.
WARMUP_SHARE = 0.4  # of the budget
WARMUP_CHUNK_BATCHES = 20
WARMUP_MOST_BATCHES = 600
TIMED_BATCHES = 8
TIMED_ROUNDS = 3
RECALL_ROWS = 1024
TOP_NEURONS = 16


@dataclass(frozen=True, slots=True)
class Trial:
    """One measured candidate of one layer."""

    layer: int
    label: str  # what differs from the formula, in words
    config: MeasuredLsh
    # recalls and chance leave out the heavy rows, which every candidate scores alike whatever its hashing
    recall: float  # share of the held-out rows' TOP_NEURONS best-scoring neurons that the LSH candidates hold
    label_recall: float  # the same for the rows' labels (low until training has gone on for a while)
    chance: float  # the recall of as many neurons drawn at random from the rest of the layer
    batch_ms: float  # the layer's kernels in one training step, rebuilds excluded
    rebuild_ms: float  # one rebuild of the tables
    cost_ms: float  # batch_ms plus the planned rebuilds' share per batch
    build_seconds: float  # plan, emit and compile (0 when the build was cached)


@dataclass(frozen=True, slots=True)
class Tuning:
    key: str
    measured: dict[int, MeasuredLsh]  # by layer index: the winners
    trials: tuple[Trial, ...]
    sample_rows: int
    seconds: float
    # False when the budget could not hold the formula's trial and a candidate's: the formula's values, unmeasured.
    # A first fit takes such a result from the cache; `boltc tune` measures again.
    complete: bool = True
    cached: bool = False

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["measured"] = {str(k): v for k, v in data["measured"].items()}
        del data["cached"]
        return data

    @staticmethod
    def from_json(data: dict) -> Tuning:
        return Tuning(
            key=data["key"], measured={int(k): MeasuredLsh(**v) for k, v in data["measured"].items()},
            trials=tuple(Trial(**{**t, "config": MeasuredLsh(**t["config"])}) for t in data["trials"]),
            sample_rows=int(data["sample_rows"]), seconds=float(data["seconds"]),
            complete=bool(data.get("complete", True)), cached=True)


def tuning_key(base: Plan, machine: Machine, dataset: Dataset) -> str:
    plan_text = json.dumps(base.to_json(), sort_keys=True, default=str)
    parts = [TUNE_VERSION, machine.cpu_fingerprint, machine.compiler_id, plan_text, data_fingerprint(dataset)]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def cached(key: str) -> Tuning | None:
    """The tuning stored under `key` (see tuning_key), or None: measured again."""
    return read_cached_choice("tuning", key, Tuning.from_json)


def _store(tuning: Tuning) -> None:
    store_choice("tuning", tuning.key, tuning.to_json())


def _formula(layer: LayerPlan) -> MeasuredLsh:
    lsh = layer.lsh
    return MeasuredLsh(lsh.family, lsh.hashes, lsh.tables, lsh.bucket_cap, lsh.update_parts, lsh.prefetch_rows,
                       "formula", lsh.active_sets)


def _hashing(config: MeasuredLsh) -> tuple:
    return config.family, config.hashes, config.tables, config.bucket_cap


def _lsh_candidates(model: ir.Model, layer: LayerPlan) -> list[tuple[str, MeasuredLsh]]:
    """The formula's configuration first, then variants that trade retrieval for time (fewer or shallower tables,
    coarser keys) and every other hash family, as far as the spec leaves them open."""
    formula = _formula(layer)
    given = model.layers[layer.index].sampling
    family_open = given is None
    open_ = {name: given is None or getattr(given, name) is None for name in ("hashes", "tables", "bucket_cap")}
    out = [("formula", formula)]
    if open_["tables"]:
        for share in (2, 4):
            if formula.tables // share >= 1:
                out.append((f"tables/{share}", dataclasses.replace(formula, tables=formula.tables // share)))
    if open_["bucket_cap"] and formula.bucket_cap >= 8:
        out.append(("bucket_cap/2", dataclasses.replace(formula, bucket_cap=formula.bucket_cap // 2)))
    if open_["hashes"] and open_["tables"] and formula.hashes > 2:
        # keys of one hash fewer hold 2^bits more neurons per bucket: as many times fewer tables keep the same reach
        spread = FAMILIES[formula.family].key_range(1)
        coarser = dataclasses.replace(formula, hashes=formula.hashes - 1, tables=max(1, formula.tables // spread))
        out.append((f"hashes-1, tables/{spread}", coarser))
    for other in FAMILIES if family_open else ():
        if other == formula.family:
            continue
        alternative = lsh_plan(layer.out_dim, layer.in_dim, layer.sparsity_requested, layer.lsh.threads,
                               ir.Sampling(other, None, None, None), model.train,
                               model.loss.kind is ir.LossKind.CROSS_ENTROPY)
        out.append((f"{other} (formula)", MeasuredLsh(other, alternative.hashes, alternative.tables,
                                                      alternative.bucket_cap, formula.update_parts,
                                                      formula.prefetch_rows, "formula", formula.active_sets)))
    return out


def _kernel_candidates(best: MeasuredLsh) -> list[tuple[str, MeasuredLsh]]:
    """Variants that change only speed: how many id ranges the update is split into, and how far ahead the
    kernels fetch gathered rows. Both shape only per-row active sets' kernels: a batch-shared set's are matrix
    products over rows it gathers once."""
    if best.active_sets == "batch":
        return []
    out = []
    for label, parts in (("update parts x2", best.update_parts * 2), ("update parts /2", best.update_parts // 2)):
        if 1 <= parts <= UPDATE_PARTS_MOST:
            out.append((label, dataclasses.replace(best, update_parts=parts)))
    for distance in (2, 8, 16):
        if distance != best.prefetch_rows:
            out.append((f"prefetch {distance} rows ahead", dataclasses.replace(best, prefetch_rows=distance)))
    return out


def _planned_rebuilds(layer: LayerPlan, batches: int) -> int:
    lsh, count, period, at = layer.lsh, 0, float(layer.lsh.rebuild_first), 0.0
    while at + period <= batches:
        at += period
        count += 1
        period *= lsh.rebuild_growth
    return count


def _keeps_recall(trial: Trial, formula: Trial) -> bool:
    return trial.recall >= RECALL_KEPT * formula.recall and trial.label_recall >= RECALL_KEPT * formula.label_recall


def _hashing_recall(ids: np.ndarray, counts: np.ndarray, heavy: np.ndarray, wanted: list[np.ndarray]) -> float:
    """Share of the rows' wanted neurons outside the heavy rows that the rows' LSH candidates hold, over all rows.
    Sparse inference's sets (``Model.candidate_sets``) list the heavy rows first, then the LSH candidates; a set
    with no wanted neuron outside the heavy rows counts for nothing (0 when no row has one)."""
    found = total = 0
    for row, targets in enumerate(wanted):
        rest = targets[~np.isin(targets, heavy)]
        found += int(np.isin(rest, ids[row, len(heavy):counts[row]]).sum())
        total += len(rest)
    return found / total if total else 0.0


class _Tuner:
    def __init__(self, spec: ir.Model, machine: Machine, real_type: str, base: Plan, key: str, dataset: Dataset,
                 budget: float, progress: bool | None):
        self.spec, self.machine, self.real_type = spec, machine, real_type
        self.budget, self.started = budget, time.perf_counter()
        self.base, self.key = base, key
        rng = np.random.default_rng([self.base.seed, 7])
        order = rng.permutation(dataset.n_rows)
        batch = self.base.batch_size
        recall_rows = min(RECALL_ROWS, max(1, dataset.n_rows // 5))
        train_rows = min(dataset.n_rows - recall_rows, WARMUP_MOST_BATCHES * batch)
        self.recall_set = take_rows(dataset, order[:recall_rows])
        self.dataset, self.train_order = dataset, order[recall_rows:recall_rows + train_rows]
        self.timing_set = take_rows(dataset, self.train_order[:TIMED_BATCHES * batch])
        # the spec's rate, or (learning_rate=auto, measured later on the whole data) the optimizer's usual one
        self.learning_rate = base.learning_rate or UNMEASURED_LEARNING_RATE[base.optimizer]
        self.planned_batches = self.base.planned_epochs * math.ceil(dataset.n_rows / batch)
        self.progress = progress
        self.warm: Model | None = None
        self.top_neurons: np.ndarray | None = None
        self.warmed_rows = 0
        self.trials: list[Trial] = []

    def out_of_time(self) -> bool:
        return time.perf_counter() - self.started > self.budget

    def model_for(self, measured: dict[int, MeasuredLsh], initialize: bool) -> tuple[Model, float, float]:
        """The model planned on `measured`, the seconds its plan, emission and build took, and the seconds its
        arrays took to allocate (and initialise)."""
        started = time.perf_counter()
        the_plan = plan(self.spec, self.machine, self.real_type, measured)
        source = emit(the_plan)
        library = build(source, self.machine)
        built = time.perf_counter()
        model = Model(the_plan, library, source.buffers, initialize=initialize)
        return model, built - started, time.perf_counter() - built

    def warm_up(self) -> bool:
        """Train the formula's model on the sample for part of the budget; False, and no training, when what is left
        of the budget cannot hold the two models that must follow, the formula's trial and at least one candidate's
        (each at least this model's allocation, the candidate's maybe its build too), or nothing can be compared."""
        self.warm, build_seconds, allocation_seconds = self.model_for({}, initialize=True)
        if self.budget - (time.perf_counter() - self.started) < 2 * allocation_seconds + build_seconds:
            return False
        chunk = WARMUP_CHUNK_BATCHES * self.base.batch_size
        for start in range(0, len(self.train_order), chunk):
            self.warm.fit(take_rows(self.dataset, self.train_order[start:start + chunk]), epochs=1, progress=False,
                          final_rebuild=False, validation=False, learning_rate=self.learning_rate)
            self.warmed_rows = start + chunk
            if time.perf_counter() - self.started > WARMUP_SHARE * self.budget:
                break
        top_ids, _ = self.warm.predict(self.recall_set, top_k=min(TOP_NEURONS, self.base.output.out_dim))
        self.top_neurons = top_ids
        return True

    def measure(self, layer: LayerPlan, label: str, config: MeasuredLsh,
                chosen: dict[int, MeasuredLsh]) -> Trial:
        measured = {**chosen, layer.index: config}
        model, build_seconds, _ = self.model_for(measured, initialize=False)
        model.threads = self.warm.threads
        if all(_hashing(measured.get(sparse.index, _formula(sparse))) == _hashing(_formula(sparse))
               for sparse in self.base.layers if sparse.lsh is not None):
            # the warmed model's hash functions too: kernel variants then select exactly what the formula does
            model.restore("the tuner's warmed model", {"step": self.warm.step}, self.warm.saved_arrays())
        else:
            for spec in model.buffers:  # the warmed weights and moments; hash functions are the candidate's own
                if spec.kind in ("parameter", "optimizer"):
                    model.arrays[spec.name][...] = self.warm.arrays[spec.name]
            model.step = self.warm.step
            model.reconstruct(self.base.seed)
        model.input_scaling = self.warm.input_scaling
        rebuild_seconds = model.kernel_profile()[layer.name]["rebuild_seconds"]
        ids, counts = model.candidate_sets(self.recall_set)
        heavy = model.arrays[buffer_name(layer.index, "heavy_ids")]
        top_recall = _hashing_recall(ids, counts, heavy, [row for row in self.top_neurons])
        label_recall = _hashing_recall(ids, counts, heavy,
                                       [self.recall_set.labels_of(r) for r in range(self.recall_set.n_rows)])
        rounds = []
        for _ in range(TIMED_ROUNDS):  # the quickest round: interference from the rest of the machine only adds
            model.reset_kernel_profile()
            model.fit(self.timing_set, epochs=1, progress=False, final_rebuild=False, validation=False,
                      learning_rate=self.learning_rate)
            profile = model.kernel_profile()[layer.name]
            rounds.append((profile["forward_seconds"] + profile["backward_seconds"]) / max(1.0, profile["batches"]))
        batch_ms = 1000 * min(rounds)
        rebuilds = _planned_rebuilds(model.plan.layers[layer.index], self.planned_batches)
        cost_ms = batch_ms + 1000 * rebuild_seconds * rebuilds / max(1, self.planned_batches)
        chance = float(counts.mean() - len(heavy)) / max(1, layer.out_dim - len(heavy))
        return Trial(layer.index, label, config, top_recall, label_recall, chance, batch_ms, 1000 * rebuild_seconds,
                     cost_ms, build_seconds)

    def search(self, layer: LayerPlan, candidates, formula: Trial, best: Trial, chosen: dict[int, MeasuredLsh],
               bar: Progress) -> Trial:
        """Measure candidates while the budget lasts; the cheapest that keeps the formula's recalls wins."""
        for label, config in candidates:
            if self.out_of_time():
                break
            trial = self.measure(layer, label, config, chosen)
            self.trials.append(trial)
            bar.advance(1, f"{label}: recall {trial.recall:.3f}, {trial.cost_ms:.1f} ms/batch")
            if _keeps_recall(trial, formula) and trial.cost_ms < (1 - TIME_NOISE) * best.cost_ms:
                best = trial
        return best

    def run(self) -> Tuning:
        # the output's: its recall is what sparse inference rests on (a sparse hidden layer keeps the formula's)
        sparse_layers = [layer for layer in self.base.layers if layer.kernel == "sparse"]
        chosen: dict[int, MeasuredLsh] = {}
        bar = Progress("tune", 1 + sum(len(_lsh_candidates(self.spec, layer)) + 6 for layer in sparse_layers),
                       enabled=self.progress)
        comparable = self.warm_up()
        bar.advance(1, "warm-up" if comparable else "no time to compare candidates")
        complete = True
        for layer in sparse_layers:
            if not comparable or self.out_of_time():  # a trial of the formula alone would compare nothing
                chosen[layer.index] = dataclasses.replace(
                    _formula(layer), note=f"boltc tune: formula kept, not measured (a {self.budget:g} s budget holds "
                                          "no comparison at this size; boltc tune SPEC --data FILE measures longer)")
                complete = False
                continue
            formula = self.measure(layer, "formula", _formula(layer), chosen)
            self.trials.append(formula)
            bar.advance(1, f"formula: recall {formula.recall:.3f}, {formula.cost_ms:.1f} ms/batch")
            # hash variants are judged by recall, which tells nothing while the formula's hashing finds the best
            # neurons and the labels no more often than as many neurons drawn at random would
            informative = formula.chance > 0 and \
                max(formula.recall, formula.label_recall) >= INFORMATIVE_LIFT * formula.chance
            # kernel variants first: they select exactly what the formula does, so only their time can differ
            best = self.search(layer, _kernel_candidates(formula.config), formula, formula, chosen, bar)
            if informative:
                kernel = best.config
                hash_variants = [(label, dataclasses.replace(config, update_parts=kernel.update_parts,
                                                             prefetch_rows=kernel.prefetch_rows))
                                 for label, config in _lsh_candidates(self.spec, layer)[1:]]
                best = self.search(layer, hash_variants, formula, best, chosen, bar)
            if best is not formula:  # the machine may have got quieter since: the formula is timed again
                again = self.measure(layer, "formula (again)", formula.config, chosen)
                self.trials.append(again)
                if best.cost_ms >= (1 - TIME_NOISE) * again.cost_ms:
                    best = formula
            hashing = "hash values measured" if informative else \
                "hash values kept (the warm-up's hashing found the best neurons and the labels at chance rate)"
            note = (f"boltc tune: {best.label}; {hashing}; recall {best.recall:.3f} vs formula {formula.recall:.3f}, "
                    f"labels {best.label_recall:.3f} vs {formula.label_recall:.3f}, chance {formula.chance:.3f}; "
                    f"{best.cost_ms:.1f} vs {formula.cost_ms:.1f} ms per batch")
            chosen[layer.index] = dataclasses.replace(best.config, note=note)
        bar.close()
        measured_on = self.recall_set.n_rows + min(self.warmed_rows, len(self.train_order)) if comparable else 0
        return Tuning(self.key, chosen, tuple(self.trials), measured_on, time.perf_counter() - self.started, complete)


def tune(spec: ir.Model, machine: Machine, dataset: Dataset, *, real_type: str = "float",
         budget: float = DEFAULT_BUDGET_SECONDS, progress: bool | None = None, force: bool = False,
         accept_incomplete: bool = False) -> Tuning:
    """Measured values for every sparse layer of `spec` on `dataset` (labelled): from the cache unless `force`
    (an incomplete cached result, whose budget held no comparison, only with `accept_incomplete`, as a first fit
    takes it). `budget` bounds the seconds of the warm-up and the candidates; the formula's values are measured
    when the budget holds the formula's trial and a candidate's, and the candidate in progress when the budget ends
    finishes."""
    base = plan(spec, machine, real_type)
    key = tuning_key(base, machine, dataset)
    if not any(layer.lsh is not None for layer in base.layers):
        return Tuning(key, {}, (), 0, 0.0)
    if not force:
        found = cached(key)
        if found is not None and (found.complete or accept_incomplete):
            return found
    if not dataset.has_labels:
        raise ValueError("tuning needs labelled data")
    tuning = _Tuner(spec, machine, real_type, base, key, dataset, budget, progress).run()
    _store(tuning)
    return tuning
