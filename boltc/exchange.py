"""One step of data-parallel training as every worker takes it: the backward's gradients collected instead of
stepped (for a parameter updated by rows, only the rows the step touched), the workers' shares summed in rank order,
and the same optimiser step applied to the union of their rows on every replica, so that the replicas stay
identical and need not send their hash tables anywhere.

How shares travel is not this module's business (``boltc.distributed`` sends them through Ray's object store).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from boltc.abi import BufferSpec
from boltc.model_arrays import Feed

WIRE_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True, slots=True)
class ExchangedParameter:
    """A parameter as a distributed step exchanges it: ``index`` is bolt_apply_gradients' number for it."""

    index: int
    name: str  # the parameter's buffer
    gradient: str  # the exchange buffer the backward writes its gradient rows into
    touched: str | None  # the step that last wrote each row, where it is exchanged by rows; None: sent whole
    rows: int
    width: int


@functools.lru_cache(maxsize=16)
def exchanged_parameters(buffers: tuple[BufferSpec, ...]) -> tuple[ExchangedParameter, ...]:
    """The parameters in the order of their exchange buffers' slots, which is the generated code's numbering."""
    names = {spec.name for spec in buffers}
    found = []
    for spec in buffers:
        if spec.kind != "exchange" or not spec.role.endswith("_g"):
            continue
        touched = spec.name[:-2] + "_touched"
        found.append(ExchangedParameter(len(found), spec.name[:-2], spec.name, touched if touched in names else None,
                                        spec.shape[0], spec.shape[1] if len(spec.shape) > 1 else 1))
    return tuple(found)


@dataclass
class Share:
    """One worker's part of one step: its rows' summed loss, and per exchanged parameter the ids of the rows it
    touched (sorted; None for a parameter sent whole) and their gradients. A worker with no rows in the step sends
    no ids and no gradients."""

    rows: int
    loss: float
    ids: list[np.ndarray | None]
    gradients: list[np.ndarray | None]

    @property
    def nbytes(self) -> int:
        """What the share puts on the wire: ids and gradient rows."""
        return sum(a.nbytes for a in self.ids if a is not None) + \
            sum(a.nbytes for a in self.gradients if a is not None)


def to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 values as bf16 bit patterns (their upper halves, rounded to nearest even)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def from_bf16(halves: np.ndarray) -> np.ndarray:
    return (halves.astype(np.uint32) << np.uint32(16)).view(np.float32)


def collect(model, feed: Feed, batches: list[np.ndarray], mean_rows: int, wire: str = "fp32") -> Share:
    """This worker's share of a step: its rows (of the feed's data set) of one global batch, or of several whose
    gradients the step accumulates, which hold `mean_rows` rows in all; the step's settings
    (``model.compiled.step_struct``) must be set. The loss is averaged over all of the step's rows, so that the
    workers' gradients add up to one process's. Nothing is stepped, and a non-finite loss is returned as it is,
    with no gradients: every worker must then skip the step. The rows of parameters exchanged by rows are views of
    the model's buffers until its next collect."""
    parameters = exchanged_parameters(model.buffers)
    compiled, step = model.compiled, model.compiled.step_struct
    rows = loss = 0
    for batch in batches:
        if len(batch) == 0:
            continue
        feed.select(batch)
        feed.batch.mean_rows = mean_rows
        step.collect_gradients = 2 if rows else 1  # later batches add to what the first wrote
        try:
            status, batch_loss = compiled.train_batch(feed)
        finally:
            step.collect_gradients = 0
            feed.batch.mean_rows = 0
        rows, loss = rows + len(batch), loss + batch_loss
        if compiled.nonfinite_loss(status):
            return Share(rows, loss, [None] * len(parameters), [None] * len(parameters))
        compiled.check(status)
    if rows == 0:
        return Share(0, 0.0, [None] * len(parameters), [None] * len(parameters))
    ids: list[np.ndarray | None] = []
    gradients: list[np.ndarray | None] = []
    for parameter in parameters:
        if parameter.touched is None:  # a copy: the steps sum into the buffer it was written in
            ids.append(None)
            gradients.append(model.arrays[parameter.gradient].copy())
        else:
            touched, touched_rows = compiled.collect_share(parameter.index, parameter.rows, parameter.width,
                                                           step.step, model.threads)
            ids.append(touched)
            gradients.append(touched_rows)
    if wire == "bf16":
        gradients = [to_bf16(g) if g is not None else None for g in gradients]
    return Share(rows, loss, ids, gradients)


@dataclass
class Applied:
    """A step made from the workers' shares: its rows and summed loss, and the rows of the union it stepped per
    exchanged parameter (nothing is stepped where the loss is not finite)."""

    rows: int
    loss: float
    union_rows: list[int]
    union_bytes: int  # the gradient rows and ids of the union: what one process's step would have touched


def apply_shares(model, shares: list[Share]) -> Applied:
    """The step of the workers' shares (in rank order) on this replica: each parameter's rows summed over the
    shares, first rank first, and every row of their union stepped once (runtime/bolt_exchange.h); the step's
    settings must be set. Every replica given the same shares makes the same bits."""
    rows, loss = sum(s.rows for s in shares), sum(s.loss for s in shares)
    applied = Applied(rows, loss, [], 0)
    if not np.isfinite(loss):
        return applied
    compiled = model.compiled
    for parameter in exchanged_parameters(model.buffers):
        gradients = [_float32(s.gradients[parameter.index]) for s in shares]
        union = compiled.step_shares(parameter.index, [s.ids[parameter.index] for s in shares], gradients,
                                     model.threads)
        applied.union_rows.append(union)
        applied.union_bytes += union * parameter.width * compiled.real.itemsize + \
            (union * 8 if parameter.touched is not None else 0)
    return applied


def _float32(gradients: np.ndarray | None) -> np.ndarray | None:
    if gradients is not None and gradients.dtype == np.uint16:
        return from_bf16(gradients)
    return gradients
