"""The layer ops a spec can declare (``NAME = <kind>(...)``): one module each in this package.

An op is one vertical slice through the stages: how the checker reads its declaration, what it needs of the whole
model, its parameters and batch buffers (for the memory check), its plan, and the buffers and template context the
code generator gives its template (``templates/``). Each stage holds only what every op shares and asks the registry
for the rest, so a new op is one module here plus its template (and a runtime header where its kernels are more
than the template prints): nothing else names it.

The registry is read when a stage first asks (``by_kind``), not when this package is imported, since op modules
use the stages' own types (``boltc.plan.LayerPlan``, ``boltc.emit``'s buffer table) and those stages import this
package.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

from boltc import ir
from boltc.registry import members

if TYPE_CHECKING:
    from boltc.plan import LayerPlan, Plan, PlanContext


class LayerOp:
    """What stages ask of one op; each op module's ``OP`` is an instance of a subclass."""

    kind: str  # as a spec spells it: NAME = <kind>(...)
    plan_op: str  # LayerPlan.op, and the C symbols of its layers: l<index>_<plan_op>_...

    def check(self, checker: Any, decl: Any, resolve: Callable, dim_of: Callable[[ir.NodeRef], int]) -> Any:
        """The ir layer of a declaration (index -1: the checker numbers layers in dependency order), or None
        after reporting what is wrong through ``checker.error``."""
        raise NotImplementedError

    def check_in_model(self, checker: Any, layer: Any, inputs: tuple[ir.Input, ...], loss: ir.Loss) -> None:
        """Rules that need the whole model (what feeds the layer, whether it is the output)."""

    def parameters(self, layer: Any) -> int:
        """Trained values of the layer (0: it has none, and gradient flowing into it only passes through)."""
        return 0

    def batch_values(self, layer: LayerPlan) -> int:
        """Values per batch row its buffers keep: its outputs and their gradients, and any copies of its inputs."""
        return 2 * layer.out_dim

    def scratch_values(self, layer: LayerPlan) -> int:
        """Values of scratch whose size grows with the layer but not with the batch (per-thread copies, mostly)."""
        return 0

    def plan(self, model: ir.Model, layer: Any, context: PlanContext) -> LayerPlan:
        raise NotImplementedError

    def describe(self, plan: Plan, layer: LayerPlan) -> tuple[str, str]:
        """For explain: the kernel the plan chose, in words, and a note on its sparsity ("" where none applies)."""
        raise NotImplementedError

    def emit(self, plan: Plan, layer: LayerPlan, buffers: Any, base: dict, slots_of: dict[int, dict]) -> dict:
        """The layer's buffers, added to ``buffers`` in a fixed order, and its template's context (``base`` holds
        the names every layer's C uses; ``slots_of`` the contexts of earlier layers, for their act/grad slots)."""
        raise NotImplementedError


def joined_sources(checker: Any, decl: Any, resolve: Callable) -> list[ir.NodeRef] | None:
    """The sources of an op that joins two or more nodes given by name only (``concat(a, b)``, ``add(a, b)``), or
    None after reporting what is wrong."""
    call = decl.call
    func = call.func.text
    for arg in call.args:
        if arg.keyword is not None:
            checker.error(arg.keyword.span, f"{func}() takes only the names of the layers or inputs it joins")
    parts = [arg.value for arg in call.args if arg.keyword is None]
    if len(parts) < 2:
        checker.error(call.span, f"{func}() needs at least two layers or inputs")
    sources = [resolve(part) for part in parts]
    if len(parts) < 2 or any(s is None for s in sources):
        return None
    return sources


@functools.cache
def _registry() -> dict[str, LayerOp]:
    return {op.kind: op for op in members(__name__, __path__, "OP")}


def kinds() -> tuple[str, ...]:
    return tuple(_registry())


def by_kind(kind: str) -> LayerOp | None:
    return _registry().get(kind)


def of(layer: Any) -> LayerOp:
    """The op of an ir layer."""
    return _registry()[layer.kind]


def of_plan(layer: LayerPlan) -> LayerOp:
    """The op of a planned layer."""
    return next(op for op in _registry().values() if op.plan_op == layer.op)
