"""``syntax.Spec`` -> ``ir.Model``: resolve names and sizes, fill defaults, and report every mistake at once.

The checker never stops at the first error: each problem is collected with its span and ``SpecErrors`` is raised
at the end, sorted by position, so one edit-compile cycle fixes them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from boltc import ir, syntax
from boltc.diagnostics import Span, SpecError, SpecErrors, did_you_mean
from boltc import ops

MAX_UNITS = 2**31 - 1
MAX_BATCH = 65536
TRAIN_SETTINGS = ("batch_size", "epochs", "seed", "threads", "rebuild", "freeze_tables_after", "validation",
                  "max_epochs", "patience", "restore_best", "schedule", "warmup")
SCHEDULES = ("constant", "linear", "cosine")
INPUT_OPTIONS = {ir.InputKind.DENSE: ("standardize",), ir.InputKind.SPARSE: ()}
OPTIMIZER_PARAMS = {
    ir.OptimizerKind.ADAM: ("learning_rate", "beta1", "beta2", "eps", "moments"),
    ir.OptimizerKind.SGD: ("learning_rate",),
}
MOMENT_STORAGE = ("fp32", "bf16")
COLUMN_DEFAULT_FEATURES = 100_000
DATE_FEATURES = 77  # day of week 7, month 12, week of month 5, week of year 53 (runtime/bolt_columns.h)
COLUMN_OPTIONS = {
    ir.ColumnKind.TEXT: ("ngrams", "pairs", "lowercase", "features", "column"),
    ir.ColumnKind.CATEGORICAL: ("features", "delimiter", "column"),
    ir.ColumnKind.NUMERICAL: ("bins", "range", "column"),
    ir.ColumnKind.DATE: ("column",),
    ir.ColumnKind.SEQUENCE: ("delimiter", "features", "column"),
    ir.ColumnKind.HISTORY: ("of", "by", "last", "order", "features"),
    ir.ColumnKind.NEIGHBOURS: ("of", "id", "links", "delimiter", "aggregate", "direction"),
}
AGGREGATES = ("mean", "sum")
DIRECTIONS = ("both", "out", "in")
HISTORY_LAST_DEFAULT = 20
DEFAULT_OPTIMIZER = ir.Optimizer(ir.OptimizerKind.ADAM, learning_rate=None, beta1=0.9, beta2=0.999, eps=1e-7)
DEFAULT_TRAIN = ir.TrainConfig(batch_size=256, epochs=None, seed=0, threads=None)
METRICS_WITH_K = ("precision", "recall")
METRICS_WITHOUT_K = ("accuracy", "loss")
LOSS_ACTIVATION = {
    ir.LossKind.CROSS_ENTROPY: ir.Activation.SOFTMAX,
    ir.LossKind.BINARY_CROSS_ENTROPY: ir.Activation.SIGMOID,
}
# Weights plus Adam's two moments; gradients are never materialised for a whole layer (see templates).
BYTES_PER_PARAMETER = 4 * 3


def _choices(values: Iterable[str]) -> str:
    values = list(values)
    return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


@dataclass
class _Checker:
    spec: syntax.Spec
    memory_bytes: int | None
    problems: list[SpecError] = field(default_factory=list)
    neighbour_sources: dict[str, syntax.Name] = field(default_factory=dict)  # neighbours input -> its `of`

    def error(self, span: Span, message: str, hint: str = "") -> None:
        self.problems.append(SpecError(span, message, hint=hint, source=self.spec.source))

    # -- small value readers: each returns None after reporting, so callers can carry on -----------------

    def integer(self, value: syntax.Value, what: str, minimum: int, maximum: int | None = None) -> int | None:
        if not isinstance(value, syntax.Number) or not isinstance(value.value, int):
            self.error(value.span, f"{what} must be an integer")
            return None
        if value.value < minimum or (maximum is not None and value.value > maximum):
            bound = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            self.error(value.span, f"{what} must be {bound}, got {value.value}")
            return None
        return value.value

    def number(self, value: syntax.Value, what: str, valid: Callable[[float], bool], rule: str) -> float | None:
        if not isinstance(value, syntax.Number):
            self.error(value.span, f"{what} must be a number")
            return None
        if not (math.isfinite(float(value.value)) and valid(float(value.value))):
            self.error(value.span, f"{what} must be {rule}, got {value.value}")
            return None
        return float(value.value)

    def word(self, value: syntax.Value, what: str, choices: Iterable[str]) -> str | None:
        choices = tuple(choices)
        if isinstance(value, syntax.Name) and value.text in choices:
            return value.text
        found = f"'{value.text}'" if isinstance(value, syntax.Name) else "a value of another kind"
        hint = did_you_mean(value.text, choices) if isinstance(value, syntax.Name) else ""
        self.error(value.span, f"{what} must be {_choices(choices)}, got {found}", hint)
        return None

    def bind(self, call: syntax.Call, positional: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, syntax.Argument]:
        """Match a call's arguments to parameter names the way Python does, reporting every misuse."""
        bound: dict[str, syntax.Argument] = {}
        func = call.func.text
        for position, arg in enumerate(call.args):
            if arg.keyword is None:
                if position >= len(positional):
                    count = f"{len(positional)} positional argument{'s' if len(positional) != 1 else ''}"
                    self.error(arg.span, f"{func}() takes {count}" + ("; pass the others by name" if optional
                                                                      else ""))
                    continue
                name = positional[position]
            else:
                name = arg.keyword.text
                if name not in positional + optional:
                    self.error(arg.keyword.span, f"{func}() has no parameter '{name}'",
                               did_you_mean(name, positional + optional))
                    continue
            if name in bound:
                self.error(arg.span, f"{func}() got '{name}' twice")
                continue
            bound[name] = arg
        for name in positional:
            if name not in bound:
                self.error(call.span, f"{func}() needs '{name}'")
        return bound

    # -- statements ------------------------------------------------------------------------------------

    def run(self) -> ir.Model | None:
        statements = self.spec.statements
        inputs_decl = [s for s in statements if isinstance(s, syntax.ColumnDecl)
                       or (isinstance(s, syntax.TypedDecl) and s.keyword == "input")]
        targets_decl = [s for s in statements if isinstance(s, syntax.TypedDecl) and s.keyword == "target"]
        layers_decl = [s for s in statements if isinstance(s, syntax.LayerDecl)]

        self.check_unique_names(inputs_decl + targets_decl + layers_decl)
        inputs = self.resolve_neighbours(tuple(self.input_of(i, d) for i, d in enumerate(inputs_decl)))
        target = self.target_of(targets_decl, reads_columns=any(i.column is not None for i in inputs))
        self.check_columns(inputs_decl, inputs, target)
        loss_decl = self.single(statements, syntax.CallStatement, "loss")
        optimizer_decl = self.single(statements, syntax.CallStatement, "optimizer")
        train_decl = self.single(statements, syntax.TrainDecl, "train")
        metrics_decl = self.single(statements, syntax.MetricsDecl, "metrics")

        layers, complete = self.layers_of(inputs_decl, targets_decl, layers_decl, inputs)
        loss = self.loss_of(loss_decl, layers, targets_decl)
        optimizer = self.optimizer_of(optimizer_decl)
        train = self.train_of(train_decl)
        if loss is not None:
            self.check_output(layers[loss.output], loss, target)
            if complete:
                self.check_usage(inputs, layers, loss)
                self.check_memory(inputs, layers, optimizer, train.batch_size)
        output_dim = layers[loss.output].units if loss is not None else None
        metrics = self.metrics_of(metrics_decl, target, output_dim)
        if self.problems:
            return None
        assert target is not None and loss is not None
        return ir.Model(self.spec.name.text, self.spec.path, self.spec.source, inputs, target, layers, loss,
                        optimizer, train, metrics, self.spec.name.span)

    def single(self, statements, kind, word: str):
        found = [s for s in statements if isinstance(s, kind) and getattr(s, "keyword", word) == word]
        for extra in found[1:]:
            self.error(extra.span, f"a model has one {word} statement; the first is at line {found[0].span.line}")
        return found[0] if found else None

    def check_unique_names(self, decls) -> None:
        first: dict[str, syntax.Name] = {}
        for decl in decls:
            name = decl.name
            if name.text in first:
                self.error(name.span, f"duplicate name '{name.text}' (first defined at line {first[name.text].span.line})")
            else:
                first[name.text] = name

    def input_of(self, index: int, decl: syntax.TypedDecl | syntax.ColumnDecl) -> ir.Input:
        if isinstance(decl, syntax.ColumnDecl):
            column = self.column_of(decl)
            return ir.Input(index, decl.name.text, ir.InputKind.SPARSE, column.features if column else 1, decl.span,
                            column)
        kind = ir.InputKind(self.word(decl.kind, "an input's kind", [k.value for k in ir.InputKind]) or "dense")
        dim = self.integer(decl.size, "an input's size", 1, MAX_UNITS)
        standardize = kind is ir.InputKind.DENSE
        for option in decl.options:
            allowed = INPUT_OPTIONS[kind]
            if option.keyword is None or option.keyword.text not in allowed:
                where = option.keyword.span if option.keyword else option.span
                self.error(where, f"a {kind.value} input takes {_choices(allowed)} by name" if allowed
                           else f"a {kind.value} input takes no options")
                continue
            flag = self.flag(option.value, option.keyword.text)
            standardize = standardize if flag is None else flag
        return ir.Input(index, decl.name.text, kind, dim or 1, decl.span, standardize=standardize)

    def text_value(self, value: syntax.Value, what: str) -> str | None:
        if not isinstance(value, syntax.Text) or not value.value:
            self.error(value.span, f"{what} must be a non-empty quoted string")
            return None
        return value.value

    def column_name(self, value: syntax.Value, what: str) -> str | None:
        """A column written as a name (`of=item`) or, for any other header, as a string (`column="Item ID"`)."""
        if isinstance(value, syntax.Name):
            return value.text
        return self.text_value(value, what)

    def delimiter(self, value: syntax.Value, what: str) -> str | None:
        text = self.text_value(value, what)
        if text is not None and (len(text.encode()) != 1 or text in '"\r\n'):
            self.error(value.span, f"{what} must be one ASCII character other than a quote or a line break, "
                                   f"got {text!r}")
            return None
        return text

    def flag(self, value: syntax.Value, what: str) -> bool | None:
        word = self.word(value, what, ("true", "false"))
        return None if word is None else word == "true"

    def column_of(self, decl: syntax.ColumnDecl) -> ir.Column | None:
        """A typed column's featurizer from `input NAME: KIND(...)`; None after reporting."""
        call = decl.call
        kind_name = self.word(call.func, "a column's type", [k.value for k in ir.ColumnKind])
        if kind_name is None:
            return None
        kind = ir.ColumnKind(kind_name)
        args = self.bind(call, (), COLUMN_OPTIONS[kind])
        header = self.column_name(args["column"].value, "column") if "column" in args else decl.name.text
        column = ir.Column(kind, header or decl.name.text, COLUMN_DEFAULT_FEATURES)
        if "features" in args:
            column = replace(column, features=self.integer(args["features"].value, "features", 1, MAX_UNITS) or 1)
        if kind is ir.ColumnKind.TEXT:
            if "ngrams" in args:
                column = replace(column, ngrams=self.integer(args["ngrams"].value, "ngrams", 1, 2) or 1)
            for name in ("pairs", "lowercase"):
                if name in args:
                    value = self.flag(args[name].value, name)
                    column = replace(column, **{name: getattr(column, name) if value is None else value})
        if "delimiter" in args:
            column = replace(column, delimiter=self.delimiter(args["delimiter"].value, "delimiter") or "")
        elif kind is ir.ColumnKind.SEQUENCE:
            column = replace(column, delimiter=" ")
        elif kind is ir.ColumnKind.NEIGHBOURS:
            column = replace(column, delimiter=",")
        if kind is ir.ColumnKind.NEIGHBOURS:
            if not all(name in args for name in ("of", "id", "links")):
                self.error(call.span, "neighbours() needs 'of' (the input to aggregate), 'id' (the column of each "
                                      "row's node id) and 'links' (the column listing the ids it links to), e.g. "
                                      "neighbours(of=words, id=package, links=depends)")
                return None
            of = args["of"].value
            if not isinstance(of, syntax.Name):
                self.error(of.span, "of must be the name of another input of this model")
                return None
            column = replace(column, header=self.column_name(args["links"].value, "links") or "",
                             by=self.column_name(args["id"].value, "id") or "", source=-1,
                             aggregate=self.word(args["aggregate"].value, "aggregate", AGGREGATES) or "mean"
                             if "aggregate" in args else "mean",
                             direction=self.word(args["direction"].value, "direction", DIRECTIONS) or "both"
                             if "direction" in args else "both")
            self.neighbour_sources[decl.name.text] = of
        if kind is ir.ColumnKind.DATE:
            column = replace(column, features=DATE_FEATURES)
        if kind is ir.ColumnKind.HISTORY:
            if "of" not in args or "by" not in args:
                self.error(call.span, "history() needs 'of' (the column of items) and 'by' (the column of the key "
                                      "whose earlier rows count), e.g. history(of=item, by=user, order=timestamp)")
                return None
            last = self.integer(args["last"].value, "last", 1, 1000) if "last" in args else HISTORY_LAST_DEFAULT
            column = replace(column, header=self.column_name(args["of"].value, "of") or "",
                             by=self.column_name(args["by"].value, "by") or "", last=last or 1,
                             order=self.column_name(args["order"].value, "order") or "" if "order" in args else "")
        if kind is ir.ColumnKind.NUMERICAL:
            bins = self.integer(args["bins"].value, "bins", 1, MAX_UNITS) if "bins" in args else None
            if "bins" not in args or "range" not in args:
                self.error(call.span, "numerical() needs 'bins' and 'range', e.g. numerical(bins=10, range=(0, 100))")
                return None
            bounds = args["range"].value
            if not isinstance(bounds, syntax.Pair):
                self.error(bounds.span, "range must be a pair of numbers, e.g. (0, 100)")
                return None
            low = self.number(bounds.first, "range's low end", lambda v: True, "finite")
            high = self.number(bounds.second, "range's high end", lambda v: True, "finite")
            if low is not None and high is not None and not low < high:
                self.error(bounds.span, f"range's low end must be below its high end, got ({low:g}, {high:g})")
                return None
            column = replace(column, features=bins or 1, low=low or 0.0, high=high or 1.0)
        return column

    def target_of(self, decls: list[syntax.TypedDecl], reads_columns: bool) -> ir.Target | None:
        if not decls:
            self.error(self.spec.name.span, "model has no target: declare one, e.g. 'target label: classes[10]'")
            return None
        for extra in decls[1:]:
            self.error(extra.span, f"a model has one target; the first is at line {decls[0].span.line}")
        decl = decls[0]
        kind = self.word(decl.kind, "a target's kind", [k.value for k in ir.TargetKind])
        dim = self.integer(decl.size, "a target's size", 1, MAX_UNITS)
        header, delimiter = (decl.name.text, "") if reads_columns else (None, "")
        allowed = ("column", "delimiter") if kind == ir.TargetKind.MULTILABEL.value else ("column",)
        for option in decl.options:
            if option.keyword is None or option.keyword.text not in allowed:
                where = option.keyword.span if option.keyword else option.span
                self.error(where, f"a {kind or 'target'} target takes {_choices(allowed)} by name"
                           if reads_columns else "options of a target are for models that read typed columns "
                                                 "(inputs such as text(...) or categorical(...))")
            elif not reads_columns:
                self.error(option.keyword.span, "options of a target are for models that read typed columns "
                                                "(inputs such as text(...) or categorical(...))")
            elif option.keyword.text == "column":
                header = self.text_value(option.value, "column") or header
            else:
                delimiter = self.delimiter(option.value, "delimiter") or ""
        if kind is None or dim is None:
            return None
        return ir.Target(decl.name.text, ir.TargetKind(kind), dim, decl.span, header, delimiter)

    def resolve_neighbours(self, inputs: tuple[ir.Input, ...]) -> tuple[ir.Input, ...]:
        """A neighbours input aggregates another typed input's features: its width is that input's."""
        by_name = {i.name: i for i in inputs}
        resolved = []
        for model_input in inputs:
            of = self.neighbour_sources.get(model_input.name)
            if of is None or model_input.column is None:
                resolved.append(model_input)
                continue
            source = by_name.get(of.text)
            kinds = (ir.ColumnKind.HISTORY, ir.ColumnKind.NEIGHBOURS)
            if source is None or source.column is None or source.column.kind in kinds:
                self.error(of.span, f"neighbours() aggregates the features of another input read from a column "
                                    f"(text, categorical, numerical, date or sequence), got '{of.text}'",
                           did_you_mean(of.text, [i.name for i in inputs if i.column and i.column.kind not in kinds]))
                resolved.append(model_input)
                continue
            column = replace(model_input.column, source=source.index, features=source.dim)
            resolved.append(replace(model_input, dim=source.dim, column=column))
        return tuple(resolved)

    def check_columns(self, inputs_decl, inputs: tuple[ir.Input, ...], target: ir.Target | None) -> None:
        """A model reads either typed columns of a CSV/TSV file or feature ids; a column is not its own target."""
        typed = [i for i, d in zip(inputs, inputs_decl) if isinstance(d, syntax.ColumnDecl)]
        if not typed:
            return
        for model_input, decl in zip(inputs, inputs_decl):
            if isinstance(decl, syntax.TypedDecl):
                self.error(decl.span, f"input '{model_input.name}' reads feature ids, but input '{typed[0].name}' "
                                      "reads a typed column: a model reads either columns of a CSV/TSV file or "
                                      "feature ids, not both")
            elif model_input.column is not None and target is not None and model_input.column.header == target.header \
                    and model_input.column.kind is not ir.ColumnKind.HISTORY:  # a history sees earlier rows only
                self.error(decl.span, f"input '{model_input.name}' reads column '{target.header}', which holds the "
                                      f"target '{target.name}'")

    # -- layers ----------------------------------------------------------------------------------------

    def layers_of(self, inputs_decl, targets_decl, layers_decl, inputs) -> tuple[tuple[ir.Layer, ...], bool]:
        """The layers that could be built, in topological order, and whether that is all of them."""
        by_name: dict[str, syntax.LayerDecl] = {}
        for decl in layers_decl:
            by_name.setdefault(decl.name.text, decl)  # a duplicate was reported; the first definition counts
        layers_decl = list(by_name.values())
        input_index = {d.name.text: i for i, d in enumerate(inputs_decl)}
        target_names = {d.name.text for d in targets_decl}
        known = list(input_index) + list(by_name)
        order: list[str] = []
        state: dict[str, str] = {}  # name -> "visiting" | "done"
        built: dict[str, ir.Layer | None] = {}

        def resolve(ref: syntax.Value) -> ir.NodeRef | None:
            if not isinstance(ref, syntax.Name):
                self.error(ref.span, "expected the name of an input or a layer")
                return None
            if ref.text in input_index:
                return ir.NodeRef(True, input_index[ref.text])
            if ref.text in target_names:
                self.error(ref.span, f"'{ref.text}' is the target; a layer reads inputs or other layers")
                return None
            if ref.text not in by_name:
                self.error(ref.span, f"undefined name '{ref.text}'", did_you_mean(ref.text, known))
                return None
            visit(by_name[ref.text])
            if built.get(ref.text) is None:
                return None
            return ir.NodeRef(False, order.index(ref.text))

        def visit(decl: syntax.LayerDecl) -> None:
            name = decl.name.text
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                cycle = " -> ".join(stack[stack.index(name):] + [name])
                self.error(decl.name.span, f"layers form a cycle: {cycle}")
                built[name] = None
                return
            state[name] = "visiting"
            stack.append(name)
            layer = self.layer_of(decl, resolve, lambda ref: self.node_dim(ref, built, order, inputs))
            stack.pop()
            state[name] = "done"
            built[name] = layer
            if layer is not None:
                order.append(name)
                built[name] = _reindex(layer, len(order) - 1)

        stack: list[str] = []
        for decl in layers_decl:
            visit(decl)
        complete = all(built.get(d.name.text) is not None for d in layers_decl)
        return tuple(built[name] for name in order), complete

    def node_dim(self, ref: ir.NodeRef, built, order, inputs) -> int:
        if ref.is_input:
            return inputs[ref.index].dim
        return built[order[ref.index]].dim

    def layer_of(self, decl: syntax.LayerDecl, resolve, dim_of) -> ir.Layer | None:
        kind = decl.call.func
        op = ops.by_kind(kind.text)
        if op is not None:
            return op.check(self, decl, resolve, dim_of)
        self.error(kind.span, f"unknown layer kind '{kind.text}'; expected {_choices(ops.kinds())}",
                   did_you_mean(kind.text, ops.kinds()))
        return None

    # -- the loss, the output and whole-model rules ----------------------------------------------------

    def loss_of(self, decl: syntax.CallStatement | None, layers, targets_decl) -> ir.Loss | None:
        if decl is None:
            self.error(self.spec.name.span, "model has no loss: add e.g. 'loss cross_entropy(scores, label)'")
            return None
        call = decl.call
        kind = self.word(call.func, "the loss", [k.value for k in ir.LossKind])
        args = self.bind(call, ("output", "target"), ())
        if kind is None or len(args) < 2:
            return None
        output, target = args["output"].value, args["target"].value
        if not targets_decl or not isinstance(target, syntax.Name) or target.text != targets_decl[0].name.text:
            name = targets_decl[0].name.text if targets_decl else None
            found = f"'{target.text}'" if isinstance(target, syntax.Name) else "a value"
            self.error(target.span, f"the loss's second argument must be the target '{name}', got {found}"
                       if name else "the loss needs a declared target")
            return None
        names = [layer.name for layer in layers]
        if not isinstance(output, syntax.Name) or output.text not in names:
            word = output.text if isinstance(output, syntax.Name) else ""
            if not any(isinstance(s, syntax.LayerDecl) and s.name.text == word for s in self.spec.statements):
                self.error(output.span, f"the loss reads a layer; '{word}' is not one", did_you_mean(word, names))
            return None
        index = names.index(output.text)
        if not isinstance(layers[index], ir.DenseLayer):
            self.error(output.span, f"the loss must read a dense layer; '{output.text}' is a {layers[index].kind}")
            return None
        return ir.Loss(ir.LossKind(kind), index, decl.span)

    def check_output(self, output: ir.DenseLayer, loss: ir.Loss, target: ir.Target | None) -> None:
        needed = LOSS_ACTIVATION[loss.kind]
        if output.activation is not needed:
            self.error(loss.span, f"{loss.kind.value} needs a {needed.value} output; layer '{output.name}' has "
                       f"activation={output.activation.value}",
                       f"set activation={needed.value} on '{output.name}' (line {output.span.line})")
        sampling = output.sampling
        if needed is not ir.Activation.SOFTMAX and (sampling is None or sampling.active_sets is None):
            # settings of batch-shared sets on a layer whose default, known only now from its loss, is per-row sets
            batch_only = (
                ("row_candidates", sampling is not None and sampling.row_candidates is not None,
                 "add active_sets=batch to its sampling, or drop row_candidates"),
                ("precision=bf16", output.precision == "bf16",
                 "add sampling=dwta(active_sets=batch), or drop precision=bf16"),
            )
            for setting, given, hint in batch_only:
                if given:
                    self.error(output.span, f"{setting} applies to batch-shared active sets, but layer "
                               f"'{output.name}' has one active set per row (a sigmoid output's default)", hint)
        if target is not None and output.units != target.dim:
            self.error(output.span, f"layer '{output.name}' has {output.units} units but target '{target.name}' "
                       f"has {target.dim} {target.kind.value}")

    def check_usage(self, inputs, layers, loss: ir.Loss) -> None:
        consumers: dict[ir.NodeRef, list[ir.Layer]] = {}
        for layer in layers:
            for source in layer.sources:
                consumers.setdefault(source, []).append(layer)
            ops.of(layer).check_in_model(self, layer, inputs, loss)
        reaches_loss = {loss.output}
        for layer in reversed(layers):
            if layer.index in reaches_loss:
                reaches_loss.update(s.index for s in layer.sources if not s.is_input)
        for layer in layers:
            ref = ir.NodeRef(False, layer.index)
            if layer.index == loss.output:
                if ref in consumers:
                    self.error(layer.span, f"the output layer '{layer.name}' also feeds another layer")
            elif ref not in consumers:
                self.error(layer.span, f"layer '{layer.name}' feeds nothing: no layer or loss reads it")
            elif layer.index not in reaches_loss:
                self.error(layer.span, f"layer '{layer.name}' is unused: nothing it feeds reaches the loss")
        for model_input in inputs:
            if ir.NodeRef(True, model_input.index) not in consumers:
                self.error(model_input.span, f"input '{model_input.name}' is never used")

    def check_memory(self, inputs, layers, optimizer: ir.Optimizer, batch_size: int) -> None:
        if self.memory_bytes is None:
            return
        per_parameter = BYTES_PER_PARAMETER if optimizer.kind is ir.OptimizerKind.ADAM else 4
        need = sum(ops.of(layer).parameters(layer) for layer in layers) * per_parameter
        need += batch_size * sum(ops.of(layer).batch_values(layer, inputs) for layer in layers) * 4
        if need > self.memory_bytes:
            largest = max(layers, key=lambda layer: ops.of(layer).parameters(layer))
            self.error(self.spec.name.span,
                       f"model needs {_gib(need)} for its weights, optimizer state and batch buffers, but this "
                       f"machine has {_gib(self.memory_bytes)} of memory",
                       f"the largest layer is '{largest.name}' ({ops.of(largest).parameters(largest):,} parameters, "
                       f"line {largest.span.line})")

    # -- optimizer, train block, metrics ---------------------------------------------------------------

    def optimizer_of(self, decl: syntax.CallStatement | None) -> ir.Optimizer:
        if decl is None:
            return DEFAULT_OPTIMIZER
        word = self.word(decl.call.func, "the optimizer", [k.value for k in ir.OptimizerKind])
        if word is None:
            return DEFAULT_OPTIMIZER
        kind = ir.OptimizerKind(word)
        args = self.bind(decl.call, (), OPTIMIZER_PARAMS[kind])
        values = {"learning_rate": DEFAULT_OPTIMIZER.learning_rate, "beta1": DEFAULT_OPTIMIZER.beta1,
                  "beta2": DEFAULT_OPTIMIZER.beta2, "eps": DEFAULT_OPTIMIZER.eps}
        rules = {
            "learning_rate": (lambda x: x > 0, "positive (or auto)"),
            "beta1": (lambda x: 0 <= x < 1, "in [0, 1)"),
            "beta2": (lambda x: 0 <= x < 1, "in [0, 1)"),
            "eps": (lambda x: x > 0, "positive"),
        }
        for name, arg in args.items():
            if name == "moments":
                storage = self.word(arg.value, "moments", MOMENT_STORAGE)
                if storage is not None:
                    values["moments"] = storage
                continue
            if name == "learning_rate" and isinstance(arg.value, syntax.Name) and arg.value.text == "auto":
                values[name] = None
                continue
            valid, rule = rules[name]
            value = self.number(arg.value, name, valid, rule)
            if value is not None:
                values[name] = value
        return ir.Optimizer(kind, **values)

    def train_of(self, decl: syntax.TrainDecl | None) -> ir.TrainConfig:
        if decl is None:
            return DEFAULT_TRAIN
        values: dict[str, object] = {}
        limits = {"batch_size": (1, MAX_BATCH), "epochs": (1, None), "seed": (0, 2**63 - 1), "threads": (1, 4096),
                  "rebuild": (1, None), "freeze_tables_after": (0, None), "max_epochs": (1, 10000),
                  "patience": (1, 10000), "warmup": (0, None)}
        keys = {"rebuild": "rebuild_every"}
        autos = ("threads", "rebuild", "epochs")  # auto: the machine's cores, the decaying schedule, early stopping
        seen: set[str] = set()
        for setting in decl.settings:
            key = setting.keyword
            assert key is not None
            if key.text not in TRAIN_SETTINGS:
                self.error(key.span, f"unknown train setting '{key.text}'; expected {_choices(TRAIN_SETTINGS)}",
                           did_you_mean(key.text, TRAIN_SETTINGS))
                continue
            if key.text in seen:
                self.error(key.span, f"train setting '{key.text}' given twice")
                continue
            seen.add(key.text)
            value = setting.value
            if key.text in autos and isinstance(value, syntax.Name) and value.text == "auto":
                values[keys.get(key.text, key.text)] = None
            elif key.text == "validation":
                values["validation"] = self.validation_of(value)
            elif key.text == "restore_best":
                values["restore_best"] = self.flag(value, "restore_best")
            elif key.text == "schedule":
                values["schedule"] = self.word(value, "schedule", SCHEDULES)
            else:
                what = {"rebuild": "rebuild (batches between hash-table rebuilds, or auto)",
                        "epochs": "epochs (a count, or auto)"}.get(key.text, key.text)
                values[keys.get(key.text, key.text)] = self.integer(value, what, *limits[key.text])
        config = replace(DEFAULT_TRAIN, **{name: value for name, value in values.items()
                                           if value is not None or name in ("epochs", "threads", "rebuild_every")})
        if config.epochs is not None and "max_epochs" in seen:
            self.error(next(s.keyword.span for s in decl.settings if s.keyword.text == "max_epochs"),
                       "max_epochs caps epochs = auto; with a fixed epoch count it has no use")
        if config.epochs is not None and "patience" in seen:
            self.error(next(s.keyword.span for s in decl.settings if s.keyword.text == "patience"),
                       "patience is for epochs = auto (stop when the validation metric stops improving)")
        return config

    def validation_of(self, value: syntax.Value) -> float | str | None:
        """``validation = 0.05`` (a fraction of the training rows, held out) or ``validation = "file"``."""
        if isinstance(value, syntax.Text):
            return self.text_value(value, "validation")
        return self.number(value, "validation (a fraction of the training rows, or a quoted file name)",
                           lambda x: 0 < x < 1, "between 0 and 1")

    def metrics_of(self, decl: syntax.MetricsDecl | None, target: ir.Target | None,
                   output_dim: int | None) -> tuple[ir.Metric, ...]:
        if decl is None:
            first = "accuracy" if target is None or target.kind is ir.TargetKind.CLASSES else "precision"
            return (ir.Metric("loss", None), ir.Metric(first, None if first == "accuracy" else 1))
        metrics: list[ir.Metric] = []
        names = METRICS_WITH_K + METRICS_WITHOUT_K
        for ref in decl.metrics:
            name = ref.name.text
            if name not in names:
                self.error(ref.name.span, f"unknown metric '{name}'; expected accuracy, loss, precision@k or recall@k",
                           did_you_mean(name, names))
                continue
            if name in METRICS_WITHOUT_K:
                if ref.k is not None:
                    self.error(ref.span, f"{name} takes no @k")
                    continue
                metrics.append(ir.Metric(name, None))
                continue
            if ref.k is None:
                self.error(ref.span, f"{name} needs a cut-off, e.g. {name}@1")
                continue
            k = self.integer(ref.k, f"the k of {name}@k", 1, output_dim or MAX_UNITS)
            if k is not None:
                metrics.append(ir.Metric(name, k))
        return tuple(dict.fromkeys(metrics))


def _reindex(layer: ir.Layer, index: int) -> ir.Layer:
    from dataclasses import replace

    return replace(layer, index=index)


def check(spec: syntax.Spec, memory_bytes: int | None = None) -> ir.Model:
    """Check a parsed spec. ``memory_bytes``, when given, is the memory the model's parameters must fit in."""
    checker = _Checker(spec, memory_bytes)
    model = checker.run()
    if checker.problems:
        raise SpecErrors(checker.problems)
    assert model is not None
    return model
