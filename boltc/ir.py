"""The checked model: names resolved, sizes known, defaults filled in.

Every later stage reads only this (never the syntax tree). Layers are in topological order and a layer's
``index`` is its position in ``Model.layers``; spans are kept so that ``explain`` and later errors can point at the
spec line a layer came from.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Protocol

from boltc.diagnostics import Span

# the largest count a spec may give (units, input and target sizes, features): sizes are int32 in the C
MAX_UNITS = 2**31 - 1
# what a spec's learned sizes stand at before its training data is read: a model compiled with them can read that
# data (its featurizers and label reader) and nothing more
PROVISIONAL_LABELS = 2


class InputKind(enum.Enum):
    DENSE, SPARSE = "dense", "sparse"


class TargetKind(enum.Enum):
    CLASSES, MULTILABEL = "classes", "multilabel"


class Activation(enum.Enum):
    RELU, TANH, SIGMOID, SOFTMAX, LINEAR = "relu", "tanh", "sigmoid", "softmax", "linear"


class LossKind(enum.Enum):
    CROSS_ENTROPY, BINARY_CROSS_ENTROPY = "cross_entropy", "binary_cross_entropy"


class OptimizerKind(enum.Enum):
    ADAM, SGD = "adam", "sgd"


class ColumnKind(enum.Enum):
    TEXT, CATEGORICAL, NUMERICAL, DATE, SEQUENCE, HISTORY, NEIGHBOURS = \
        "text", "categorical", "numerical", "date", "sequence", "history", "neighbours"


@dataclass(frozen=True, slots=True)
class Column:
    """A typed column of a CSV/TSV file that an input is featurized from (runtime/bolt_columns.h says how)."""

    kind: ColumnKind
    header: str  # the column's name in the file's header
    features: int  # the input's width: hashed range, bins, or the date's one-hot size
    ngrams: int = 1  # text
    pairs: bool = False  # text
    lowercase: bool = True  # text
    delimiter: str = ""  # categorical (multi-valued when set), sequence
    low: float = 0.0  # numerical, equal bins: the range
    high: float = 0.0
    binning: str = "equal"  # numerical: equal (bins of one width over the range) | quantile (bins of equal counts)
    learned: bool = False  # numerical: the range or the edges come from the training data (no range= given)
    edges: tuple[float, ...] = ()  # numerical, quantile bins: the inner edges, ascending (bin i: [edge i-1, edge i))
    by: str = ""  # history: the column of the key (a user) whose earlier rows' items (column `header`) a row sees;
    #               neighbours: the column of each row's node id (`header` lists the ids it links to)
    order: str = ""  # history: the column that orders rows ("" for the file's order)
    last: int = 0  # history: how many of the latest earlier items
    source: int = -1  # neighbours: the input whose features are aggregated over each row's neighbours
    aggregate: str = ""  # neighbours: mean | sum
    direction: str = ""  # neighbours: out (the nodes a row lists) | in (the rows that list it) | both


@dataclass(frozen=True, slots=True)
class Input:
    index: int
    name: str
    kind: InputKind
    dim: int
    span: Span
    column: Column | None = None  # read from a CSV/TSV column (kind is then SPARSE)
    # dense inputs: centred and scaled to unit variance with statistics of the training data (saved with the model)
    standardize: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """What the model learns to predict: one class per row, or a set of labels per row."""

    name: str
    kind: TargetKind
    dim: int
    span: Span
    header: str | None = None  # a model reading typed columns: the column of label names
    delimiter: str = ""  # multilabel names in one field: what separates them
    learned: bool = False  # classes[auto] / multilabel[auto]: `dim` is the count of the training data's labels


@dataclass(frozen=True, slots=True)
class NodeRef:
    """Where a layer reads from: model input ``index`` or layer ``index``."""

    is_input: bool
    index: int  # into Model.inputs or Model.layers


@dataclass(frozen=True, slots=True)
class Sparsity:
    """The user's request: ``None`` for a dense layer, a fraction in (0, 1], or ``auto`` (decided by the plan)."""

    fraction: float | None
    auto: bool = False


@dataclass(frozen=True, slots=True)
class Sampling:
    """An explicit LSH configuration for a sparse layer; None fields are left to the plan."""

    family: str  # dwta | srp
    hashes: int | None
    tables: int | None
    bucket_cap: int | None
    active_sets: str | None = None  # row | batch: whether each training row has its own active set
    row_candidates: int | None = None  # batch sets: the LSH candidates each row offers before random ones (0: none)


@dataclass(frozen=True, slots=True)
class DenseLayer:
    index: int
    name: str
    source: NodeRef
    in_dim: int
    units: int
    activation: Activation
    sparsity: Sparsity
    bias: bool
    span: Span
    sampling: Sampling | None = None
    precision: str = "fp32"  # fp32 | bf16: the operands of the layer's matrix products in training
    kind: ClassVar[str] = "dense"

    @property
    def dim(self) -> int:
        return self.units

    @property
    def sources(self) -> tuple[NodeRef, ...]:
        return (self.source,)


@dataclass(frozen=True, slots=True)
class ConcatLayer:
    index: int
    name: str
    sources: tuple[NodeRef, ...]
    dim: int
    span: Span
    kind: ClassVar[str] = "concat"


class Layer(Protocol):
    """What every stage reads of a layer, whatever its op (boltc/ops/): each op's layer is a frozen dataclass."""

    kind: ClassVar[str]  # the op's name in specs

    @property
    def index(self) -> int: ...  # position in dependency order

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...  # values per row of its output

    @property
    def sources(self) -> tuple[NodeRef, ...]: ...

    @property
    def span(self) -> Span: ...


@dataclass(frozen=True, slots=True)
class Loss:
    kind: LossKind
    output: int  # index of the layer whose outputs the loss reads
    span: Span


@dataclass(frozen=True, slots=True)
class Optimizer:
    kind: OptimizerKind
    learning_rate: float | None  # None: measured on the training data before training (learning_rate=auto)
    beta1: float
    beta2: float
    eps: float
    moments: str = "fp32"  # fp32 | bf16: how LSH-sparse layers store Adam's moments


@dataclass(frozen=True, slots=True)
class TrainConfig:
    batch_size: int
    epochs: int | None  # None: until the validation metric stops improving (epochs=auto), at most max_epochs
    seed: int
    threads: int | None  # None: as many as the machine has
    rebuild_every: int | None = None  # batches between hash-table rebuilds; None: the plan's decaying schedule
    freeze_tables_after: int | None = None  # epochs after which tables are no longer rebuilt
    # rows the training loop chooses on: a fraction of the training rows held out (never trained on), a data file,
    # or None (held out only where epochs=auto needs it)
    validation: float | str | None = None
    max_epochs: int = 20  # epochs=auto stops here at the latest
    patience: int = 2  # epochs=auto stops at the run's this-many-th epoch without a better validation metric
    restore_best: bool | None = None  # end with the best epoch's parameters; None: when epochs=auto
    schedule: str = "constant"  # constant | linear | cosine: the learning rate's decay over the planned epochs
    warmup: int = 0  # batches over which the learning rate rises linearly from 0 at the start of training


@dataclass(frozen=True, slots=True)
class Metric:
    name: str  # accuracy | loss | precision | recall
    k: int | None

    @property
    def label(self) -> str:
        return self.name if self.k is None else f"{self.name}@{self.k}"


@dataclass(frozen=True, slots=True)
class Learned:
    """What the training data says where a spec leaves it to the data (saved with the model): the target's label
    count (``classes[auto]``, ``multilabel[auto]``) and, by input name, each unranged numerical column's bins:
    (low, high) of the training values for equal bins, the inner edges for quantile bins."""

    labels: int | None = None
    bins: tuple[tuple[str, tuple[float, ...]], ...] = ()

    def bins_of(self, input_name: str) -> tuple[float, ...] | None:
        return dict(self.bins).get(input_name)

    def as_json(self) -> dict:
        return {"labels": self.labels, "bins": {name: list(values) for name, values in self.bins}}

    @staticmethod
    def from_json(saved: dict) -> Learned:
        """The inverse of ``as_json``; raises TypeError or ValueError on anything else."""
        labels = saved["labels"]
        if labels is not None and (not isinstance(labels, int) or isinstance(labels, bool)):
            raise TypeError("labels must be an integer")
        bins = tuple((str(name), tuple(float(v) for v in values)) for name, values in dict(saved["bins"]).items())
        return Learned(labels, bins)


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    path: str  # the spec file, as given
    source: str  # its text, kept for messages and for model files
    inputs: tuple[Input, ...]
    target: Target
    layers: tuple[Layer, ...]  # in dependency order
    loss: Loss
    optimizer: Optimizer
    train: TrainConfig
    metrics: tuple[Metric, ...]
    span: Span
    learned: Learned | None = None  # what the sizes below came from, where the spec leaves them to the data

    @property
    def learns_from_data(self) -> bool:
        """Whether the spec leaves a size to its training data (a target's count, a numerical column's bins)."""
        return self.target.learned or any(i.column is not None and i.column.learned for i in self.inputs)

    @property
    def provisional(self) -> bool:
        """Whether those sizes still stand at their placeholders: the model can read data, not be trained."""
        return self.learns_from_data and self.learned is None

    @property
    def reads_columns(self) -> bool:
        return any(i.column is not None for i in self.inputs)

    @property
    def output(self) -> DenseLayer:
        layer = self.layers[self.loss.output]
        assert isinstance(layer, DenseLayer)
        return layer

    def node_dim(self, ref: NodeRef) -> int:
        if ref.is_input:
            return self.inputs[ref.index].dim
        return self.layers[ref.index].dim
