"""``ir.Model`` + ``Machine`` -> ``Plan``: every number the generated code and the runtime need, decided.

Pure formulas, no I/O. Each decision that a user did not write records where it came from (``origin``) so that
``boltc explain`` can say why. Emit and the runtime read only the plan, never the spec.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from boltc import ir, ops
from boltc.hashing import DEFAULT_FAMILY, family as hash_family
from boltc.diagnostics import SpecError, SpecErrors
from boltc.machine import Machine

# Columns are processed in chunks of at most this many outputs: a chunk of weights stays in cache while a batch
# streams past it, and a chunk of gradients fits on the stack, whatever the layer width.
COLUMN_TILE = 512
# Below this many outputs a layer's input gradient goes through a transposed copy of its weights: dot products
# along so few outputs would leave most SIMD lanes idle, rows of the transpose are as wide as the input.
TRANSPOSED_BACKWARD_BELOW = 64
# Sparse inference takes this many times the training active count of LSH candidates (besides the heavy rows below):
# still a small fraction of the layer, and the true top neurons that hashing ranks just below the training cut-off
# are found.
INFERENCE_WIDENING = 2
# Sparse inference also scores the neurons of the largest weight norms, a quarter as many as the LSH candidates it
# takes. DWTA and SRP hash a row's direction, never its length, yet the length decides an inner product, so the rows
# training grew most (frequent labels) are the ones hashing under-finds. On the Amazon-670K shape after 15 epochs
# the dense top neuron was among the LSH candidates for 55% of the test rows; P@1 was 0.67 from the LSH candidates
# alone, 0.80 with these neurons added, and 0.75 dense, where a single mid-norm neuron outscored the right answer
# for a quarter of the rows (bench/README.md).
HEAVY_SHARE = 4
# ...and at least this share of the layer: they are the same rows for every input, scored for a whole batch as one
# matrix product at a small fraction of dense inference's cost. On Amazon-670K-shaped data (100,000 rows, the best
# epoch of a raced rate) dense inference's top-1 was among the 1,676 rows of the largest |w| + b for 79% of the test
# rows, among the top 3% (20,000) for 99.3%; the LSH candidates find most of the rest.
HEAVY_BLOCK_SHARE = 0.03
# BOLT reconstructs (draws new hash functions) 4 times per epoch and rebuilds 100 times (BOLT-NOTES.md); with the
# decaying schedule there are far fewer rebuilds, so every fourth one reconstructs.
RECONSTRUCT_EVERY = 4
# Free slots per bucket in tables that freeze: room for a few inserted labels before each insertion replaces a
# member, as BOLT's reservoirs do, for L x range more ids (a tenth of the tables at Amazon-670K's shape).
INSERT_SLACK = 2
# The sparse update splits neurons into this many parts per planned thread: enough for threads to balance the
# load, few enough that every part's pass over the batch's entries stays cheap.
UPDATE_PARTS_PER_THREAD = 4
UPDATE_PARTS_MOST = 64  # every part scans the whole batch's entries: many more would cost more than they balance
# At most this share of a training active set goes to the labels of the other rows of the batch (negatives in
# proportion to label frequency); the rest is left to the LSH candidates.
BATCH_NEGATIVE_SHARE = 0.25
# Dense inference through a sparse layer scores a chunk of neurons for a block of rows at a time: every block reads
# all the weights once, so blocks are as large as keeps all threads busy on one batch, up to this many rows (measured
# at the Amazon shape, 2 threads: 32 rows 280 rows/s, 128 rows 330 rows/s).
DENSE_ROWS_MOST = 128
# The sparse kernels fetch the weight rows (and moments) this many active neurons ahead: far enough to hide a DRAM
# miss behind the work on the rows in between, near enough that fetched rows are still in L1 when used.
PREFETCH_ROWS = 4
BF16_BYTES = 2
# Softmax outputs share one active set per batch unless the spec says otherwise: on the Amazon-670K shape that trains
# at 4.4x the samples/s of per-row sets, a few points of P@1 lower per epoch (bench/README.md). Sigmoid outputs keep
# per-row sets: with a batch's worth of negatives per row their positives learn epochs later
# (tests/run/test_sparse_task.py's task).
# A batch-shared active set holds a multiple of this many neurons (a whole number of AVX-512 float vectors), so that
# its logits fill SIMD registers in the matrix kernels.
SHARED_ACTIVE_MULTIPLE = 16
# A batch-shared active set holds the batch's labels and `active` neurons more; its buffers have room for this many
# distinct labels per row (more are left out of the set, and their rows learn from the labels that are in it).
SHARED_LABELS_PER_ROW = 8
# With batch-shared active sets each row offers this many times its fair share (active / batch rows) of its best
# LSH candidates: rows' candidates overlap, and the set is filled with them in turns, best first.
ROW_CANDIDATE_SURPLUS = 2


# epochs=auto with no validation set named holds out this share of the training rows, at most this many: enough for a
# P@1 whose standard error is under 0.01, few enough that evaluating them after each epoch costs a fraction of it.
VALIDATION_SHARE = 0.05
# epochs=auto divides the learning rate by ten after each epoch that did not improve the validation metric (before
# patience runs out) and goes on from the best epoch's parameters: on Amazon-670K-shaped data a rate that peaked after
# one epoch fell apart in the next (held-out P@1 0.927 to 0.79 at 0.003) while its sampled training loss kept falling.
# Halving was too little to recover from such a fall: from the same best epoch, 0.0015 fell to 0.888 again where
# 0.0003 climbed to 0.947 (test P@1 0.942 against 0.9585 at a fixed 0.003; with the raced rate six generated sets
# gained 0.0015 to 0.012 test P@1 and Fashion-MNIST moved within its noise: bench/README.md, 2026-12-06).
PLATEAU_DECAY = 0.1
VALIDATION_ROWS_MOST = 2000
# learning_rate=auto where nothing is measured (BOLTC_TUNE=off, tune=False): the usual defaults of each optimizer.
UNMEASURED_LEARNING_RATE = {"adam": 0.001, "sgd": 0.01}


def _whole_vectors(neurons: int) -> int:
    return -(-neurons // SHARED_ACTIVE_MULTIPLE) * SHARED_ACTIVE_MULTIPLE


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How an input is featurized from a CSV/TSV column (runtime/bolt_columns.h)."""

    kind: str  # text | categorical | numerical | date | sequence
    header: str  # the column's name in the file's header
    features: int
    ngrams: int
    pairs: bool
    lowercase: bool
    delimiter: str
    low: float
    high: float
    binning: str  # numerical: equal | quantile
    learned: bool  # numerical: bins from the training data (read as raw numbers until they are known)
    edges: tuple[float, ...]  # numerical, quantile bins: the inner edges
    by: str
    order: str
    last: int
    source: int
    aggregate: str
    direction: str
    spec_line: int


@dataclass(frozen=True, slots=True)
class InputPlan:
    index: int
    name: str
    kind: str  # dense | sparse
    dim: int
    column: ColumnPlan | None = None
    standardize: bool = False  # dense: centred and scaled with the training data's statistics (kept by the model)


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """Where a layer reads: model input ``index`` (given dense or as CSR rows) or the activations of a layer."""

    is_input: bool
    index: int
    dim: int
    offset: int  # position of this source inside a concat


@dataclass(frozen=True, slots=True)
class LshPlan:
    """How a sparse layer picks its active neurons. Values follow BOLT's formulas (BOLT-NOTES.md)."""

    family: str  # a name in boltc.hashing.FAMILIES
    hashes: int  # K: hashes per key
    tables: int  # L
    range: int  # keys per table: 2^(bits per hash x K)
    bucket_cap: int  # ids read from one bucket at most (BOLT's reservoir size)
    active: int  # neurons computed per sample in training: ceil(sparsity * N)
    inference_active: int  # neurons scored per sample in sparse inference (a wider net: it only reads weights)...
    heavy: int  # ...the first this many of them the rows of the largest norms, the same for every row
    batch_negatives: int  # the batch's labels that join every training active set, at most
    bins: int  # K * L hashes
    functions: str  # the family's hash functions, in words
    threads: int  # per-thread scratch is sized for this many threads
    rebuild_first: int  # batches before the first rebuild of the tables
    rebuild_growth: float  # each period between rebuilds is this much longer than the last
    freeze_after_epochs: int | None  # no rebuilds after this many epochs
    insert_slack: int  # free slots per bucket for labels inserted into frozen tables (0: the tables never freeze)
    update_part_shift: int  # the race-free update splits neurons into parts of 2^shift consecutive ids...
    update_parts: int  # ...this many of them
    reconstruct_every: int  # every this many scheduled rebuilds draws new hash functions first (0: never)
    table_bytes: int
    hash_chunk: int  # rows hashed per step of a rebuild (their keys must fit a thread's scratch)
    dense_chunk: int  # neurons scored per step of dense inference...
    dense_rows: int  # ...for this many rows at once
    prefetch_rows: int  # the kernels fetch gathered rows this many neurons ahead
    # row: each training row scores its own `active` neurons (BOLT). batch: the rows of a batch share one set: the
    # batch's labels and `active` neurons more (each row's best `row_candidates` LSH candidates in turns, then random
    # ones), in whole vectors, `shared_active` at most; scoring and the gradients are then matrix products, and a
    # batch updates the set's rows instead of up to batch x active
    active_sets: str
    shared_active: int
    row_candidates: int
    origin: str

    @property
    def hashes_in_training(self) -> bool:
        """False for a batch-shared set of labels and random neurons (row_candidates=0, tables never frozen): its
        tables serve sparse inference only."""
        return self.active_sets == "row" or self.row_candidates > 0 or self.insert_slack > 0


@dataclass(frozen=True, slots=True)
class MeasuredLsh:
    """Values ``boltc tune`` measured for one sparse layer on the user's data; they replace the formulas' (values
    written in the spec still win). ``note`` says what was measured, for ``boltc explain``."""

    family: str
    hashes: int
    tables: int
    bucket_cap: int
    update_parts: int
    prefetch_rows: int
    note: str
    active_sets: str = "row"


@dataclass(frozen=True, slots=True)
class LayerPlan:
    index: int
    name: str
    op: str  # fc | concat
    spec_line: int
    in_dim: int
    out_dim: int
    activation: str
    bias: bool
    sources: tuple[SourcePlan, ...]  # one for fc, several for concat
    needs_input_gradient: bool  # false when every source is a model input
    # gather (weight rows of a sparse input's features or a sparse layer's active units) | blocked (register-blocked
    # dense) | sparse (LSH-sparse output) | sparse_hidden (LSH-sparse hidden, output-major) | sparse_gather (the same
    # reading a sparse input, input-major) | copy (concat) | sum (add)
    kernel: str
    weight_layout: str
    column_tile: int
    input_tile: int  # the same, along the input, for the transposed backward
    transposed_backward: bool
    sparsity_requested: float | None
    sparsity_origin: str  # none | spec | auto (size-based formula)
    # why a layer that asked for sparsity runs dense ("" where it runs LSH-sparse or asked for none)
    dense_reason: str
    precision: str  # what the spec asked for its products: fp32 | bf16 (products says what it got)
    lsh: LshPlan | None  # set when the layer runs LSH-sparse
    parameters: int
    parameter_bytes: int
    optimizer_bytes: int
    flops_forward: int
    flops_backward: int
    # the operands of a sparse layer's training products: bf16 (spec: precision=bf16) where the machine has AMX
    # tiles for them and the scalar is float, else the scalar
    products: str = "fp32"

    @property
    def neuron_rows(self) -> bool:
        """Whether the weights are output-major [out][in], a neuron one contiguous row: LSH-sparse layers reading a
        dense vector keep them so, the rest input-major [in][out]."""
        return self.kernel in ("sparse", "sparse_hidden")

    @property
    def emits_active_units(self) -> bool:
        """Whether this is an LSH-sparse hidden layer, whose consumers may read only each row's active units."""
        return self.kernel in ("sparse_hidden", "sparse_gather")

    @property
    def gathers_input_rows(self) -> bool:
        """Whether the layer reads a sparse model input through the weight rows of its present features, which are
        the only rows a batch updates (lazy)."""
        return self.kernel in ("gather", "sparse_gather") and self.sources[0].is_input


@dataclass(frozen=True, slots=True)
class Plan:
    model_name: str
    spec_path: str
    spec_source: str
    real_type: str  # float | double: the scalar of weights and activations
    inputs: tuple[InputPlan, ...]
    target_kind: str
    target_dim: int
    target_header: str | None  # a model reading typed columns: the column of label names
    target_delimiter: str  # between label names in one field ("" for one name per field)
    target_learned: bool  # classes[auto] / multilabel[auto]: target_dim is the training data's label count
    layers: tuple[LayerPlan, ...]
    output_layer: int
    loss: str
    optimizer: str
    learning_rate: float | None  # None: measured on the training data at the first fit (learning_rate=auto)
    beta1: float
    beta2: float
    eps: float
    moments: str  # fp32 | bf16: Adam's moments in LSH-sparse layers (dense layers keep the plan's scalar)
    batch_size: int
    epochs: int | None  # None: until `patience` epochs of the run fail to improve the validation metric (`max_epochs`)
    seed: int
    threads: int
    threads_origin: str
    metrics: tuple[str, ...]
    openmp: bool
    isa: tuple[str, ...]
    measured: dict[int, MeasuredLsh]  # by layer index: what boltc tune measured and this plan used
    max_epochs: int = 20
    patience: int = 2
    # end training with the parameters of the epoch of the best validation metric; None: when epochs run auto
    restore_best: bool | None = None
    # the rows training chooses on, as the spec names them: a share of the training rows (held out) or a file;
    # neither: epochs=auto holds out auto_validation_share of them (auto_validation_rows_most at most), a fixed
    # count none unless fit() is given a set
    validation_share: float | None = None
    validation_file: str | None = None
    auto_validation_share: float = VALIDATION_SHARE
    auto_validation_rows_most: int = VALIDATION_ROWS_MOST
    schedule: str = "constant"  # the learning rate over the planned batches: constant | linear | cosine decay
    warmup: int = 0  # batches of linear warm-up
    # what the training data said of the spec's auto sizes (None: nothing, or not read yet); a provisional plan
    # has placeholders for them and its model can only read the data that says them (ir.Model.provisional)
    learned: ir.Learned | None = None
    provisional: bool = False

    @property
    def output(self) -> LayerPlan:
        return self.layers[self.output_layer]

    @property
    def planned_epochs(self) -> int:
        """The epochs training runs: the spec's count, or epochs=auto's cap."""
        return self.epochs if self.epochs is not None else self.max_epochs

    @property
    def parameter_bytes(self) -> int:
        return sum(layer.parameter_bytes for layer in self.layers)

    @property
    def optimizer_bytes(self) -> int:
        return sum(layer.optimizer_bytes for layer in self.layers)

    def to_json(self) -> dict:
        data = asdict(self)
        del data["spec_source"]
        return data


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What planning a layer needs beyond the model and the layer, the same for every layer."""

    real_bytes: int  # of the plan's scalar
    optimizer_copies: int  # values of optimizer state per parameter
    threads: int
    measured: dict[int, MeasuredLsh]  # by layer index
    amx: bool  # AMX bf16 tiles for the scalar


def auto_sparsity(units: int) -> float | None:
    """BOLT's size-based default for an output layer (BOLT-NOTES.md): dense below 450 neurons."""
    for bound, fraction in ((450, None), (900, 0.2), (1800, 0.1), (4000, 0.05), (10000, 0.02), (20000, 0.01)):
        if units < bound:
            return fraction
    return 0.005


def _column_plan(model_input: ir.Input) -> ColumnPlan | None:
    column = model_input.column
    if column is None:
        return None
    return ColumnPlan(column.kind.value, column.header, column.features, column.ngrams, column.pairs, column.lowercase,
                      column.delimiter, column.low, column.high, column.binning, column.learned, column.edges,
                      column.by, column.order, column.last,
                      column.source, column.aggregate, column.direction, model_input.span.line)


def _threads(config: ir.TrainConfig, machine: Machine) -> tuple[int, str]:
    if config.threads is not None:
        return config.threads, "spec"
    from_env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if from_env.isdigit() and int(from_env) > 0:
        return int(from_env), "OMP_NUM_THREADS"
    return machine.cores, "machine cores"


def carries_gradient(model: ir.Model, ref: ir.NodeRef) -> bool:
    """Whether gradient flowing into this node reaches any parameter (a concat of inputs only does not)."""
    if ref.is_input:
        return False
    layer = model.layers[ref.index]
    return ops.of(layer).parameters(layer) > 0 or any(carries_gradient(model, s) for s in layer.sources)


def lsh_plan(units: int, in_dim: int, sparsity: float, threads: int, sampling: ir.Sampling | None,
             train: ir.TrainConfig, softmax: bool, measured: MeasuredLsh | None = None,
             hidden: bool = False) -> LshPlan:
    """The LSH configuration for a layer of `units` neurons at `sparsity` reading `in_dim` values (by default BOLT's
    DWTA formula, or the formula of the family the spec or a measurement names); values the
    spec gives (sampling=dwta(...), train { rebuild = N }) replace the formulas', and so do measured ones that the
    spec leaves open (the hash family is measured only when the spec names none). A `hidden` layer has no labels
    and no top-k: per-row sets in training and inference alike, no heavy rows, no label slots in its tables."""
    written = sampling or ir.Sampling(DEFAULT_FAMILY, None, None, None)
    given = written
    if measured is not None:
        family = written.family if sampling is not None else measured.family
        same_family = family == measured.family
        given = ir.Sampling(family, written.hashes or (measured.hashes if same_family else None),
                            written.tables or (measured.tables if same_family else None),
                            written.bucket_cap or (measured.bucket_cap if same_family else None),
                            written.active_sets or measured.active_sets, written.row_candidates)
    active = min(units, max(1, math.ceil(sparsity * units)))
    active_sets = "row" if hidden else given.active_sets or ("batch" if softmax else "row")
    shared_active = min(units, _whole_vectors(active + SHARED_LABELS_PER_ROW * train.batch_size))
    family = hash_family(given.family)
    hashes, formula_tables = family.formula(units, sparsity, active, given.hashes)
    key_range = family.key_range(hashes)
    tables = given.tables or formula_tables
    bins = hashes * tables
    bucket_cap = given.bucket_cap or 4 * max(units // key_range, 1)
    freeze = train.freeze_tables_after
    slack = INSERT_SLACK if freeze is not None and not hidden else 0
    parts = measured.update_parts if measured is not None else min(UPDATE_PARTS_PER_THREAD * threads,
                                                                    UPDATE_PARTS_MOST)
    part_shift = ((units - 1) // max(1, parts)).bit_length()
    fixed_period = train.rebuild_every is not None
    inference_candidates = min(units, INFERENCE_WIDENING * active)
    block = -(-round(HEAVY_BLOCK_SHARE * units) // 16) * 16  # whole vectors of the product's columns
    heavy = 0 if hidden else min(units, max(-(-inference_candidates // HEAVY_SHARE), block))
    from_spec = [name for name in ("hashes", "tables", "bucket_cap", "active_sets", "row_candidates")
                 if getattr(written, name) is not None]
    from_spec += ["family"] if sampling is not None and measured is not None else []
    from_spec += ["rebuild"] if fixed_period else []
    origin = f"formula ({family.formula_origin}; rebuild schedule decaying as SLIDE proposes" + \
        ("; batch-shared active sets for a softmax output)" if given.active_sets is None and softmax and not hidden
         else ")")
    if measured is not None:
        origin = f"measured ({measured.note})"
    if from_spec:
        origin = f"spec ({', '.join(from_spec)}), " + ("measured" if measured is not None else "formula") + \
            " for the rest" + (f" ({measured.note})" if measured is not None else "")
    return LshPlan(
        family=given.family, hashes=hashes, tables=tables, range=key_range,
        bucket_cap=bucket_cap, active=active,
        inference_active=active if hidden else min(units, inference_candidates + heavy), heavy=heavy,
        batch_negatives=0 if hidden else max(1, int(BATCH_NEGATIVE_SHARE * active)),
        bins=bins, functions=family.describe(bins, in_dim), threads=threads,
        rebuild_first=train.rebuild_every if fixed_period else 50, rebuild_growth=1.0 if fixed_period else 1.25,
        freeze_after_epochs=freeze, insert_slack=slack, reconstruct_every=RECONSTRUCT_EVERY,
        update_part_shift=part_shift, update_parts=((units - 1) >> part_shift) + 1,
        table_bytes=4 * tables * (units + key_range * slack + key_range + 1 + (key_range if slack else 0)),
        hash_chunk=max(1, min(1024, (units + key_range) // tables)), dense_chunk=min(units, 1024),
        dense_rows=max(16, min(DENSE_ROWS_MOST, -(-train.batch_size // threads) // 16 * 16)),
        prefetch_rows=measured.prefetch_rows if measured is not None else PREFETCH_ROWS,
        active_sets=active_sets, shared_active=shared_active,
        row_candidates=0 if hidden else min(tables * bucket_cap,
                                            max(1, -(-ROW_CANDIDATE_SURPLUS * active // train.batch_size))
                                            if given.row_candidates is None else given.row_candidates),
        origin=origin,
    )


def _refuse_what_cannot_fit(model: ir.Model, layers: tuple[LayerPlan, ...], machine: Machine,
                            real_bytes: int) -> None:
    """The one memory check, where everything that grows with the model is sized: weights and optimizer state (in
    the plan's scalar and moments), the batch's activations and gradients with the layers' other scratch, and the
    LSH hash tables."""
    weights = sum(layer.parameter_bytes + layer.optimizer_bytes for layer in layers)
    batch = real_bytes * sum(model.train.batch_size * ops.of_plan(layer).batch_values(layer)
                             + ops.of_plan(layer).scratch_values(layer) for layer in layers)
    tables = sum(layer.lsh.table_bytes for layer in layers if layer.lsh is not None)
    if weights + batch + tables > machine.memory_bytes:
        gib = 2**30
        largest = max(layers, key=lambda layer: layer.parameters)
        raise SpecErrors([SpecError(
            model.span, f"model needs {(weights + batch + tables) / gib:.1f} GiB for its weights, optimizer state, "
            f"batch buffers and LSH hash tables ({tables / gib:.1f} GiB of tables), but this machine has "
            f"{machine.memory_bytes / gib:.1f} GiB of memory",
            hint=f"fewer or smaller layers, or a higher sparsity: the largest layer is '{largest.name}' "
                 f"({largest.parameters:,} parameters, line {largest.spec_line})", source=model.source)])


def plan(model: ir.Model, machine: Machine, real_type: str = "float",
         measured: dict[int, MeasuredLsh] | None = None) -> Plan:
    """The plan of `model` on `machine`; `measured` (by layer index) holds values ``boltc tune`` measured."""
    if real_type not in ("float", "double"):
        raise ValueError(f"real_type must be float or double, not {real_type!r}")
    threads, threads_origin = _threads(model.train, machine)
    context = PlanContext(real_bytes=4 if real_type == "float" else 8,
                          optimizer_copies=2 if model.optimizer.kind is ir.OptimizerKind.ADAM else 0,
                          threads=threads, measured=measured or {},
                          amx="amx_bf16" in machine.isa and real_type == "float")
    layers = tuple(ops.of(layer).plan(model, layer, context) for layer in model.layers)
    _refuse_what_cannot_fit(model, layers, machine, context.real_bytes)
    optimizer = model.optimizer
    return Plan(
        model_name=model.name, spec_path=model.path, spec_source=model.source, real_type=real_type,
        inputs=tuple(InputPlan(i.index, i.name, i.kind.value, i.dim, _column_plan(i), i.standardize)
                     for i in model.inputs),
        target_kind=model.target.kind.value, target_dim=model.target.dim, target_header=model.target.header,
        target_delimiter=model.target.delimiter, target_learned=model.target.learned, layers=layers,
        output_layer=model.loss.output, loss=model.loss.kind.value, optimizer=optimizer.kind.value,
        learning_rate=optimizer.learning_rate, beta1=optimizer.beta1, beta2=optimizer.beta2, eps=optimizer.eps,
        moments=optimizer.moments,
        batch_size=model.train.batch_size, epochs=model.train.epochs, seed=model.train.seed, threads=threads,
        threads_origin=threads_origin, metrics=tuple(m.label for m in model.metrics), openmp=machine.openmp,
        isa=machine.isa, measured={index: value for index, value in (measured or {}).items()
                                   if layers[index].lsh is not None},
        learned=model.learned, provisional=model.provisional, **_stopping(model),
    )


def _stopping(model: ir.Model) -> dict:
    """The validation set, early stopping and learning-rate schedule of the plan (a file relative to the spec's
    folder)."""
    train = model.train
    validation = train.validation
    share = validation if isinstance(validation, float) else None
    file = None
    if isinstance(validation, str):
        file = validation if os.path.isabs(validation) else os.path.join(os.path.dirname(model.path), validation)
    return {"max_epochs": train.max_epochs, "patience": train.patience,
            "restore_best": train.restore_best, "validation_share": share, "validation_file": file,
            "schedule": train.schedule, "warmup": train.warmup}
