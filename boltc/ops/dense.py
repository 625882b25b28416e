"""dense(SOURCE, UNITS, ...): a fully connected layer (templates/fc.c.j2), or an LSH-sparse one where sparsity is
asked for and the plan can run it so (templates/fc_sparse.c.j2, over runtime/bolt_lsh.h and the hash families of
boltc/hashing/)."""

from __future__ import annotations

from boltc import ir, syntax
from boltc.abi import BF16_DEPTH, BF16_WIDTH, SPARSE_PROFILE_FIELDS
from boltc.diagnostics import did_you_mean
from boltc.emit import ACTIVATIONS, DERIVATIVES, banner, c_comment
from boltc.hashing import FAMILIES
from boltc.hashing import family as hash_family
from boltc.ops import LayerOp
from boltc.plan import (BF16_BYTES, COLUMN_TILE, TRANSPOSED_BACKWARD_BELOW, LayerPlan, Plan, PlanContext, SourcePlan,
                        auto_sparsity, carries_gradient, lsh_plan)

DENSE_ARGS = ("input", "units")
DENSE_OPTIONS = ("activation", "sparsity", "bias", "sampling", "precision")
PRECISIONS = ("fp32", "bf16")
SAMPLING_PARAMS = ("hashes", "tables", "bucket_cap", "active_sets", "row_candidates")
ACTIVE_SETS = ("row", "batch")
SAMPLING_LIMITS = {"tables": (1, 10000), "bucket_cap": (1, 1 << 20), "row_candidates": (0, 1 << 20)}  # K: the family's


class Dense(LayerOp):
    kind = "dense"
    plan_op = "fc"

    def check(self, checker, decl, resolve, dim_of) -> ir.DenseLayer | None:
        return _dense_of(checker, decl, resolve, dim_of)

    def check_in_model(self, checker, layer: ir.DenseLayer, inputs, loss) -> None:
        if layer.index == loss.output:
            return
        if layer.activation is ir.Activation.SOFTMAX:
            checker.error(layer.span, f"softmax is only allowed on the output layer; '{layer.name}' feeds "
                          "another layer", "use relu, tanh, sigmoid or linear for hidden layers")
        sampling = layer.sampling
        output_only = (
            ("active_sets=batch", sampling is not None and sampling.active_sets == "batch"),
            ("row_candidates", sampling is not None and sampling.row_candidates is not None),
            ("precision=bf16", layer.precision == "bf16"),
        )
        for setting, given in output_only:
            if given:
                checker.error(layer.span, f"{setting} applies to a sparse output layer's batch-shared active sets; "
                              f"'{layer.name}' is a hidden layer, whose rows each have their own active set")

    def parameters(self, layer: ir.DenseLayer) -> int:
        return (layer.in_dim + int(layer.bias)) * layer.units

    def batch_values(self, layer: LayerPlan) -> int:
        lsh = layer.lsh
        if layer.kernel == "sparse":  # logits and their gradients at the active width only
            return 2 * max(lsh.inference_active, lsh.shared_active if lsh.active_sets == "batch" else lsh.active)
        # a layer hashing or multiplying a dense input keeps a copy of the batch's rows; a sparse hidden layer keeps
        # its active units' values and gradients besides its full-width outputs and theirs
        copies_input = layer.kernel in ("blocked", "sparse_hidden") and layer.sources[0].is_input
        return 2 * layer.out_dim + (layer.in_dim if copies_input else 0) + (2 * lsh.active if lsh else 0)

    def scratch_values(self, layer: LayerPlan) -> int:
        if layer.lsh is None:
            return 0
        # the rebuild's hashing, and a sparse input's row placed in a vector to be hashed, on each thread
        return layer.lsh.threads * (_rebuild_scratch(layer)[1] + (0 if layer.neuron_rows else layer.in_dim))

    def plan(self, model: ir.Model, layer: ir.DenseLayer, context: PlanContext) -> LayerPlan:
        requested, origin = _requested_sparsity(layer)
        reason = _sparse_reason(model, layer) if requested is not None else ""
        if requested is not None and not reason:
            return _sparse_plan(model, layer, context, requested, origin)
        return _dense_plan(model, layer, context, requested, origin, reason)

    def describe(self, plan: Plan, layer: LayerPlan) -> tuple[str, str]:
        lsh = layer.lsh
        if lsh is None:
            return _dense_kernel_note(plan, layer), (
                f"runs dense: sparsity {layer.sparsity_requested:g} was asked for ({layer.sparsity_origin}), but "
                f"{layer.dense_reason}" if layer.dense_reason else "")
        key_flops = hash_family(lsh.family).key_flops(lsh.bins, layer.in_dim)
        if layer.emits_active_units:
            return _hidden_kernel_note(plan, layer), _hidden_note(layer, key_flops)
        return _sparse_kernel_note(plan, layer), _lsh_note(layer, key_flops)

    def emit(self, plan: Plan, layer: LayerPlan, buffers, base: dict, slots_of: dict[int, dict]) -> dict:
        if layer.kernel == "sparse":
            slots = _sparse_buffers(plan, layer, buffers, base)
        elif layer.emits_active_units:
            slots = _hidden_buffers(plan, layer, buffers, base)
        else:
            slots = _dense_buffers(plan, layer, buffers, base)
        _exchange_buffers(layer, buffers.add, slots)
        return _fc_context(plan, layer, slots, slots_of)


def _units_of(checker, decl: syntax.LayerDecl, value: syntax.Value) -> int | None:
    """A count, or auto: the target's count (the output layer's width follows a target of learned size)."""
    if not (isinstance(value, syntax.Name) and value.text == "auto"):
        return checker.integer(value, "units", 1, ir.MAX_UNITS)
    checker.auto_units.append(decl.name)
    if checker.target is None:
        return None  # the target's own problem was reported
    return checker.target.dim


def _dense_of(checker, decl: syntax.LayerDecl, resolve, dim_of) -> ir.DenseLayer | None:
    args = checker.bind(decl.call, DENSE_ARGS, DENSE_OPTIONS)
    source = resolve(args["input"].value) if "input" in args else None
    units = _units_of(checker, decl, args["units"].value) if "units" in args else None
    reported = len(checker.problems)
    activation = ir.Activation.LINEAR
    if "activation" in args:
        word = checker.word(args["activation"].value, "activation", [a.value for a in ir.Activation])
        activation = ir.Activation(word) if word else activation
    sparsity = ir.Sparsity(None)
    if "sparsity" in args:
        sparsity = _sparsity_of(checker, args["sparsity"].value)
    bias = True
    if "bias" in args:
        bias = checker.word(args["bias"].value, "bias", ("true", "false")) != "false"
    sampling = None
    if "sampling" in args:
        sampling = _sampling_of(checker, args["sampling"], sparsity)
    precision = "fp32"
    if "precision" in args:
        precision = _precision_of(checker, args["precision"], sparsity, sampling) or precision
    if source is None or units is None or len(checker.problems) > reported:
        return None  # a half-understood layer would only cause follow-on errors
    return ir.DenseLayer(-1, decl.name.text, source, dim_of(source), units, activation, sparsity, bias, decl.span,
                         sampling, precision)


def _precision_of(checker, arg: syntax.Argument, sparsity: ir.Sparsity, sampling: ir.Sampling | None) -> str | None:
    """The operands of a layer's products: bf16 needs batch-shared active sets (a sigmoid output's default of
    one set per row shows only with the loss, in check_output)."""
    precision = checker.word(arg.value, "precision", PRECISIONS)
    if precision != "bf16":
        return precision
    if sparsity.fraction is None and not sparsity.auto:
        checker.error(arg.span, "precision=bf16 applies to sparse layers with batch-shared active sets: add "
                      "sparsity=<fraction> or sparsity=auto")
        return None
    if sampling is not None and sampling.active_sets == "row":
        checker.error(arg.span, "precision=bf16 applies to batch-shared active sets, not to active_sets=row")
        return None
    return precision


def _sampling_of(checker, arg: syntax.Argument, sparsity: ir.Sparsity) -> ir.Sampling | None:
    value = arg.value
    if not isinstance(value, syntax.Call):
        checker.error(value.span, "sampling must be a hash family call, e.g. sampling=dwta(hashes=5, tables=164)")
        return None
    family = checker.word(value.func, "the sampling family", tuple(FAMILIES))
    if family is None:
        return None
    if sparsity.fraction is None and not sparsity.auto:
        checker.error(arg.span, "sampling needs a sparse layer: add sparsity=<fraction> or sparsity=auto")
        return None
    settings = checker.bind(value, (), SAMPLING_PARAMS)
    limits = dict(SAMPLING_LIMITS, hashes=(1, FAMILIES[family].hashes_most))
    active_sets = checker.word(settings.pop("active_sets").value, "active_sets", ACTIVE_SETS) \
        if "active_sets" in settings else None
    chosen = {name: checker.integer(given.value, name, *limits[name]) for name, given in settings.items()}
    if active_sets == "row" and "row_candidates" in settings:
        checker.error(settings["row_candidates"].span, "row_candidates applies to batch-shared active sets, not "
                      "to active_sets=row")
    return ir.Sampling(family, chosen.get("hashes"), chosen.get("tables"), chosen.get("bucket_cap"), active_sets,
                       chosen.get("row_candidates"))


def _sparsity_of(checker, value: syntax.Value) -> ir.Sparsity:
    if isinstance(value, syntax.Name) and value.text == "auto":
        return ir.Sparsity(None, auto=True)
    if isinstance(value, syntax.Name):
        checker.error(value.span, f"sparsity must be a fraction in (0, 1] or auto, got '{value.text}'",
                   did_you_mean(value.text, ["auto"]))
        return ir.Sparsity(None)
    fraction = checker.number(value, "sparsity", lambda x: 0.0 < x <= 1.0, "a fraction in (0, 1]")
    return ir.Sparsity(None if fraction is None or fraction == 1.0 else fraction)


def _reads_sparse_input(model: ir.Model, layer: ir.DenseLayer) -> bool:
    return layer.source.is_input and model.inputs[layer.source.index].kind is ir.InputKind.SPARSE


def _sparse_reason(model: ir.Model, layer: ir.DenseLayer) -> str:
    """Why a layer that asked for sparsity runs dense, or an empty string when it can run LSH-sparse."""
    if layer.index != model.loss.output:
        return ""
    if layer.source.is_input:
        return "an LSH-sparse layer hashes a layer's activations; put a hidden layer before it"
    return ""


def _sparse_hidden(model: ir.Model, ref: ir.NodeRef) -> bool:
    """Whether node `ref` is a hidden layer that runs LSH-sparse: its consumers may read only its active units."""
    if ref.is_input or ref.index == model.loss.output:
        return False
    layer = model.layers[ref.index]
    if not isinstance(layer, ir.DenseLayer):
        return False
    requested, _ = _requested_sparsity(layer)
    return requested is not None and not _sparse_reason(model, layer)


def _requested_sparsity(layer: ir.DenseLayer) -> tuple[float | None, str]:
    """The sparsity the spec asks for (None: dense) and where it came from: none | spec | auto."""
    if layer.sparsity.auto:
        return auto_sparsity(layer.units), "auto"
    return layer.sparsity.fraction, "spec" if layer.sparsity.fraction is not None else "none"


def _lsh_note(layer: LayerPlan, key_flops: int) -> str:
    """A sparse output's plan in words."""
    lsh, units, requested, origin = layer.lsh, layer.out_dim, layer.sparsity_requested, layer.sparsity_origin
    if lsh.active_sets == "batch":
        picked = (f"each row's best {lsh.row_candidates} LSH candidates in turns, then random"
                  if lsh.row_candidates else "random: training hashes nothing")
        training = (f"in training one set per batch: its labels and {lsh.active} neurons more ({picked}), "
                    f"{lsh.shared_active} at most")
    else:
        training = (f"in training the row's labels, up to {lsh.batch_negatives} of the batch's labels, "
                    "then LSH candidates")
    return (f"LSH-sparse: {lsh.active} of {units} neurons per sample (sparsity {requested:g}, "
            f"{origin}; {training}); {lsh.family.upper()} K={lsh.hashes}, L={lsh.tables}, range {lsh.range}, "
            f"bucket cap {lsh.bucket_cap}, {lsh.functions}, tables {lsh.table_bytes / 2**20:.1f} MiB; "
            + (f"rebuild after {lsh.rebuild_first} batches, then periods x{lsh.rebuild_growth:g}, new "
               f"hash functions every {lsh.reconstruct_every} rebuilds" if lsh.hashes_in_training
               else "built at the end of training, for inference")
            + (f", frozen after {lsh.freeze_after_epochs} epochs (then labels are inserted into "
               f"{lsh.insert_slack} free slots per bucket)" if lsh.freeze_after_epochs is not None
               else "") + "; sparse "
            f"inference scores {lsh.inference_active} (the {lsh.heavy} of the largest |w| + b, one matrix "
            "product per batch, then LSH candidates); "
            + (f"update in {lsh.update_parts} parts of {2 ** lsh.update_part_shift} neurons; "
               if lsh.active_sets == "row" else "") + "forward FLOP/sample "
            f"{2 * layer.in_dim * lsh.active + key_flops:,} vs {2 * layer.in_dim * units:,} dense [{lsh.origin}]")


def _dense_kernel_note(plan: Plan, layer: LayerPlan) -> str:
    if layer.kernel == "blocked":
        return ("register-blocked matrix kernels over the batch (tiles of rows x columns); weight gradient summed per "
                "input row and applied at once")
    if layer.sources[0].is_input:
        return ("sparse input: each present feature adds its weight row (accumulated in registers); only the rows of "
                "features in the batch are updated (lazy)")
    return (f"reads only the active units of sparse layer '{plan.layers[layer.sources[0].index].name}': each adds "
            "its weight row; only their rows are updated (lazy), and only their gradients passed back")


def _sparse_kernel_note(plan: Plan, layer: LayerPlan) -> str:
    lsh, products = layer.lsh, layer.products
    if products == "bf16":
        multiplied = ("in bf16 on AMX tiles, summed in fp32 (precision=bf16; by the register-blocked fp32 kernels "
                      "where Linux refuses the process its tile state)")
    else:
        multiplied = "by the register-blocked dense kernels"
    if layer.precision == "bf16" and products == "fp32":
        precision_note = ("; products in fp32: precision=bf16 asks for AMX tiles, which this machine has not"
                          if plan.real_type == "float" else "; products in double: precision=bf16 needs a float scalar")
    else:
        precision_note = ""
    return (f"LSH-sparse output: {lsh.family.upper()} keys of the input, capped CSR buckets; "
            + ("in training one active set per batch, its weight rows gathered once and multiplied "
               + multiplied if lsh.active_sets == "batch" else
               "labels first, topped up to a fixed active count per row")
            + f"; only touched neuron rows updated (lazy {plan.optimizer})"
            + precision_note)


def _hidden_kernel_note(plan: Plan, layer: LayerPlan) -> str:
    lsh, lazy = layer.lsh, f"(lazy {plan.optimizer})"
    if not layer.neuron_rows:
        return (f"LSH-sparse hidden over a sparse input: {lsh.family.upper()} keys of each row's features (placed in "
                "a zeroed vector), capped CSR buckets; each present feature adds its weight row's entries at the "
                "row's active neurons; consumers read only the active units; only the rows of features in the batch "
                f"updated {lazy}")
    return (f"LSH-sparse hidden: {lsh.family.upper()} keys of the input, capped CSR buckets; each row's active neurons "
            "scored from their weight rows; consumers read only the active units; only touched neuron rows updated "
            + lazy)


def _hidden_note(layer: LayerPlan, key_flops: int) -> str:
    """A sparse hidden layer's plan in words."""
    lsh, units, requested, origin = layer.lsh, layer.out_dim, layer.sparsity_requested, layer.sparsity_origin
    update = ("update of the rows of the features in the batch" if not layer.neuron_rows else
              f"update in {lsh.update_parts} parts of {2 ** lsh.update_part_shift} neurons")
    return (f"LSH-sparse hidden layer: {lsh.active} of {units} neurons per sample in training and inference "
            f"(sparsity {requested:g}, {origin}; the LSH candidates of its input, topped up at random), the rest "
            f"0; {lsh.family.upper()} K={lsh.hashes}, L={lsh.tables}, range {lsh.range}, bucket cap "
            f"{lsh.bucket_cap}, {lsh.functions}, tables {lsh.table_bytes / 2**20:.1f} MiB; rebuild after "
            f"{lsh.rebuild_first} batches, then periods x{lsh.rebuild_growth:g}; {update}; forward FLOP/sample "
            f"{2 * layer.in_dim * lsh.active + key_flops:,} vs {2 * layer.in_dim * units:,} dense [{lsh.origin}]")


def _sparse_plan(model: ir.Model, layer: ir.DenseLayer, context: PlanContext, requested: float,
                 origin: str) -> LayerPlan:
    source, real_bytes = layer.source, context.real_bytes
    hidden = layer.index != model.loss.output
    needs_input_gradient = carries_gradient(model, source)
    lsh = lsh_plan(layer.units, layer.in_dim, requested, context.threads, layer.sampling, model.train,
                   model.loss.kind is ir.LossKind.CROSS_ENTROPY, context.measured.get(layer.index), hidden=hidden)
    key_flops = hash_family(lsh.family).key_flops(lsh.bins, layer.in_dim)
    parameters = layer.in_dim * layer.units + (layer.units if layer.bias else 0)
    active_matmul = 2 * layer.in_dim * lsh.active
    products = "bf16" if layer.precision == "bf16" and context.amx and lsh.active_sets == "batch" else "fp32"
    gathers = hidden and _reads_sparse_input(model, layer)  # input-major weights, a row per feature
    return LayerPlan(
        index=layer.index, name=layer.name, op="fc", spec_line=layer.span.line, in_dim=layer.in_dim,
        out_dim=layer.units, activation=layer.activation.value, bias=layer.bias,
        sources=(SourcePlan(source.is_input, source.index, layer.in_dim, 0),),
        needs_input_gradient=needs_input_gradient,
        kernel="sparse_gather" if gathers else "sparse_hidden" if hidden else "sparse",
        weight_layout="input-major [in][out]" if gathers else "output-major [out][in]",
        column_tile=min(layer.units, COLUMN_TILE),
        input_tile=min(layer.in_dim, COLUMN_TILE), transposed_backward=False, sparsity_requested=requested,
        sparsity_origin=origin, dense_reason="", precision=layer.precision, lsh=lsh,
        parameters=parameters, parameter_bytes=parameters * real_bytes,
        optimizer_bytes=context.optimizer_copies * (
            layer.in_dim * layer.units * (BF16_BYTES if model.optimizer.moments == "bf16" and not gathers
                                          else real_bytes)
            + (layer.units * real_bytes if layer.bias else 0)),
        flops_forward=active_matmul + key_flops,
        flops_backward=active_matmul * (2 if needs_input_gradient else 1), products=products,
    )


def _dense_plan(model: ir.Model, layer: ir.DenseLayer, context: PlanContext, requested: float | None, origin: str,
                dense_reason: str) -> LayerPlan:
    source, real_bytes = layer.source, context.real_bytes
    needs_input_gradient = carries_gradient(model, source)
    parameters = layer.in_dim * layer.units + (layer.units if layer.bias else 0)
    matmul = 2 * layer.in_dim * layer.units
    reads_active_units = _sparse_hidden(model, source) and context.real_bytes == 4
    kernel = "gather" if _reads_sparse_input(model, layer) or reads_active_units else "blocked"
    return LayerPlan(
        index=layer.index, name=layer.name, op="fc", spec_line=layer.span.line, in_dim=layer.in_dim,
        out_dim=layer.units, activation=layer.activation.value, bias=layer.bias,
        sources=(SourcePlan(source.is_input, source.index, layer.in_dim, 0),),
        needs_input_gradient=needs_input_gradient, kernel=kernel,
        weight_layout="input-major [in][out]", column_tile=min(layer.units, COLUMN_TILE),
        input_tile=min(layer.in_dim, COLUMN_TILE),
        transposed_backward=needs_input_gradient and kernel != "gather" and layer.units < TRANSPOSED_BACKWARD_BELOW,
        sparsity_requested=requested, sparsity_origin=origin, dense_reason=dense_reason, precision=layer.precision,
        lsh=None, parameters=parameters, parameter_bytes=parameters * real_bytes,
        optimizer_bytes=parameters * real_bytes * context.optimizer_copies,
        flops_forward=matmul + (layer.units if layer.bias else 0),
        flops_backward=matmul * (2 if needs_input_gradient else 1) + (layer.units if layer.bias else 0),
    )


def _dense_buffers(plan: Plan, layer: LayerPlan, buffers, context: dict) -> dict:
    """A dense layer: input-major weights and their moments, a transposed copy for a narrow layer's backward, a
    copy of the batch's rows where it reads a dense input, and its outputs and their gradients."""
    batch, add = plan.batch_size, buffers.add
    context["slot_weights"] = add(layer, "weights", (layer.in_dim, layer.out_dim), "parameter")
    context["slot_bias"] = add(layer, "bias", (layer.out_dim,), "parameter") if layer.bias else None
    if plan.optimizer == "adam":
        context["slot_weights_m"] = add(layer, "weights_m", (layer.in_dim, layer.out_dim), "optimizer")
        context["slot_weights_v"] = add(layer, "weights_v", (layer.in_dim, layer.out_dim), "optimizer")
        if layer.bias:
            context["slot_bias_m"] = add(layer, "bias_m", (layer.out_dim,), "optimizer")
            context["slot_bias_v"] = add(layer, "bias_v", (layer.out_dim,), "optimizer")
    if layer.transposed_backward:
        context["slot_weights_t"] = add(layer, "weights_t", (layer.out_dim, layer.in_dim), "scratch")
    if layer.kernel == "blocked" and layer.sources[0].is_input:
        context["slot_input"] = add(layer, "input", (batch, layer.in_dim), "scratch")
    context["slot_act"] = add(layer, "act", (batch, layer.out_dim), "scratch")
    context["slot_grad"] = add(layer, "grad", (batch, layer.out_dim), "scratch")
    return context


def _lsh_weights_and_tables(plan: Plan, layer: LayerPlan, add, context: dict) -> None:
    """What every LSH-sparse layer keeps: its weights (output-major, a neuron one contiguous row, unless it reads a
    sparse input) and their moments, its hash functions, the neuron order of capped buckets and top-ups, the tables
    and the rebuild's sort scratch."""
    lsh, n, d = layer.lsh, layer.out_dim, layer.in_dim
    family = hash_family(lsh.family)
    shape = (n, d) if layer.neuron_rows else (d, n)
    context["slot_weights"] = add(layer, "weights", shape, "parameter")
    context["slot_bias"] = add(layer, "bias", (n,), "parameter") if layer.bias else None
    if plan.optimizer == "adam":
        # bf16 moments are stored as the upper halves of floats (the neuron-row updates read them so)
        moments = "uint16" if plan.moments == "bf16" and layer.neuron_rows else "real"
        context["slot_weights_m"] = add(layer, "weights_m", shape, "optimizer", moments)
        context["slot_weights_v"] = add(layer, "weights_v", shape, "optimizer", moments)
        if layer.bias:
            context["slot_bias_m"] = add(layer, "bias_m", (n,), "optimizer")
            context["slot_bias_v"] = add(layer, "bias_v", (n,), "optimizer")
    context.update(
        slot_hash_functions=add(layer, family.functions_role, family.functions_shape(lsh.bins, d), "hash",
                                family.functions_dtype),
        hash_kernel=family.kernel,
        slot_order=add(layer, "lsh_order", (n,), "hash", "int32"),
        slot_offsets=add(layer, "table_offsets", (lsh.tables, lsh.range + 1), "table", "int32"),
        slot_ids=add(layer, "table_ids", (lsh.tables, n + lsh.range * lsh.insert_slack), "table", "int32"),
        slot_sort_scratch=add(layer, "sort_scratch", (lsh.threads, n + lsh.range), "scratch", "int32"),
        table_stride=n + lsh.range * lsh.insert_slack,
        profile_fields=[f"PROFILE_{name.upper()}" for name in SPARSE_PROFILE_FIELDS],
    )


# neurons a rebuild of input-major weights copies into rows at a time, per thread: at 2^17 inputs, 8 MiB of rows
NEURON_BLOCK = 16


def _rebuild_scratch(layer: LayerPlan) -> tuple[int, int]:
    """Neurons a rebuild hashes at a time, and the scalars of one thread's scratch for them (for input-major
    weights, with the neurons copied into rows)."""
    lsh, d = layer.lsh, layer.in_dim
    hash_chunk = lsh.hash_chunk if layer.neuron_rows else min(lsh.hash_chunk, NEURON_BLOCK)
    hash_scratch = hash_family(lsh.family).rebuild_scratch(d, lsh.bins, lsh.tables, hash_chunk)
    return hash_chunk, hash_scratch + (0 if layer.neuron_rows else hash_chunk * d)


def _lsh_probe_scratch(layer: LayerPlan, add) -> dict:
    """Per-thread scratch of the rebuild's hashing and of a row's bucket probes."""
    lsh = layer.lsh
    hash_chunk, hash_scratch = _rebuild_scratch(layer)
    return {
        "hash_chunk": hash_chunk,
        "hash_scratch": hash_scratch,
        "slot_hash_scratch": add(layer, "hash_scratch", (lsh.threads, hash_scratch), "scratch"),
        "slot_votes": add(layer, "votes", (lsh.threads, layer.out_dim), "scratch", "uint8"),
        "slot_candidates": add(layer, "candidates", (lsh.threads, lsh.tables * lsh.bucket_cap), "scratch", "int32"),
    }


def _row_set_update_buffers(plan: Plan, layer: LayerPlan, add) -> dict:
    """The per-row sets' update (templates/_lsh.j2 row_set_update): the batch's entries grouped by neuron within
    parts of the id range, and a part's own input gradient."""
    lsh, batch = layer.lsh, plan.batch_size
    entries = batch * lsh.active
    slots = {
        "slot_groups": add(layer, "groups", (entries,), "scratch", "int32"),
        "slot_group_starts": add(layer, "group_starts", (entries + lsh.update_parts,), "scratch", "int32"),
        "slot_group_rows": add(layer, "group_rows", (entries,), "scratch", "int32"),
        "slot_group_coefs": add(layer, "group_coefs", (entries,), "scratch"),
        "slot_group_slot": add(layer, "group_slot", (layer.out_dim,), "scratch", "int32"),
        "slot_part_offsets": add(layer, "part_offsets", (lsh.update_parts + 1,), "scratch", "int64"),
    }
    if layer.needs_input_gradient:
        slots["slot_dx_parts"] = add(layer, "dx_parts", (lsh.update_parts, batch, layer.in_dim), "scratch")
    return slots


def _sparse_buffers(plan: Plan, layer: LayerPlan, buffers, context: dict) -> dict:
    """An LSH-sparse output layer: its weights and tables, the heavy rows of sparse inference, per-sample active
    sets, and the scratch its selection, rebuild and update need (sized for lsh.threads threads)."""
    lsh, batch, n, d = layer.lsh, plan.batch_size, layer.out_dim, layer.in_dim
    shared = lsh.active_sets == "batch"
    train_width = lsh.shared_active if shared else lsh.active  # logits per row in training
    add = buffers.add
    _lsh_weights_and_tables(plan, layer, add, context)
    context.update(
        slot_heavy=add(layer, "heavy_ids", (lsh.heavy,), "table", "int32"),
        slot_heavy_bounds=add(layer, "heavy_bounds", (lsh.heavy,), "scratch", "float32"),  # their |w| + b
        slot_heavy_select=add(layer, "heavy_select", (max(n, 2 * lsh.heavy),), "scratch", "float32"),
        # the heavy rows' weights side by side for sparse inference's matrix product (columns past heavy unused)
        slot_heavy_packed=add(layer, "heavy_packed", (d, lsh.inference_active), "scratch"),
        slot_heavy_bias=add(layer, "heavy_bias", (lsh.heavy,), "scratch"),
        slot_row_bounds=add(layer, "row_bounds", (n,), "scratch"),
    )
    context.update(_lsh_probe_scratch(layer, add))
    context.update(
        slot_active=add(layer, "active", (batch, lsh.inference_active), "scratch", "int32"),
        slot_active_counts=add(layer, "active_counts", (batch,), "scratch", "int32"),
        slot_act=add(layer, "act", (batch, max(lsh.inference_active, train_width)), "scratch"),
        slot_grad=add(layer, "grad", (batch, train_width), "scratch"),
        slot_dense_scores=add(layer, "dense_scores", (lsh.threads, lsh.dense_rows * (lsh.dense_chunk + d)), "scratch"),
        slot_profile=add(layer, "profile", (len(SPARSE_PROFILE_FIELDS),), "scratch", "float64"),
        shared=shared, train_width=train_width, shared_tile=min(lsh.shared_active, layer.column_tile),
    )
    if shared:
        context.update(
            slot_shared_ids=add(layer, "shared_ids", (lsh.shared_active,), "scratch", "int32"),
            slot_shared_size=add(layer, "shared_size", (1,), "scratch", "int32"),
            slot_shared_position=add(layer, "shared_position", (n,), "scratch", "int32"),
            slot_shared_rows=add(layer, "shared_rows", (lsh.shared_active, d), "scratch"),
            slot_shared_weights=add(layer, "shared_weights", (d, lsh.shared_active), "scratch"),
            slot_row_candidates=add(layer, "row_candidates", (batch, lsh.row_candidates), "scratch", "int32"),
            slot_row_candidate_counts=add(layer, "row_candidate_counts", (batch,), "scratch", "int32"),
        )
        if layer.bias:
            context["slot_shared_bias"] = add(layer, "shared_bias", (lsh.shared_active,), "scratch")
        if layer.products == "bf16":
            context.update(_bf16_buffers(layer, batch, add))
    else:
        context["slot_batch_negatives"] = add(layer, "batch_negatives", (lsh.batch_negatives,), "scratch", "int32")
        context.update(_row_set_update_buffers(plan, layer, add))
    if lsh.insert_slack:
        context["slot_sizes"] = add(layer, "table_sizes", (lsh.tables, lsh.range), "table", "int32")
        context["slot_sample_keys"] = add(layer, "sample_keys", (batch, lsh.tables), "scratch", "int32")
    return context


def _hidden_buffers(plan: Plan, layer: LayerPlan, buffers, context: dict) -> dict:
    """An LSH-sparse hidden layer: its weights and tables, each row's active neurons as CSR rows over the batch
    (ids, activations and offsets, with an identity row map, so that a consumer reads them as it reads a sparse
    input), its outputs and their gradients at full width (0 outside the active sets, for consumers that read them
    dense), and the per-row sets' update; reading a sparse input, a vector per thread that a row's features are
    placed in to be hashed, and the update of the features' rows (which needs only the model's workspace)."""
    lsh, batch, n, d = layer.lsh, plan.batch_size, layer.out_dim, layer.in_dim
    add = buffers.add
    _lsh_weights_and_tables(plan, layer, add, context)
    context.update(_lsh_probe_scratch(layer, add))
    if layer.kernel == "sparse_gather":
        context["slot_hashed_rows"] = add(layer, "hashed_rows", (lsh.threads, d), "scratch")
    elif layer.sources[0].is_input:
        context["slot_input"] = add(layer, "input", (batch, d), "scratch")
    context.update(
        slot_active=add(layer, "active", (batch, lsh.active), "scratch", "int32"),
        slot_active_values=add(layer, "active_values", (batch, lsh.active), "scratch"),
        slot_active_indptr=add(layer, "active_indptr", (batch + 1,), "scratch", "int64"),
        slot_positions=add(layer, "positions", (batch,), "scratch", "int64"),
        slot_coefs=add(layer, "coefs", (batch, lsh.active), "scratch"),
        slot_act=add(layer, "act", (batch, n), "scratch"),
        slot_grad=add(layer, "grad", (batch, n), "scratch"),
        slot_profile=add(layer, "profile", (len(SPARSE_PROFILE_FIELDS),), "scratch", "float64"),
    )
    if layer.neuron_rows:
        context.update(_row_set_update_buffers(plan, layer, add))
    return context


def _exchange_buffers(layer: LayerPlan, add, context: dict) -> None:
    """What a distributed step's backward writes instead of stepping (templates/_macros.j2 exchange_pointers): each
    parameter's gradient, and where the parameter is exchanged by rows (a sparse layer's neurons, the rows of the
    features a gathering layer met), the step that last wrote each row. One process never writes them, and the
    zeroed pages they are allocated as cost no memory until written."""
    neuron_rows = layer.lsh is not None and layer.neuron_rows
    by_feature = layer.kernel in ("gather", "sparse_gather")
    rows, width = (layer.out_dim, layer.in_dim) if neuron_rows else (layer.in_dim, layer.out_dim)
    exchanged = [("weights", rows, width, neuron_rows or by_feature)]
    if layer.bias:
        exchanged.append(("bias", layer.out_dim, 1, neuron_rows))
    context["exchanged"] = []
    for role, rows, width, by_rows in exchanged:
        context[f"slot_{role}_g"] = add(layer, f"{role}_g", (rows, width) if width > 1 else (rows,), "exchange")
        if by_rows:
            context[f"slot_{role}_touched"] = add(layer, f"{role}_touched", (rows,), "exchange", "int64")
        context["exchanged"].append({"role": role, "rows": rows, "width": width, "slot": context[f"slot_{role}"],
                                     "slot_m": context.get(f"slot_{role}_m"), "slot_v": context.get(f"slot_{role}_v"),
                                     "slot_g": context[f"slot_{role}_g"],
                                     "slot_touched": context.get(f"slot_{role}_touched")})


def _bf16_buffers(layer: LayerPlan, batch: int, add) -> dict:
    """The bf16 operands of a batch-shared layer's AMX products (templates/fc_sparse.c.j2 says which is which),
    padded to whole tiles."""
    def padded(n: int, multiple: int) -> int:
        return -(-n // multiple) * multiple

    d, shared = layer.in_dim, layer.lsh.shared_active
    in_depth, in_width = padded(d, BF16_DEPTH), padded(d, BF16_WIDTH)
    set_depth, set_width = padded(shared, BF16_DEPTH), padded(shared, BF16_WIDTH)
    batch_depth, batch_width = padded(batch, BF16_DEPTH), padded(batch, BF16_WIDTH)
    dims = {"in_depth": in_depth, "in_width": in_width, "set_depth": set_depth, "set_width": set_width,
            "batch_depth": batch_depth}
    slots = {
        "slot_bf16_input": add(layer, "bf16_input", (batch_width, in_depth), "scratch", "uint16"),
        "slot_bf16_input_t": add(layer, "bf16_input_t", (in_width, batch_depth), "scratch", "uint16"),
        "slot_bf16_set_by_input": add(layer, "bf16_set_by_input", (set_width // BF16_WIDTH, BF16_WIDTH * in_depth),
                                      "scratch", "uint16"),
        "slot_bf16_grad_pairs": add(layer, "bf16_grad_pairs", (set_width // BF16_WIDTH, BF16_WIDTH * batch_depth),
                                    "scratch", "uint16"),
    }
    # per thread: a block of 32 neurons' weight gradients, transposed, and one of them in a row
    slots["slot_bf16_block_grads"] = add(layer, "bf16_block_grads", (layer.lsh.threads, 2 * BF16_WIDTH * in_width + d),
                                         "scratch")
    if layer.needs_input_gradient:
        slots["slot_bf16_set_rows"] = add(layer, "bf16_set_rows", (set_depth // 2, 2 * in_width), "scratch", "uint16")
        slots["slot_bf16_grad"] = add(layer, "bf16_grad", (batch_width // BF16_WIDTH, BF16_WIDTH * set_depth),
                                      "scratch", "uint16")
    return {"bf16": dims, **slots}


TEMPLATES = {"sparse": "fc_sparse.c.j2", "sparse_hidden": "fc_sparse_hidden.c.j2",
             "sparse_gather": "fc_sparse_hidden.c.j2"}  # else fc.c.j2


def _fc_context(plan: Plan, layer: LayerPlan, base: dict, slots_of: dict[int, dict]) -> dict:
    source = layer.sources[0]
    is_output = layer.index == plan.output_layer
    gather_layer = layer.kernel == "gather" and not source.is_input  # the active units of a sparse hidden layer
    read = None if source.is_input else slots_of[source.index]
    return {
        **base,
        "template": TEMPLATES.get(layer.kernel, "fc.c.j2"),
        "sparse_output": layer.kernel == "sparse",
        "lsh_tables": layer.lsh is not None,
        "salted_forward": layer.emits_active_units,
        "neuron_rows": layer.neuron_rows,
        "softmax": plan.loss == "cross_entropy",
        "lsh": layer.lsh,
        "banner": banner(plan, layer, "dense"),
        "banner_short": c_comment(f"layer {layer.index} '{layer.name}'"),
        "tile": layer.column_tile,
        "in_tile": layer.input_tile,
        "transposed_backward": layer.transposed_backward,
        "bias": layer.bias,
        "adam": plan.optimizer == "adam",
        "bf16_moments": plan.optimizer == "adam" and plan.moments == "bf16" and layer.neuron_rows,
        "bf16_products": layer.products == "bf16",
        "optimizer": plan.optimizer,
        "gather": layer.kernel == "gather",
        "gather_layer": gather_layer,
        "source": read if gather_layer else None,
        "reads_input": source.is_input,
        "input_index": source.index if source.is_input else None,
        "slot_source_act": None if source.is_input else read["slot_act"],
        "slot_source_grad": None if source.is_input else read["slot_grad"],
        "needs_input_gradient": layer.needs_input_gradient,
        "activation_comment": "softmax/sigmoid in the loss" if is_output else layer.activation,
        "activation_function": None if is_output else ACTIVATIONS[layer.activation],
        "derivative_function": None if is_output else DERIVATIVES[layer.activation],
        "has_backward": True,
    }


OP = Dense()
