"""The checker's rules for a spec's inputs, typed CSV/TSV columns and target (``boltc.check`` runs them)."""

from __future__ import annotations

import math
from dataclasses import replace

from boltc import ir, syntax
from boltc.diagnostics import choices_text, did_you_mean

INPUT_OPTIONS = {ir.InputKind.DENSE: ("standardize",), ir.InputKind.SPARSE: ()}
COLUMN_DEFAULT_FEATURES = 100_000
DATE_FEATURES = 77  # day of week 7, month 12, week of month 5, week of year 53 (runtime/bolt_columns.h)
COLUMN_OPTIONS = {
    ir.ColumnKind.TEXT: ("ngrams", "pairs", "lowercase", "features", "column"),
    ir.ColumnKind.CATEGORICAL: ("features", "delimiter", "column"),
    ir.ColumnKind.NUMERICAL: ("bins", "range", "binning", "column"),
    ir.ColumnKind.DATE: ("column",),
    ir.ColumnKind.SEQUENCE: ("delimiter", "features", "column"),
    ir.ColumnKind.HISTORY: ("of", "by", "last", "order", "features"),
    ir.ColumnKind.NEIGHBOURS: ("of", "id", "links", "delimiter", "aggregate", "direction"),
}
AGGREGATES = ("mean", "sum")
DIRECTIONS = ("both", "out", "in")
HISTORY_LAST_DEFAULT = 20
NUMERICAL_BINS = 32  # numerical() without bins=
BINNINGS = ("quantile", "equal")


def input_of(checker, index: int, decl: syntax.TypedDecl | syntax.ColumnDecl) -> ir.Input:
    if isinstance(decl, syntax.ColumnDecl):
        column = column_of(checker, decl)
        return ir.Input(index, decl.name.text, ir.InputKind.SPARSE, column.features if column else 1, decl.span,
                        column)
    kind = ir.InputKind(checker.word(decl.kind, "an input's kind", [k.value for k in ir.InputKind]) or "dense")
    dim = checker.integer(decl.size, "an input's size", 1, ir.MAX_UNITS)
    standardize = kind is ir.InputKind.DENSE
    for option in decl.options:
        allowed = INPUT_OPTIONS[kind]
        if option.keyword is None or option.keyword.text not in allowed:
            where = option.keyword.span if option.keyword else option.span
            checker.error(where, f"a {kind.value} input takes {choices_text(allowed)} by name" if allowed
                          else f"a {kind.value} input takes no options")
            continue
        given = flag_of(checker, option.value, option.keyword.text)
        standardize = standardize if given is None else given
    return ir.Input(index, decl.name.text, kind, dim or 1, decl.span, standardize=standardize)


def text_value(checker, value: syntax.Value, what: str) -> str | None:
    if not isinstance(value, syntax.Text) or not value.value:
        checker.error(value.span, f"{what} must be a non-empty quoted string")
        return None
    return value.value


def column_name(checker, value: syntax.Value, what: str) -> str | None:
    """A column written as a name (`of=item`) or, for any other header, as a string (`column="Item ID"`)."""
    if isinstance(value, syntax.Name):
        return value.text
    return text_value(checker, value, what)


def delimiter_of(checker, value: syntax.Value, what: str) -> str | None:
    text = text_value(checker, value, what)
    if text is not None and (len(text.encode()) != 1 or text in '"\r\n'):
        checker.error(value.span, f"{what} must be one ASCII character other than a quote or a line break, "
                                  f"got {text!r}")
        return None
    return text


def flag_of(checker, value: syntax.Value, what: str) -> bool | None:
    word = checker.word(value, what, ("true", "false"))
    return None if word is None else word == "true"


def column_of(checker, decl: syntax.ColumnDecl) -> ir.Column | None:
    """A typed column's featurizer from `input NAME: KIND(...)`; None after reporting."""
    call = decl.call
    kind_name = checker.word(call.func, "a column's type", [k.value for k in ir.ColumnKind])
    if kind_name is None:
        return None
    kind = ir.ColumnKind(kind_name)
    args = checker.bind(call, (), COLUMN_OPTIONS[kind])
    header = column_name(checker, args["column"].value, "column") if "column" in args else decl.name.text
    column = ir.Column(kind, header or decl.name.text, COLUMN_DEFAULT_FEATURES)
    if "features" in args:
        column = replace(column, features=checker.integer(args["features"].value, "features", 1, ir.MAX_UNITS) or 1)
    if kind is ir.ColumnKind.TEXT:
        if "ngrams" in args:
            column = replace(column, ngrams=checker.integer(args["ngrams"].value, "ngrams", 1, 2) or 1)
        for name in ("pairs", "lowercase"):
            if name in args:
                value = flag_of(checker, args[name].value, name)
                column = replace(column, **{name: getattr(column, name) if value is None else value})
    if "delimiter" in args:
        column = replace(column, delimiter=delimiter_of(checker, args["delimiter"].value, "delimiter") or "")
    elif kind is ir.ColumnKind.SEQUENCE:
        column = replace(column, delimiter=" ")
    elif kind is ir.ColumnKind.NEIGHBOURS:
        column = replace(column, delimiter=",")
    if kind is ir.ColumnKind.NEIGHBOURS:
        if not all(name in args for name in ("of", "id", "links")):
            checker.error(call.span, "neighbours() needs 'of' (the input to aggregate), 'id' (the column of each "
                                     "row's node id) and 'links' (the column listing the ids it links to), e.g. "
                                     "neighbours(of=words, id=package, links=depends)")
            return None
        of = args["of"].value
        if not isinstance(of, syntax.Name):
            checker.error(of.span, "of must be the name of another input of this model")
            return None
        column = replace(column, header=column_name(checker, args["links"].value, "links") or "",
                         by=column_name(checker, args["id"].value, "id") or "", source=-1,
                         aggregate=checker.word(args["aggregate"].value, "aggregate", AGGREGATES) or "mean"
                         if "aggregate" in args else "mean",
                         direction=checker.word(args["direction"].value, "direction", DIRECTIONS) or "both"
                         if "direction" in args else "both")
        checker.neighbour_sources[decl.name.text] = of
    if kind is ir.ColumnKind.DATE:
        column = replace(column, features=DATE_FEATURES)
    if kind is ir.ColumnKind.HISTORY:
        if "of" not in args or "by" not in args:
            checker.error(call.span, "history() needs 'of' (the column of items) and 'by' (the column of the key "
                                     "whose earlier rows count), e.g. history(of=item, by=user, order=timestamp)")
            return None
        last = checker.integer(args["last"].value, "last", 1, 1000) if "last" in args else HISTORY_LAST_DEFAULT
        column = replace(column, header=column_name(checker, args["of"].value, "of") or "",
                         by=column_name(checker, args["by"].value, "by") or "", last=last or 1,
                         order=column_name(checker, args["order"].value, "order") or "" if "order" in args else "")
    if kind is ir.ColumnKind.NUMERICAL:
        column = numerical_of(checker, decl, args, column)
    return column


def target_of(checker, decls: list[syntax.TypedDecl], reads_columns: bool) -> ir.Target | None:
    if not decls:
        checker.error(checker.spec.name.span, "model has no target: declare one, e.g. 'target label: classes[10]'")
        return None
    for extra in decls[1:]:
        checker.error(extra.span, f"a model has one target; the first is at line {decls[0].span.line}")
    decl = decls[0]
    kind = checker.word(decl.kind, "a target's kind", [k.value for k in ir.TargetKind])
    learned = isinstance(decl.size, syntax.Name) and decl.size.text == "auto"
    if learned:
        dim = ir.PROVISIONAL_LABELS if checker.learned is None else checker.learned.labels
        if dim is None:
            checker.error(decl.size.span, "the learned values have no label count for this target")
        elif not 1 <= dim <= ir.MAX_UNITS:
            checker.error(decl.size.span, f"the training data holds {dim:,} labels: a target has 1 to {ir.MAX_UNITS:,}")
            dim = None
    elif isinstance(decl.size, syntax.Name):
        checker.error(decl.size.span, f"a target's size must be an integer or auto, got '{decl.size.text}'",
                      did_you_mean(decl.size.text, ("auto",)))
        dim = None
    else:
        dim = checker.integer(decl.size, "a target's size", 1, ir.MAX_UNITS)
    header, delimiter = (decl.name.text, "") if reads_columns else (None, "")
    allowed = ("column", "delimiter") if kind == ir.TargetKind.MULTILABEL.value else ("column",)
    for option in decl.options:
        if option.keyword is None or option.keyword.text not in allowed:
            where = option.keyword.span if option.keyword else option.span
            checker.error(where, f"a {kind or 'target'} target takes {choices_text(allowed)} by name"
                          if reads_columns else "options of a target are for models that read typed columns "
                                                "(inputs such as text(...) or categorical(...))")
        elif not reads_columns:
            checker.error(option.keyword.span, "options of a target are for models that read typed columns "
                                               "(inputs such as text(...) or categorical(...))")
        elif option.keyword.text == "column":
            header = text_value(checker, option.value, "column") or header
        else:
            delimiter = delimiter_of(checker, option.value, "delimiter") or ""
    if kind is None or dim is None:
        return None
    return ir.Target(decl.name.text, ir.TargetKind(kind), dim, decl.span, header, delimiter, learned)


def numerical_of(checker, decl: syntax.ColumnDecl, args: dict, column: ir.Column) -> ir.Column | None:
    """numerical(bins, range, binning): equal bins over a declared range, or bins learned from the training data
    (quantile by default: skewed values leave most equal-width bins empty)."""
    bins = checker.integer(args["bins"].value, "bins", 1, ir.MAX_UNITS) if "bins" in args else NUMERICAL_BINS
    binning = checker.word(args["binning"].value, "binning", BINNINGS) if "binning" in args else None
    if "range" not in args:
        binning = binning or "quantile"
        learned = checker.learned.bins_of(decl.name.text) if checker.learned is not None else None
        if checker.learned is not None and not _usable_bins(learned, binning):
            checker.error(decl.span, f"the learned values have no usable bins for input '{decl.name.text}'")
            return None
        if binning == "equal":
            low, high = learned or (0.0, 1.0)
            return replace(column, features=bins or 1, low=low, high=high, learned=True)
        return replace(column, features=bins or 1, binning="quantile", learned=True, edges=learned or ())
    if binning == "quantile":
        checker.error(args["binning"].span, "quantile bins are learned from the training data: drop range, or "
                                            "choose binning=equal")
        return None
    bounds = args["range"].value
    if not isinstance(bounds, syntax.Pair):
        checker.error(bounds.span, "range must be a pair of numbers, e.g. (0, 100)")
        return None
    low = checker.number(bounds.first, "range's low end", lambda v: True, "finite")
    high = checker.number(bounds.second, "range's high end", lambda v: True, "finite")
    if low is not None and high is not None and not low < high:
        checker.error(bounds.span, f"range's low end must be below its high end, got ({low:g}, {high:g})")
        return None
    return replace(column, features=bins or 1, low=low or 0.0, high=high or 1.0)


def _usable_bins(learned: tuple[float, ...] | None, binning: str) -> bool:
    """Learned bins the featurizer can use: finite, a range of two ascending ends or ascending edges."""
    if learned is None or not all(math.isfinite(value) for value in learned):
        return False
    if binning == "equal":
        return len(learned) == 2 and learned[0] < learned[1]
    return all(a < b for a, b in zip(learned, learned[1:]))


def resolve_neighbours(checker, inputs: tuple[ir.Input, ...]) -> tuple[ir.Input, ...]:
    """A neighbours input aggregates another typed input's features: its width is that input's."""
    by_name = {i.name: i for i in inputs}
    resolved = []
    for model_input in inputs:
        of = checker.neighbour_sources.get(model_input.name)
        if of is None or model_input.column is None:
            resolved.append(model_input)
            continue
        source = by_name.get(of.text)
        kinds = (ir.ColumnKind.HISTORY, ir.ColumnKind.NEIGHBOURS)
        if source is None or source.column is None or source.column.kind in kinds:
            checker.error(of.span, f"neighbours() aggregates the features of another input read from a column "
                                   f"(text, categorical, numerical, date or sequence), got '{of.text}'",
                          did_you_mean(of.text, [i.name for i in inputs if i.column and i.column.kind not in kinds]))
            resolved.append(model_input)
            continue
        column = replace(model_input.column, source=source.index, features=source.dim)
        resolved.append(replace(model_input, dim=source.dim, column=column))
    return tuple(resolved)


def check_columns(checker, inputs_decl, inputs: tuple[ir.Input, ...], target: ir.Target | None) -> None:
    """A model reads either typed columns of a CSV/TSV file or feature ids; a column is not its own target."""
    typed = [i for i, d in zip(inputs, inputs_decl) if isinstance(d, syntax.ColumnDecl)]
    if not typed:
        return
    for model_input, decl in zip(inputs, inputs_decl):
        if isinstance(decl, syntax.TypedDecl):
            checker.error(decl.span, f"input '{model_input.name}' reads feature ids, but input '{typed[0].name}' "
                                     "reads a typed column: a model reads either columns of a CSV/TSV file or "
                                     "feature ids, not both")
        elif model_input.column is not None and target is not None and model_input.column.header == target.header \
                and model_input.column.kind is not ir.ColumnKind.HISTORY:  # a history sees earlier rows only
            checker.error(decl.span, f"input '{model_input.name}' reads column '{target.header}', which holds the "
                                     f"target '{target.name}'")
