"""The hash families an LSH-sparse layer can pick its active neurons with: one module each in this package.

A family is everything that differs between two ways of hashing: the limits the checker enforces on its K, the
formula that sizes K and L where neither the spec nor a measurement does, its hash functions (the array, how they
are drawn, what a model file may hold in it), the scratch its rebuild needs, its cost, and its C kernels
(``runtime/bolt_hash_<name>.h``: ``bolt_<name>_keys`` and ``bolt_<name>_hash_rows``, one signature for every
family, declared in ``runtime/bolt_lsh.h``). Every stage that meets a family asks this registry, so a new family is
one module here plus its header: the checker accepts ``sampling=<name>(...)``, the planner sizes it, the code
generator includes and calls its kernels, the runtime draws its functions and the tuner measures it.

A leaf beside ``boltc.abi``: it imports nothing of boltc but that and the registry helper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from boltc.abi import DWTA_BIN, HASH_BLOCK, binned_coords
from boltc.registry import members


@dataclass(frozen=True, slots=True)
class HashFamily:
    """The parts of a hash family that stages read; a family module's ``FAMILY`` is an instance of a subclass."""

    name: str  # as a spec spells it: sampling=<name>(...)
    summary: str  # one line for explain and the README
    bits_per_hash: int  # a key concatenates K hashes of this many bits: a table has 2^(bits * K) buckets
    hashes_most: int  # the largest K the checker accepts: keys of at most 24 bits
    functions_role: str  # the buffer role of its hash functions (the key in model files)
    functions_dtype: str  # BufferSpec dtype of that buffer
    formula_origin: str  # where its K and L formula comes from, for explain

    @property
    def kernel(self) -> str:
        """The prefix of its C kernels: <kernel>_keys and <kernel>_hash_rows."""
        return f"bolt_{self.name}"

    @property
    def header(self) -> str:
        return f"bolt_hash_{self.name}.h"

    def key_range(self, hashes: int) -> int:
        return 2 ** (self.bits_per_hash * hashes)

    def formula(self, units: int, sparsity: float, active: int, hashes: int | None) -> tuple[int, int]:
        """K (`hashes` where given) and L for that K, for a layer of `units` neurons computing `active` of them
        (sparsity `sparsity`)."""
        raise NotImplementedError

    def functions_shape(self, bins: int, in_dim: int) -> tuple[int, ...]:
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, bins: int, in_dim: int) -> np.ndarray:
        """New hash functions for K * L = `bins` hashes of `in_dim`-dimensional vectors."""
        raise NotImplementedError

    def invalid_functions(self, functions: np.ndarray, in_dim: int) -> str | None:
        """Why a model file's hash functions cannot be used (out-of-range coordinates, ...), or None."""
        raise NotImplementedError

    def key_flops(self, bins: int, in_dim: int) -> int:
        """Operations to hash one vector (for the plan's cost estimate)."""
        raise NotImplementedError

    def rebuild_scratch(self, in_dim: int, bins: int, tables: int, hash_chunk: int) -> int:
        """Scalars of scratch one thread's rebuild needs to hash `hash_chunk` rows at a time."""
        raise NotImplementedError

    def describe(self, bins: int, in_dim: int) -> str:
        """Its hash functions in words, for explain."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class BinnedFamily(HashFamily):
    """A family whose hash looks at bins of DWTA_BIN coordinates cut from random permutations of the input's
    coordinates and names one position in the bin (3 bits): DWTA and densified MinHash. Its keys follow BOLT's DWTA
    formula, and its kernels come from BOLT_BINNED_FAMILY (runtime/bolt_lsh.h)."""

    bits_per_hash: int = 3
    hashes_most: int = 8
    functions_role: str = "lsh_coords"
    functions_dtype: str = "int32"
    formula_origin: str = "BOLT's autotuner"

    def formula(self, units: int, sparsity: float, active: int, hashes: int | None) -> tuple[int, int]:
        hashes = hashes or min(self.hashes_most, max(2, round(math.log2(128 / sparsity) / 3)))
        return hashes, max(1, round(sparsity * self.key_range(hashes)))

    @staticmethod
    def permutations(bins: int, in_dim: int) -> int:
        """Random permutations of the input coordinates that the bins are cut from."""
        return math.ceil(bins * DWTA_BIN / in_dim)

    def functions_shape(self, bins: int, in_dim: int) -> tuple[int, ...]:
        return (bins * DWTA_BIN,)

    def draw(self, rng: np.random.Generator, bins: int, in_dim: int) -> np.ndarray:
        coords = np.concatenate([rng.permutation(in_dim) for _ in range(self.permutations(bins, in_dim))])
        return binned_coords(coords[: bins * DWTA_BIN].reshape(bins, DWTA_BIN))

    def invalid_functions(self, functions: np.ndarray, in_dim: int) -> str | None:
        if functions.size and (int(functions.min()) < 0 or int(functions.max()) >= in_dim):
            return f"holds ids outside the layer's input coordinates (0 to {in_dim - 1:,})"
        return None

    def key_flops(self, bins: int, in_dim: int) -> int:
        return bins * DWTA_BIN

    def rebuild_scratch(self, in_dim: int, bins: int, tables: int, hash_chunk: int) -> int:
        return (in_dim + bins) * HASH_BLOCK  # a block of rows transposed, then their bins (int32 in scalar slots)

    def describe(self, bins: int, in_dim: int) -> str:
        return f"{bins} bins of {DWTA_BIN} coordinates from {self.permutations(bins, in_dim)} permutations"


FAMILIES: dict[str, HashFamily] = {family.name: family for family in members(__name__, __path__, "FAMILY")}
DEFAULT_FAMILY = "dwta"  # BOLT's autotuner always picks it


def family(name: str) -> HashFamily:
    return FAMILIES[name]
