"""What Python and the generated C agree on, in one place: the names of a model's buffers, the table of them, the
cffi declarations read out of the runtime's headers, the status codes and the sparse layers' profile fields.

A leaf: it imports nothing of boltc, so that every stage (emit builds the buffers, the runtime reads them, tools
inspect them) can use it without reaching into another stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the markers around the cffi declarations in a runtime header: the header stays the single source of the ABI
CDEF_BEGIN = "/* BOLT_CDEF_BEGIN */"
CDEF_END = "/* BOLT_CDEF_END */"
COLUMNS_CDEF_BEGIN = "/* BOLT_COLUMNS_CDEF_BEGIN */"
COLUMNS_CDEF_END = "/* BOLT_COLUMNS_CDEF_END */"

# what each non-zero enum bolt_status (runtime/bolt_abi.h) means; codes are read from the compiled library
STATUS_MESSAGES = {
    "BOLT_ERROR_BATCH_TOO_LARGE": "the batch is empty or larger than the compiled batch size",
    "BOLT_ERROR_WORKSPACE_TOO_SMALL": "the sparse-entry workspace is smaller than the batch's non-zeros",
    "BOLT_ERROR_BAD_ARGUMENT": "top_k must be between 1 and the number of outputs, and sparse inputs must be given "
                               "as CSR rows",
    "BOLT_ERROR_NONFINITE_LOSS": "the loss is not finite",
    "BOLT_ERROR_BAD_SHARES": "a worker's gradient share has row ids out of order or out of range, or rows missing",
}

# What a sparse layer's kernels count in its profile buffer (doubles, summed over training batches); the names are
# the keys of Model.kernel_profile(). Thread-seconds are summed over threads: they split a wall time, not add to it.
SPARSE_PROFILE_FIELDS = (
    "batches", "forward_seconds", "select_thread_seconds", "score_thread_seconds", "entries_scored",
    "backward_seconds", "neurons_updated", "entries_updated", "rebuilds", "rebuild_seconds", "bf16_batches",
)


# Sizes the runtime's headers fix and Python mirrors to size buffers; every generated module asserts them at compile
# time, so a header changed without this file fails to build instead of overrunning a buffer.
BF16_DEPTH = 32  # BOLT_BF16_K: bf16 products' K dimensions are padded to it...
BF16_WIDTH = 16  # ...and their M and N dimensions to BOLT_BF16_N
HASH_BLOCK = 16  # BOLT_HASH_BLOCK: rows a binned hash family's rebuild hashes at once
DWTA_BIN = 8  # BOLT_DWTA_BIN: coordinates per bin of a binned hash family (DWTA, MinHash)
MIRRORED_SIZES = (("BOLT_BF16_K", BF16_DEPTH), ("BOLT_BF16_N", BF16_WIDTH), ("BOLT_HASH_BLOCK", HASH_BLOCK),
                  ("BOLT_DWTA_BIN", DWTA_BIN))


def binned_coords(bins: np.ndarray) -> np.ndarray:
    """The lsh_coords buffer of a binned hash family's bins given as [bins, DWTA_BIN] input coordinates: stored
    coordinate-major (the c-th coordinate of every bin together), so that the kernel gathers one coordinate of many
    bins at once."""
    return np.ascontiguousarray(bins.reshape(-1, DWTA_BIN).T).ravel()


def buffer_name(layer: int, role: str) -> str:
    """The name of layer `layer`'s buffer of `role` ("weights", "lsh_coords", ...): the key in model files too."""
    return f"l{layer}.{role}"


@dataclass(frozen=True, slots=True)
class BufferSpec:
    """One array the generated code reads or writes; Python allocates it and passes its address in slot ``slot``."""

    slot: int
    name: str  # buffer_name(layer, role): stable across builds, used as the key in model files
    layer: int
    role: str  # weights | bias | weights_m | weights_v | bias_m | bias_v | act | grad | lsh_* | ...
    shape: tuple[int, ...]
    # parameter | optimizer | hash (LSH functions) are saved; table (rebuilt from weights and hash functions) and
    # scratch are not
    kind: str
    fan_in: int  # for initialisation of weights
    fan_out: int
    dtype: str = "real"  # real (the plan's scalar) | int32 | int64 | uint8 | uint16 (bf16) | float64


def cdef_block(header: Path, begin: str = CDEF_BEGIN, end: str = CDEF_END) -> str:
    """The cffi declarations between a runtime header's markers."""
    text = header.read_text()
    return text[text.index(begin) + len(begin):text.index(end)].strip() + "\n"


def status_message(library, status: int) -> str:
    """What a non-zero status returned by a compiled entry point means."""
    for name, message in STATUS_MESSAGES.items():
        if getattr(library, name) == status:
            return message
    return f"status {status}"
