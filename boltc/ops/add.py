"""add(A, B, ...): the element-wise sum of layers of one width (templates/add.c.j2), e.g. a residual connection or
the sum of two inputs' embeddings. No parameters: its backward hands every source layer the whole gradient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from boltc import ir
from boltc.diagnostics import Span
from boltc.emit import banner, c_comment
from boltc.ops import LayerOp, joined_sources
from boltc.plan import LayerPlan, Plan, PlanContext, SourcePlan, carries_gradient


@dataclass(frozen=True, slots=True)
class AddLayer:
    index: int
    name: str
    sources: tuple[ir.NodeRef, ...]
    dim: int
    span: Span
    kind: ClassVar[str] = "add"


class Add(LayerOp):
    kind = "add"
    plan_op = "add"

    def check(self, checker, decl, resolve, dim_of) -> AddLayer | None:
        sources = joined_sources(checker, decl, resolve)
        if sources is None:
            return None
        names = [arg.value for arg in decl.call.args if arg.keyword is None]
        inputs = [name for name, source in zip(names, sources) if source.is_input]
        for name in inputs:
            checker.error(name.span, f"add() sums layers; feed input '{name.text}' to a dense layer first")
        widths = [dim_of(source) for source in sources]
        if len(set(widths)) > 1:
            checker.error(decl.call.span, "add() sums layers of one width; "
                          + ", ".join(f"'{name.text}' has {width}" for name, width in zip(names, widths)))
        if inputs or len(set(widths)) > 1:
            return None
        return AddLayer(-1, decl.name.text, tuple(sources), widths[0], decl.span)

    def plan(self, model: ir.Model, layer: AddLayer, context: PlanContext) -> LayerPlan:
        return LayerPlan(
            index=layer.index, name=layer.name, op="add", spec_line=layer.span.line, in_dim=layer.dim,
            out_dim=layer.dim, activation="linear", bias=False,
            sources=tuple(SourcePlan(False, ref.index, layer.dim, 0) for ref in layer.sources),
            needs_input_gradient=any(carries_gradient(model, ref) for ref in layer.sources), kernel="sum",
            weight_layout="none", column_tile=0, input_tile=0, transposed_backward=False, sparsity_requested=None,
            sparsity_origin="none", dense_reason="", precision="fp32", lsh=None, parameters=0, parameter_bytes=0,
            optimizer_bytes=0, flops_forward=layer.dim * (len(layer.sources) - 1), flops_backward=0,
        )

    def describe(self, plan: Plan, layer: LayerPlan) -> tuple[str, str]:
        return "sources summed element-wise; the gradient passed to each whole", ""

    def emit(self, plan: Plan, layer: LayerPlan, buffers, base: dict, slots_of: dict[int, dict]) -> dict:
        base["slot_act"] = buffers.add(layer, "act", (plan.batch_size, layer.out_dim), "scratch")
        base["slot_grad"] = buffers.add(layer, "grad", (plan.batch_size, layer.out_dim), "scratch")
        parts = [{"slot_act": slots_of[source.index]["slot_act"], "slot_grad": slots_of[source.index]["slot_grad"],
                  "comment": c_comment(f"'{plan.layers[source.index].name}'")} for source in layer.sources]
        return {
            **base, "template": "add.c.j2", "banner": banner(plan, layer, "add"),
            "banner_short": c_comment(f"layer {layer.index} '{layer.name}'"), "parts": parts,
            "has_backward": layer.needs_input_gradient,
        }


OP = Add()
