"""``Plan`` -> ``CSource``: the C text of one model, its cffi declarations and the table of buffers it expects.

This is the only module that imports jinja2. Python decides every name and number here; the templates in
templates/ only print them. No identifier from the spec reaches C: symbols are made from layer indices and a
closed vocabulary, and the user's names appear only inside comments, through ``c_comment``.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import jinja2

from boltc import __version__
from boltc.abi import (BF16_DEPTH, BF16_WIDTH, COLUMNS_CDEF_BEGIN, COLUMNS_CDEF_END, MIRRORED_SIZES,
                       SPARSE_PROFILE_FIELDS, BufferSpec, buffer_name, cdef_block)
from boltc.hashing import family as hash_family
from boltc.plan import LayerPlan, Plan
from boltc.resources import runtime_dir, templates_dir

ENTRY_POINTS = """\
int bolt_train_batch(void *const *buffers, const bolt_batch *batch, bolt_workspace *workspace,
                     const bolt_step *step, double *loss_sum);
int bolt_infer_batch(void *const *buffers, const bolt_batch *batch, int32_t top_k, int32_t *top_ids,
                     float *top_scores, double *loss_sum);
int bolt_rebuild(void *const *buffers, int32_t threads);
int bolt_find_heavy(void *const *buffers, int32_t threads);
"""
LOSS_TEMPLATES = {"cross_entropy": "loss_softmax_ce.c.j2", "binary_cross_entropy": "loss_sigmoid_bce.c.j2"}
SPARSE_LOSS_TEMPLATES = {"cross_entropy": "loss_sparse_softmax_ce.c.j2",
                         "binary_cross_entropy": "loss_sparse_sigmoid_bce.c.j2"}
ACTIVATIONS = {"relu": "bolt_relu", "tanh": "bolt_tanh", "sigmoid": "bolt_sigmoid", "linear": None}
DERIVATIVES = {"relu": "bolt_relu_grad", "tanh": "bolt_tanh_grad", "sigmoid": "bolt_sigmoid_grad", "linear": None}


@dataclass(frozen=True, slots=True)
class CSource:
    """C text ready for the compiler. ``slug`` names the module; ``cdef`` is what cffi must know of it."""

    slug: str
    c_text: str
    cdef: str
    buffers: tuple[BufferSpec, ...] = ()
    include_dir: str = ""

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.c_text.encode()).hexdigest()


def c_comment(text: object) -> str:
    """Text that is safe inside a C block comment: no comment delimiters, no line breaks or control characters."""
    cleaned = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in str(text))
    cleaned = cleaned.replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
    cleaned = cleaned if len(cleaned) <= 80 else cleaned[:77] + "..."
    return cleaned.replace("\\", "\\ ")


def module_slug(path_or_name: str) -> str:
    """A short [a-z0-9_] name for the module, from the spec file's stem."""
    stem = Path(path_or_name).stem.lower()
    slug = re.sub(r"[^a-z0-9]+", "_", stem).strip("_")[:24]
    return slug or "model"


def abi_cdef() -> str:
    return cdef_block(runtime_dir() / "bolt_abi.h")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )
    env.filters["c_comment"] = c_comment
    return env


@dataclass(frozen=True, slots=True)
class _Slot:
    index: int
    c_name: str
    comment: str


class _Buffers:
    """Hands out slots in a fixed order and remembers what each one is."""

    def __init__(self) -> None:
        self.specs: list[BufferSpec] = []
        self.slots: list[_Slot] = []

    def add(self, layer: LayerPlan, role: str, shape: tuple[int, ...], kind: str, dtype: str = "real") -> str:
        index = len(self.specs)
        self.specs.append(BufferSpec(index, buffer_name(layer.index, role), layer.index, role, shape, kind,
                                     layer.in_dim, layer.out_dim, dtype))
        c_name = f"SLOT_L{layer.index}_{role.upper()}"
        dims = "][".join(str(d) for d in shape)
        self.slots.append(_Slot(index, c_name, c_comment(f"{role} of '{layer.name}', [{dims}]")))
        return c_name


def _banner(plan: Plan, layer: LayerPlan, what: str) -> str:
    return c_comment(f"layer {layer.index}: {what} '{layer.name}' ({Path(plan.spec_path).name}:{layer.spec_line})")


def _layer_context(plan: Plan, layer: LayerPlan, buffers: _Buffers) -> dict:
    batch = plan.batch_size
    context = {
        "prefix": f"l{layer.index}_{layer.op}", "dims": f"L{layer.index}", "in_dim": layer.in_dim,
        "out_dim": layer.out_dim,
    }
    if layer.kernel == "sparse":
        return _sparse_buffers(plan, layer, buffers, context)
    if layer.op == "fc":
        context["slot_weights"] = buffers.add(layer, "weights", (layer.in_dim, layer.out_dim), "parameter")
        context["slot_bias"] = buffers.add(layer, "bias", (layer.out_dim,), "parameter") if layer.bias else None
        if plan.optimizer == "adam":
            context["slot_weights_m"] = buffers.add(layer, "weights_m", (layer.in_dim, layer.out_dim), "optimizer")
            context["slot_weights_v"] = buffers.add(layer, "weights_v", (layer.in_dim, layer.out_dim), "optimizer")
            if layer.bias:
                context["slot_bias_m"] = buffers.add(layer, "bias_m", (layer.out_dim,), "optimizer")
                context["slot_bias_v"] = buffers.add(layer, "bias_v", (layer.out_dim,), "optimizer")
        if layer.transposed_backward:
            context["slot_weights_t"] = buffers.add(layer, "weights_t", (layer.out_dim, layer.in_dim), "scratch")
        if layer.kernel == "blocked" and layer.sources[0].is_input:
            context["slot_input"] = buffers.add(layer, "input", (batch, layer.in_dim), "scratch")
    context["slot_act"] = buffers.add(layer, "act", (batch, layer.out_dim), "scratch")
    context["slot_grad"] = buffers.add(layer, "grad", (batch, layer.out_dim), "scratch")
    return context


def _sparse_buffers(plan: Plan, layer: LayerPlan, buffers: _Buffers, context: dict) -> dict:
    """An LSH-sparse layer: output-major weights, per-sample active sets, hash functions and tables, and the
    scratch its selection, rebuild and update need (sized for lsh.threads threads)."""
    lsh, batch, n, d = layer.lsh, plan.batch_size, layer.out_dim, layer.in_dim
    entries = batch * lsh.active
    shared = lsh.active_sets == "batch"
    train_width = lsh.shared_active if shared else lsh.active  # logits per row in training
    family = hash_family(lsh.family)
    hash_scratch = family.rebuild_scratch(d, lsh.bins, lsh.tables, lsh.hash_chunk)
    add = buffers.add
    context["slot_weights"] = add(layer, "weights", (n, d), "parameter")
    context["slot_bias"] = add(layer, "bias", (n,), "parameter") if layer.bias else None
    if plan.optimizer == "adam":
        # bf16 moments are stored as the upper halves of floats
        moments = "uint16" if plan.moments == "bf16" else "real"
        context["slot_weights_m"] = add(layer, "weights_m", (n, d), "optimizer", moments)
        context["slot_weights_v"] = add(layer, "weights_v", (n, d), "optimizer", moments)
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
        slot_heavy=add(layer, "heavy_ids", (lsh.heavy,), "table", "int32"),
        slot_heavy_bounds=add(layer, "heavy_bounds", (lsh.heavy,), "scratch", "float32"),  # their |w| + b
        slot_heavy_select=add(layer, "heavy_select", (max(n, 2 * lsh.heavy),), "scratch", "float32"),
        # the heavy rows' weights side by side for sparse inference's matrix product (columns past heavy unused)
        slot_heavy_packed=add(layer, "heavy_packed", (d, lsh.inference_active), "scratch"),
        slot_heavy_bias=add(layer, "heavy_bias", (lsh.heavy,), "scratch"),
        slot_row_bounds=add(layer, "row_bounds", (n,), "scratch"),
        hash_scratch=hash_scratch,
        slot_hash_scratch=add(layer, "hash_scratch", (lsh.threads, hash_scratch), "scratch"),
        slot_votes=add(layer, "votes", (lsh.threads, n), "scratch", "uint8"),
        slot_candidates=add(layer, "candidates", (lsh.threads, lsh.tables * lsh.bucket_cap), "scratch", "int32"),
        slot_active=add(layer, "active", (batch, lsh.inference_active), "scratch", "int32"),
        slot_active_counts=add(layer, "active_counts", (batch,), "scratch", "int32"),
        slot_act=add(layer, "act", (batch, max(lsh.inference_active, train_width)), "scratch"),
        slot_grad=add(layer, "grad", (batch, train_width), "scratch"),
        slot_dense_scores=add(layer, "dense_scores", (lsh.threads, lsh.dense_rows * (lsh.dense_chunk + d)), "scratch"),
        slot_profile=add(layer, "profile", (len(SPARSE_PROFILE_FIELDS),), "scratch", "float64"),
        profile_fields=[f"PROFILE_{name.upper()}" for name in SPARSE_PROFILE_FIELDS],
        shared=shared, train_width=train_width, shared_tile=min(lsh.shared_active, layer.column_tile),
        table_stride=n + lsh.range * lsh.insert_slack,
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
        context.update(
            slot_batch_negatives=add(layer, "batch_negatives", (lsh.batch_negatives,), "scratch", "int32"),
            slot_groups=add(layer, "groups", (entries,), "scratch", "int32"),
            slot_group_starts=add(layer, "group_starts", (entries + lsh.update_parts,), "scratch", "int32"),
            slot_group_rows=add(layer, "group_rows", (entries,), "scratch", "int32"),
            slot_group_coefs=add(layer, "group_coefs", (entries,), "scratch"),
            slot_group_slot=add(layer, "group_slot", (n,), "scratch", "int32"),
            slot_part_offsets=add(layer, "part_offsets", (lsh.update_parts + 1,), "scratch", "int64"),
        )
        if layer.needs_input_gradient:
            context["slot_dx_parts"] = add(layer, "dx_parts", (lsh.update_parts, batch, d), "scratch")
    if lsh.insert_slack:
        context["slot_sizes"] = add(layer, "table_sizes", (lsh.tables, lsh.range), "table", "int32")
        context["slot_sample_keys"] = add(layer, "sample_keys", (batch, lsh.tables), "scratch", "int32")
    return context


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
        slots["slot_bf16_grad"] = add(layer, "bf16_grad", (batch_width // BF16_WIDTH, BF16_WIDTH * set_depth), "scratch",
                                      "uint16")
    return {"bf16": dims, **slots}


def _fc_context(plan: Plan, layer: LayerPlan, base: dict, slots_of: dict[int, dict]) -> dict:
    source = layer.sources[0]
    is_output = layer.index == plan.output_layer
    return {
        **base,
        "template": "fc_sparse.c.j2" if layer.kernel == "sparse" else "fc.c.j2",
        "sparse_output": layer.kernel == "sparse",
        "softmax": plan.loss == "cross_entropy",
        "lsh": layer.lsh,
        "banner": _banner(plan, layer, "dense"),
        "banner_short": c_comment(f"layer {layer.index} '{layer.name}'"),
        "tile": layer.column_tile,
        "in_tile": layer.input_tile,
        "transposed_backward": layer.transposed_backward,
        "bias": layer.bias,
        "adam": plan.optimizer == "adam",
        "bf16_moments": plan.optimizer == "adam" and plan.moments == "bf16" and layer.kernel == "sparse",
        "bf16_products": layer.products == "bf16",
        "optimizer": plan.optimizer,
        "gather": layer.kernel == "gather",
        "reads_input": source.is_input,
        "input_index": source.index if source.is_input else None,
        "slot_source_act": None if source.is_input else slots_of[source.index]["slot_act"],
        "slot_source_grad": None if source.is_input else slots_of[source.index]["slot_grad"],
        "needs_input_gradient": layer.needs_input_gradient,
        "activation_comment": "softmax/sigmoid in the loss" if is_output else layer.activation,
        "activation_function": None if is_output else ACTIVATIONS[layer.activation],
        "derivative_function": None if is_output else DERIVATIVES[layer.activation],
        "has_backward": True,
    }


def _concat_context(plan: Plan, layer: LayerPlan, base: dict, slots_of: dict[int, dict]) -> dict:
    parts = []
    for source in layer.sources:
        name = plan.inputs[source.index].name if source.is_input else plan.layers[source.index].name
        parts.append({
            "offset": source.offset, "dim": source.dim, "comment": c_comment(f"'{name}'"),
            "input_index": source.index if source.is_input else None,
            "slot_act": None if source.is_input else slots_of[source.index]["slot_act"],
            "slot_grad": None if source.is_input else slots_of[source.index]["slot_grad"],
        })
    return {
        **base, "template": "concat.c.j2", "banner": _banner(plan, layer, "concat"),
        "banner_short": c_comment(f"layer {layer.index} '{layer.name}'"), "parts": parts,
        "has_backward": layer.needs_input_gradient, "sparse_output": False,
    }


def _column_contexts(plan: Plan) -> list[dict]:
    """The featurizer call of each input read from a typed column: the runtime function and its arguments, all
    numbers (a delimiter as its byte value), so that no text of the spec reaches the C code."""
    contexts = []
    for model_input in plan.inputs:
        column = model_input.column
        if column is None:
            continue
        delimiter = ord(column.delimiter) if column.delimiter else 0
        call = {
            "text": f"bolt_text_features(field, length, {column.ngrams}, {int(column.pairs)}, "
                    f"{int(column.lowercase)}, {column.features}, sink)",
            "categorical": f"bolt_categorical_features(field, length, {delimiter}, {column.features}, sink)",
            "sequence": f"bolt_sequence_features(field, length, {delimiter}, {column.features}, sink)",
            "numerical": f"bolt_numerical_features(field, length, {column.features}, {column.low!r}, {column.high!r}, "
                         "sink, message)",
            "date": "bolt_date_features(field, length, sink, message)",
            "history": "",  # hashed by the reader itself: a row's history is made of other rows
            "neighbours": "",  # likewise: a row's neighbours are other rows
        }[column.kind]
        contexts.append({"index": model_input.index, "call": call, "checked": column.kind in ("numerical", "date"),
                         "comment": c_comment(f"input {model_input.index} '{model_input.name}': {column.kind} "
                                              f"({Path(plan.spec_path).name}:{column.spec_line})")})
    return contexts


def columns_cdef() -> str:
    return cdef_block(runtime_dir() / "bolt_columns.h", COLUMNS_CDEF_BEGIN, COLUMNS_CDEF_END)


def emit(plan: Plan) -> CSource:
    buffers = _Buffers()
    slots_of: dict[int, dict] = {}
    layers = []
    for layer in plan.layers:
        base = _layer_context(plan, layer, buffers)
        slots_of[layer.index] = base
        build = _fc_context if layer.op == "fc" else _concat_context
        layers.append(build(plan, layer, base, slots_of))
    output = layers[plan.output_layer]
    module = {
        "boltc_version": __version__,
        "mirrored_sizes": MIRRORED_SIZES,
        "spec_comment": c_comment(Path(plan.spec_path).name),
        "model_comment": c_comment(f"'{plan.model_name}'"),
        "real_type": plan.real_type,
        "real_is_double": int(plan.real_type == "double"),
        "batch_size": plan.batch_size,
        "output_dim": plan.output.out_dim,
        "slots": buffers.slots,
        "layers": layers,
        "hidden_layers": [c for c in layers if c is not output],

        "output": output,
        "csr_inputs": sorted({c["input_index"] for c in layers if c.get("gather")}),
        "hash_headers": sorted({hash_family(layer.lsh.family).header for layer in plan.layers if layer.lsh}),
        "columns": _column_contexts(plan),
        "loss": {
            "template": (SPARSE_LOSS_TEMPLATES if output["sparse_output"] else LOSS_TEMPLATES)[plan.loss],
            "banner": c_comment(f"loss: {plan.loss} on '{plan.output.name}'"),
            "banner_short": c_comment(f"loss {plan.loss}"),
        },
    }
    text = _environment().get_template("module.c.j2").render(module=module, output=output, loss=module["loss"])
    cdef = abi_cdef() + ENTRY_POINTS + (columns_cdef() if module["columns"] else "")
    return CSource(slug=module_slug(plan.spec_path), c_text=text, cdef=cdef,
                   buffers=tuple(buffers.specs), include_dir=str(runtime_dir()))

