"""One step of data-parallel training as every worker takes it: the backward's gradients collected instead of
stepped (for a parameter updated by rows, only the rows the step touched), the workers' shares summed in rank order,
and the same optimiser step applied to the union of their rows on every replica, so that the replicas stay
identical and need not send their hash tables anywhere.

How shares travel is not this module's business (``boltc.distributed`` sends them through Ray's object store).
"""

from __future__ import annotations

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


def collect(model, feed: Feed, rows: np.ndarray, global_rows: int, wire: str = "fp32") -> Share:
    """This worker's share of a step whose global batch has `global_rows` rows, of which `rows` (of the feed's
    data set) are this worker's; the step's settings (``model.compiled.step_struct``) must be set. The loss is
    averaged over the global batch, so that the workers' gradients add up to one process's. Nothing is stepped,
    and a non-finite loss is returned as it is, with no gradients: every worker must then skip the step."""
    parameters = exchanged_parameters(model.buffers)
    if len(rows) == 0:
        return Share(0, 0.0, [None] * len(parameters), [None] * len(parameters))
    compiled, step = model.compiled, model.compiled.step_struct
    feed.select(rows)
    feed.batch.mean_rows = global_rows
    step.collect_gradients = 1
    try:
        status, loss = compiled.train_batch(feed)
    finally:
        step.collect_gradients = 0
        feed.batch.mean_rows = 0
    if compiled.nonfinite_loss(status):
        return Share(len(rows), loss, [None] * len(parameters), [None] * len(parameters))
    compiled.check(status)
    ids: list[np.ndarray | None] = []
    gradients: list[np.ndarray | None] = []
    for parameter in parameters:
        written = model.arrays[parameter.gradient]
        if parameter.touched is None:
            ids.append(None)
            gradients.append(written.copy())
        else:
            touched = np.flatnonzero(model.arrays[parameter.touched] == step.step)
            ids.append(touched.astype(np.int64))
            gradients.append(written[touched])
    if wire == "bf16":
        gradients = [to_bf16(g) if g is not None else None for g in gradients]
    return Share(len(rows), loss, ids, gradients)


@dataclass
class Summed:
    """The workers' shares of a step added up: per exchanged parameter, the union of their rows (None: all) and
    the summed gradients of those rows."""

    rows: int
    loss: float
    ids: list[np.ndarray | None]
    gradients: list[np.ndarray | None]  # None: no worker had rows in the step


def summed(shares: list[Share]) -> Summed:
    """The shares (in rank order) added up, in the same order on every worker: a row's gradients from the workers
    that touched it, first rank first."""
    parameters = len(shares[0].ids)
    ids: list[np.ndarray | None] = []
    gradients: list[np.ndarray | None] = []
    for index in range(parameters):
        parts = [(s.ids[index], _float32(s.gradients[index])) for s in shares if s.gradients[index] is not None]
        if not parts:
            ids.append(None)
            gradients.append(None)
        elif parts[0][0] is None:  # sent whole
            total = parts[0][1].copy()
            for _, part in parts[1:]:
                total += part
            ids.append(None)
            gradients.append(total)
        else:
            every = np.concatenate([part_ids for part_ids, _ in parts])
            rows = np.concatenate([part for _, part in parts])
            order = np.argsort(every, kind="stable")  # ranks stay in order within a row id
            every = every[order]
            starts = np.flatnonzero(np.r_[True, every[1:] != every[:-1]]) if len(every) else np.zeros(0, np.int64)
            ids.append(every[starts])
            gradients.append(np.add.reduceat(rows[order], starts, axis=0) if len(every) else rows[:0])
    return Summed(sum(s.rows for s in shares), sum(s.loss for s in shares), ids, gradients)


def _float32(gradients: np.ndarray | None) -> np.ndarray | None:
    if gradients is not None and gradients.dtype == np.uint16:
        return from_bf16(gradients)
    return gradients


def apply(model, total: Summed) -> None:
    """The optimiser step of every exchanged parameter on the summed rows (the step's settings must be set)."""
    compiled = model.compiled
    for parameter in exchanged_parameters(model.buffers):
        gradients = total.gradients[parameter.index]
        if gradients is None:
            continue
        compiled.apply_gradients(parameter.index, total.ids[parameter.index],
                                 np.ascontiguousarray(gradients, dtype=compiled.real), model.threads)
