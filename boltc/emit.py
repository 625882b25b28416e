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

from boltc import __version__, ops
from boltc.abi import COLUMNS_CDEF_BEGIN, COLUMNS_CDEF_END, MIRRORED_SIZES, BufferSpec, buffer_name, cdef_block
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
int bolt_collect_share(void *const *buffers, int32_t parameter, int64_t step, int64_t *ids, void *grads,
                       int32_t threads, int64_t *count);
int bolt_step_shares(void *const *buffers, int32_t parameter, int32_t count, const int64_t *const *ids,
                     const int64_t *counts, const void *const *grads, const bolt_step *step, int32_t threads,
                     int64_t *applied);
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


def banner(plan: Plan, layer: LayerPlan, what: str) -> str:
    """The comment that opens a layer's section of the C: what it is and where the spec declares it."""
    return c_comment(f"layer {layer.index}: {what} '{layer.name}' ({Path(plan.spec_path).name}:{layer.spec_line})")


def _column_contexts(plan: Plan) -> list[dict]:
    """The featurizer call of each input read from a typed column: the runtime function and its arguments, all
    numbers (a delimiter as its byte value), so that no text of the spec reaches the C code."""
    contexts = []
    for model_input in plan.inputs:
        column = model_input.column
        if column is None:
            continue
        delimiter = ord(column.delimiter) if column.delimiter else 0
        edges_name = f"column_edges_{model_input.index}" if column.edges else "NULL"
        numerical = (f"bolt_numerical_features(field, length, {column.features}, {column.low!r}, {column.high!r}, "
                     "sink, message)" if column.binning == "equal" else
                     f"bolt_quantile_features(field, length, {column.features}, {len(column.edges)}, {edges_name}, "
                     "sink, message)")
        call = {
            "text": f"bolt_text_features(field, length, {column.ngrams}, {int(column.pairs)}, "
                    f"{int(column.lowercase)}, {column.features}, sink)",
            "categorical": f"bolt_categorical_features(field, length, {delimiter}, {column.features}, sink)",
            "sequence": f"bolt_sequence_features(field, length, {delimiter}, {column.features}, sink)",
            "numerical": numerical,
            "date": "bolt_date_features(field, length, sink, message)",
            "history": "",  # hashed by the reader itself: a row's history is made of other rows
            "neighbours": "",  # likewise: a row's neighbours are other rows
        }[column.kind]
        contexts.append({"index": model_input.index, "call": call, "checked": column.kind in ("numerical", "date"),
                         "edges": (edges_name, ", ".join(repr(edge) for edge in column.edges)) if column.edges
                         else None,
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
        # the names every layer's C uses, and what module.c.j2 asks of each layer (an op says otherwise)
        base = {"prefix": f"l{layer.index}_{layer.op}", "dims": f"L{layer.index}", "in_dim": layer.in_dim,
                "out_dim": layer.out_dim, "sparse_output": False, "lsh_tables": False, "salted_forward": False}
        context = ops.of_plan(layer).emit(plan, layer, buffers, base, slots_of)
        slots_of[layer.index] = context
        layers.append(context)
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
        "csr_inputs": sorted({layer.sources[0].index for layer in plan.layers if layer.gathers_input_rows}),
        "hash_headers": sorted({hash_family(layer.lsh.family).header for layer in plan.layers if layer.lsh}),
        "salted_forward": any(context["salted_forward"] for context in layers),
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



def render_template(name: str, **context) -> str:
    """A template of templates/ other than a model's module (an export's library files), with ``context``."""
    return _environment().get_template(name).render(**context)
