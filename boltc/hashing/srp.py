"""SRP, signed random projections (SimHash; runtime/bolt_hash_srp.h): bit k of a key is the side of a random
hyperplane the vector lies on. The classic family for dense inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from boltc.hashing import HashFamily


@dataclass(frozen=True, slots=True)
class Srp(HashFamily):
    def formula(self, units: int, sparsity: float, active: int, hashes: int | None) -> tuple[int, int]:
        # no BOLT formula: buckets of about 4 neurons, and enough tables to return about twice the active count
        hashes = hashes or min(self.hashes_most, max(2, round(math.log2(max(units, 4) / 4))))
        return hashes, min(256, max(4, math.ceil(2 * active / max(units / self.key_range(hashes), 1))))

    def functions_shape(self, bins: int, in_dim: int) -> tuple[int, ...]:
        return (bins, in_dim)

    def draw(self, rng: np.random.Generator, bins: int, in_dim: int) -> np.ndarray:
        return rng.choice([-1.0, 1.0], size=(bins, in_dim))

    def invalid_functions(self, functions: np.ndarray, in_dim: int) -> str | None:
        return None if np.isin(functions, (-1.0, 1.0)).all() else "holds hyperplane entries other than -1 and 1"

    def key_flops(self, bins: int, in_dim: int) -> int:
        return 2 * bins * in_dim

    def rebuild_scratch(self, in_dim: int, bins: int, tables: int, hash_chunk: int) -> int:
        return hash_chunk * tables  # the chunk's keys row-major (int32 in scalar slots)

    def describe(self, bins: int, in_dim: int) -> str:
        return f"{bins} random +-1 hyperplanes"


FAMILY = Srp(
    name="srp",
    summary="SRP (SimHash): each hash is the sign of a random +-1 projection of the input",
    bits_per_hash=1,
    hashes_most=24,
    functions_role="lsh_planes",
    functions_dtype="real",
    formula_origin="SRP: buckets of ~4 neurons, tables for ~2x the active count",
)
