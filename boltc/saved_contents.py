"""What a model file's arrays may hold, checked before any of it reaches the compiled code.

The checksums prove that a file is what its writer wrote, not that its writer was boltc: a buggy or hostile writer
can store hash coordinates, neuron orders or CSR offsets that index outside their arrays in C (a crash, or reads of
other memory), or parameters that make every prediction NaN. Each such value is refused here with a
``ModelFileError`` naming the array; a file boltc wrote always passes (every check is of something boltc's own
writers guarantee).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from boltc.abi import BufferSpec, buffer_name
from boltc.diagnostics import ModelFileError
from boltc.hashing import family as hash_family
from boltc.plan import Plan

BF16_EXPONENT = 0x7F80  # all ones: infinity or NaN
BF16_SIGN = 0x8000


def check_buffers(path: str, plan: Plan, buffers: Iterable[BufferSpec], arrays: dict[str, np.ndarray]) -> None:
    """The saved buffers' values (shapes are checked by the caller)."""
    for spec in buffers:
        stored = arrays[spec.name]
        layer = plan.layers[spec.layer]
        family = hash_family(layer.lsh.family) if layer.lsh is not None else None
        if family is not None and spec.role == family.functions_role:
            problem = family.invalid_functions(stored, layer.in_dim)
            if problem:
                raise ModelFileError(path, f"array '{spec.name}' {problem}")
        elif spec.role == "lsh_order":
            check_ids(path, spec.name, stored, layer.out_dim, "the layer's neurons")
            if not (np.bincount(stored, minlength=layer.out_dim) == 1).all():
                raise ModelFileError(path, f"array '{spec.name}' is not an order of the layer's {layer.out_dim:,} "
                                     "neurons (each once)")
        elif stored.dtype == np.uint16:  # bf16 moments
            if ((stored & BF16_EXPONENT) == BF16_EXPONENT).any():
                raise ModelFileError(path, f"array '{spec.name}' holds infinite or NaN values")
            if spec.role.endswith("_v") and (((stored & BF16_SIGN) != 0) & (stored != BF16_SIGN)).any():
                raise ModelFileError(path, f"array '{spec.name}' holds negative second moments")
        elif stored.dtype.kind == "f" and stored.size:
            # min and max propagate NaN and show infinities without a temporary as large as the array
            low, high = float(stored.min()), float(stored.max())
            if not (math.isfinite(low) and math.isfinite(high)):
                raise ModelFileError(path, f"array '{spec.name}' holds infinite or NaN values")
            if spec.role.endswith("_v") and low < 0:
                raise ModelFileError(path, f"array '{spec.name}' holds negative second moments")


def check_tables(path: str, plan: Plan, arrays: dict[str, np.ndarray]) -> None:
    """An inference-only file's LSH tables, which sparse inference indexes in C: each table's bucket offsets from
    0, never decreasing, within its row of neuron ids; bucket sizes (tables with room for inserted labels) within
    their buckets; every id one of the layer's neurons."""
    for layer in plan.layers:
        if layer.lsh is None:
            continue
        offsets, ids = arrays[buffer_name(layer.index, "table_offsets")], arrays[buffer_name(layer.index, "table_ids")]
        sizes = arrays.get(buffer_name(layer.index, "table_sizes"))
        if (offsets[:, 0] != 0).any() or (np.diff(offsets, axis=1) < 0).any() or (offsets[:, -1] > ids.shape[1]).any():
            raise ModelFileError(path, f"array '{buffer_name(layer.index, 'table_offsets')}' is not the bucket offsets "
                                 "of tables of its width")
        if sizes is not None and ((sizes < 0) | (sizes > np.diff(offsets, axis=1))).any():
            raise ModelFileError(path, f"array '{buffer_name(layer.index, 'table_sizes')}' holds sizes larger than "
                                 "their buckets")
        used = ids if sizes is None else ids[used_slots(offsets, sizes, ids.shape[1])]
        check_ids(path, buffer_name(layer.index, "table_ids"), used, layer.out_dim, "the layer's neurons")


def used_slots(offsets: np.ndarray, sizes: np.ndarray, stride: int) -> np.ndarray:
    """Which slots of tables with room for inserted labels hold a neuron: each bucket's first `sizes` (the rest
    are free, and hold whatever a rebuild left there)."""
    tables, buckets = sizes.shape
    used = np.zeros((tables, stride), dtype=bool)
    for table in range(tables):
        bucket_of = np.repeat(np.arange(buckets), np.diff(offsets[table]))
        position = np.arange(len(bucket_of)) - offsets[table, :-1][bucket_of]
        used[table, :len(bucket_of)] = position < sizes[table][bucket_of]
    return used


def check_ragged(path: str, name: str, indptr: np.ndarray, rows: int, values: int) -> None:
    """A CSR offsets array: ``rows + 1`` offsets from 0, never decreasing, ending at the ``values`` it indexes."""
    if indptr.ndim != 1 or len(indptr) != rows + 1 or indptr[0] != 0 or indptr[-1] != values or \
            (np.diff(indptr) < 0).any():
        raise ModelFileError(path, f"array '{name}' is not the offsets of {rows:,} rows into {values:,} values")


def check_ids(path: str, name: str, ids: np.ndarray, bound: int, what: str) -> None:
    # one pass over the ids, seen unsigned: a negative one is then larger than any bound (tables are 100s of MB)
    unsigned = ids.view(np.dtype(f"u{ids.dtype.itemsize}")) if ids.dtype.kind == "i" else ids
    if ids.size and int(unsigned.max()) >= bound:
        raise ModelFileError(path, f"array '{name}' holds ids outside {what} (0 to {bound - 1:,})")
