"""Human-readable and JSON renderings of a ``Plan`` (what ``boltc explain`` prints)."""

from __future__ import annotations

from boltc import ops
from boltc.plan import PLATEAU_DECAY, ColumnPlan, Plan


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def plan_json(plan: Plan, build_info: dict | None = None) -> dict:
    data = plan.to_json()
    for layer, layer_data in zip(plan.layers, data["layers"]):  # the plan's decisions, in words
        layer_data["kernel_note"], layer_data["sparsity_note"] = ops.of_plan(layer).describe(plan, layer)
    data["totals"] = {
        "parameters": sum(layer.parameters for layer in plan.layers),
        "parameter_bytes": plan.parameter_bytes,
        "optimizer_bytes": plan.optimizer_bytes,
        "flops_forward_per_sample": sum(layer.flops_forward for layer in plan.layers),
        "flops_backward_per_sample": sum(layer.flops_backward for layer in plan.layers),
    }
    if build_info:
        data["build"] = build_info
    return data


def _column(column: ColumnPlan, plan: Plan) -> str:
    """A typed column as the spec would write it, with every value the checker filled in."""
    options = {"text": f"ngrams={column.ngrams}, pairs={str(column.pairs).lower()}, "
                       f"lowercase={str(column.lowercase).lower()}, features={column.features}",
               "categorical": f"features={column.features}" + (f", delimiter={column.delimiter!r}"
                                                               if column.delimiter else ""),
               "sequence": f"delimiter={column.delimiter!r}, features={column.features}",
               "numerical": _numerical(column, plan),
               "date": "",
               "history": f"of={column.header!r}, by={column.by!r}, last={column.last}, "
                          f"order={column.order or 'file order'!r}, features={column.features}",
               "neighbours": f"of={plan.inputs[column.source].name}, id={column.by!r}, links={column.header!r}, "
                             f"delimiter={column.delimiter!r}, aggregate={column.aggregate}, "
                             f"direction={column.direction}"}[column.kind]
    if column.kind in ("history", "neighbours"):
        return f"{column.kind}({options})"
    return f"{column.kind}({options}) of column {column.header!r}"


def _numerical(column: ColumnPlan, plan: Plan) -> str:
    if not column.learned:
        return f"bins={column.features}, range=({column.low:g}, {column.high:g})"
    bins = f"bins={column.features}, binning={column.binning}"
    if plan.provisional:
        return f"{bins}: learned from the training data at the first fit"
    if column.binning == "equal":
        return f"{bins}, range=({column.low:g}, {column.high:g}) learned from the training data"
    edges = ", ".join(f"{edge:g}" for edge in column.edges)
    return f"{bins}, {len(column.edges)} inner edges learned from the training data: {edges}"


def _target_size(plan: Plan) -> str:
    if plan.provisional and plan.target_learned:
        return "auto: the training data's label count, learned at the first fit"
    return f"{plan.target_dim}" + (": learned from the training data" if plan.target_learned else "")


def _epochs(plan: Plan) -> str:
    auto = plan.epochs is None
    if plan.validation_file:
        validation = f"validation on {plan.validation_file}"
    elif plan.validation_share:
        validation = f"validation on {plan.validation_share:.0%} of the training rows, held out"
    elif auto:
        validation = f"validation on {plan.auto_validation_share:.0%} of the training rows, held out (at most " \
                     f"{plan.auto_validation_rows_most:,})"
    else:
        validation = None
    keeps_best = plan.restore_best or (plan.restore_best is None and auto)
    if auto:
        going_on = " and going on from the best epoch's parameters" if keeps_best else ""
        text = f"auto (until the first metric on the validation rows has failed to improve in {plan.patience} " \
               f"epoch{'s' if plan.patience > 1 else ''} of the run, at most {plan.max_epochs}, dividing the " \
               f"learning rate by {1 / PLATEAU_DECAY:g} after each epoch without improvement{going_on}; {validation})"
    else:
        text = f"{plan.epochs}" + (f" ({validation})" if validation else "")
    if keeps_best:
        text += ", ending with the best epoch's parameters"
    if plan.schedule != "constant" or plan.warmup:
        text += f", learning rate {plan.schedule}" + (f" after {plan.warmup} warm-up batches" if plan.warmup else "")
    return text


def render_plan(plan: Plan, build_info: dict | None = None) -> str:
    inputs = ", ".join(f"{i.name}: {i.kind}[{i.dim}]" + (f" ({_column(i.column, plan)})" if i.column else "")
                       + (" (standardised with the training rows' statistics)" if i.standardize else "")
                       for i in plan.inputs)
    target_column = f" from column {plan.target_header!r}" + (
        f" split at {plan.target_delimiter!r}" if plan.target_delimiter else "") if plan.target_header else ""
    rate = f"{plan.learning_rate:g}" if plan.learning_rate is not None else "auto: raced on the training data at the " \
        "first fit"
    optimizer = f"{plan.optimizer}(learning_rate={rate}"
    optimizer += (f", beta1={plan.beta1:g}, beta2={plan.beta2:g}, eps={plan.eps:g}, moments={plan.moments})"
                  if plan.optimizer == "adam" else ")")
    lines = [
        f"model '{plan.model_name}' from {plan.spec_path}",
        f"  inputs    {inputs}",
        f"  target    {plan.target_kind}[{_target_size(plan)}]{target_column}, loss {plan.loss}, optimizer {optimizer}",
        f"  training  batch {plan.batch_size}, epochs {_epochs(plan)}, seed {plan.seed}, threads {plan.threads} "
        f"({plan.threads_origin}), scalar {plan.real_type}, OpenMP {'on' if plan.openmp else 'off (serial build)'}"
        f", ISA {' '.join(plan.isa) or 'generic'}",
        f"  metrics   {', '.join(plan.metrics)}",
        "",
    ]
    header = ("#", "layer", "op", "shape", "activation", "params", "weights+optimizer", "FLOP/sample fwd", "bwd")
    rows = [header]
    for layer in plan.layers:
        rows.append((str(layer.index), layer.name, ops.of_plan(layer).kind,
                     f"{layer.in_dim} -> {layer.out_dim}", layer.activation, f"{layer.parameters:,}",
                     f"{human_bytes(layer.parameter_bytes)} + {human_bytes(layer.optimizer_bytes)}",
                     f"{layer.flops_forward:,}", f"{layer.flops_backward:,}"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    totals = plan_json(plan)["totals"]
    lines.append(f"  total: {totals['parameters']:,} parameters, {human_bytes(plan.parameter_bytes)} weights + "
                 f"{human_bytes(plan.optimizer_bytes)} optimizer state; {totals['flops_forward_per_sample']:,} "
                 f"FLOP/sample forward, {totals['flops_backward_per_sample']:,} backward (dense inputs; a sparse "
                 "input costs in proportion to its non-zeros)")
    lines.append("")
    lines.append("  kernels:")
    for layer in plan.layers:
        kernel_note, sparsity_note = ops.of_plan(layer).describe(plan, layer)
        lines.append(f"    {layer.index} {layer.name}: {layer.kernel} - {kernel_note}"
                     + (f"; weights {layer.weight_layout}, column tile {layer.column_tile}" if layer.op == "fc"
                        else ""))
        if sparsity_note:
            lines.append(f"      note: {sparsity_note}")
    if build_info:
        lines.append("")
        lines.append(f"  build: key {build_info['key'][:16]}, {'cached' if build_info['cached'] else 'not built yet'}"
                     f" at {build_info['entry']}")
        lines.append(f"         {build_info['compiler']} {' '.join(build_info['cflags'])}")
    return "\n".join(lines)
