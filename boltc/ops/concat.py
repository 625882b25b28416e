"""concat(A, B, ...): layers and dense inputs side by side (templates/concat.c.j2). No parameters: its backward
hands each source layer its slice of the gradient."""

from __future__ import annotations

from boltc import ir
from boltc.emit import banner, c_comment
from boltc.ops import LayerOp, joined_sources
from boltc.plan import LayerPlan, Plan, PlanContext, SourcePlan, carries_gradient


class Concat(LayerOp):
    kind = "concat"
    plan_op = "concat"

    def check(self, checker, decl, resolve, dim_of) -> ir.ConcatLayer | None:
        sources = joined_sources(checker, decl, resolve)
        if sources is None:
            return None
        return ir.ConcatLayer(-1, decl.name.text, tuple(sources), sum(dim_of(s) for s in sources), decl.span)

    def check_in_model(self, checker, layer: ir.ConcatLayer, inputs, loss) -> None:
        if any(s.is_input and inputs[s.index].kind is ir.InputKind.SPARSE for s in layer.sources):
            checker.error(layer.span, f"concat '{layer.name}' joins a sparse input; feed the sparse input "
                          "to a dense layer first and concat that layer")

    def plan(self, model: ir.Model, layer: ir.ConcatLayer, context: PlanContext) -> LayerPlan:
        sources, offset = [], 0
        for ref in layer.sources:
            dim = model.node_dim(ref)
            sources.append(SourcePlan(ref.is_input, ref.index, dim, offset))
            offset += dim
        return LayerPlan(
            index=layer.index, name=layer.name, op="concat", spec_line=layer.span.line, in_dim=layer.dim,
            out_dim=layer.dim, activation="linear", bias=False, sources=tuple(sources),
            needs_input_gradient=any(carries_gradient(model, ir.NodeRef(s.is_input, s.index)) for s in sources),
            kernel="copy", weight_layout="none", column_tile=0, input_tile=0, transposed_backward=False,
            sparsity_requested=None, sparsity_origin="none", dense_reason="", precision="fp32", lsh=None,
            parameters=0, parameter_bytes=0, optimizer_bytes=0, flops_forward=0, flops_backward=0,
        )

    def describe(self, plan: Plan, layer: LayerPlan) -> tuple[str, str]:
        return "copy sources side by side", ""

    def emit(self, plan: Plan, layer: LayerPlan, buffers, base: dict, slots_of: dict[int, dict]) -> dict:
        base["slot_act"] = buffers.add(layer, "act", (plan.batch_size, layer.out_dim), "scratch")
        base["slot_grad"] = buffers.add(layer, "grad", (plan.batch_size, layer.out_dim), "scratch")
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
            **base, "template": "concat.c.j2", "banner": banner(plan, layer, "concat"),
            "banner_short": c_comment(f"layer {layer.index} '{layer.name}'"), "parts": parts,
            "has_backward": layer.needs_input_gradient,
        }


OP = Concat()
