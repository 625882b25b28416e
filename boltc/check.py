"""``syntax.Spec`` -> ``ir.Model``: resolve names and sizes, fill defaults, and report every mistake at once.

The checker never stops at the first error: each problem is collected with its span and ``SpecErrors`` is raised
at the end, sorted by position, so one edit-compile cycle fixes them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from boltc import ir, syntax
from boltc import check_inputs, check_training, ops
from boltc.diagnostics import Span, SpecError, SpecErrors, choices_text, did_you_mean

LOSS_ACTIVATION = {
    ir.LossKind.CROSS_ENTROPY: ir.Activation.SOFTMAX,
    ir.LossKind.BINARY_CROSS_ENTROPY: ir.Activation.SIGMOID,
}


@dataclass
class _Checker:
    spec: syntax.Spec
    problems: list[SpecError] = field(default_factory=list)
    neighbour_sources: dict[str, syntax.Name] = field(default_factory=dict)  # neighbours input -> its `of`
    learned: ir.Learned | None = None  # what the training data said of the spec's auto sizes (None: not read yet)
    target: ir.Target | None = None
    auto_units: list[syntax.Name] = field(default_factory=list)  # the names of layers given units=auto

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
        self.error(value.span, f"{what} must be {choices_text(choices)}, got {found}", hint)
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
        inputs = check_inputs.resolve_neighbours(self, tuple(check_inputs.input_of(self, i, d) for i, d in enumerate(inputs_decl)))
        target = self.target = check_inputs.target_of(self, targets_decl,
                                                      reads_columns=any(i.column is not None for i in inputs))
        check_inputs.check_columns(self, inputs_decl, inputs, target)
        loss_decl = self.single(statements, syntax.CallStatement, "loss")
        optimizer_decl = self.single(statements, syntax.CallStatement, "optimizer")
        train_decl = self.single(statements, syntax.TrainDecl, "train")
        metrics_decl = self.single(statements, syntax.MetricsDecl, "metrics")

        layers, complete = self.layers_of(inputs_decl, targets_decl, layers_decl, inputs)
        loss = self.loss_of(loss_decl, layers, targets_decl)
        optimizer = check_training.optimizer_of(self, optimizer_decl)
        train = check_training.train_of(self, train_decl)
        if loss is not None:
            self.check_output(layers[loss.output], loss, target)
            if complete:
                self.check_usage(inputs, layers, loss)
        output_dim = layers[loss.output].units if loss is not None else None
        provisional = target is not None and target.learned and self.learned is None
        metrics = check_training.metrics_of(self, metrics_decl, target, None if provisional else output_dim)
        if self.problems:
            return None
        assert target is not None and loss is not None
        model = ir.Model(self.spec.name.text, self.spec.path, self.spec.source, inputs, target, layers, loss,
                         optimizer, train, metrics, self.spec.name.span)
        return replace(model, learned=self.learned) if model.learns_from_data else model

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
        self.error(kind.span, f"unknown layer kind '{kind.text}'; expected {choices_text(ops.kinds())}",
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
        for name in self.auto_units:
            if name.text != output.name:
                self.error(name.span, f"units=auto is the target's count: it is for the layer the loss reads "
                                      f"('{output.name}'), not '{name.text}'")
        if target is not None and target.learned and output.name not in {name.text for name in self.auto_units}:
            self.error(output.span, f"target '{target.name}' learns its count from the training data: give layer "
                                    f"'{output.name}' units=auto rather than {output.units}")
        elif target is not None and output.units != target.dim:
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


def _reindex(layer: ir.Layer, index: int) -> ir.Layer:
    return replace(layer, index=index)


def check(spec: syntax.Spec, learned: ir.Learned | None = None) -> ir.Model:
    """Check a parsed spec (whether the model fits the machine's memory is the plan's to say: it sizes everything).
    Sizes the spec leaves to the data (``auto``) are `learned`'s, or placeholders until the data is read
    (``ir.Model.provisional``); either way every rule is checked, those of the learned sizes when they are known."""
    checker = _Checker(spec, learned=learned)
    model = checker.run()
    if checker.problems:
        raise SpecErrors(checker.problems)
    assert model is not None
    return model
