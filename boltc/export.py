"""``boltc export MODEL --out DIR``: a trained model as a C inference library that needs only a C compiler.

The directory holds the model's generated C (the same text boltc compiles for it, training entry points included),
the runtime headers, a loader and predictor behind a small stable API (``boltc_model.h``: load, predict top k,
free), an example ``main.c`` that predicts rows read from standard input, a Makefile, and the weights: parameters,
hash functions and LSH tables exactly as the model holds them (so the library predicts as the model does), in a
versioned file whose every array carries a checksum and whose ids the loader checks before the generated code
indexes with them. Inputs standardised in training are standardised by the library with the same statistics.
Models with typed columns are refused: their featurizer (CSV/TSV parsing, label and history state) runs in Python.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from boltc import __version__, checkpoint, model_file
from boltc.abi import buffer_name
from boltc.diagnostics import UsageError
from boltc.emit import c_comment, emit, module_slug, render_template
from boltc.hashing import family as hash_family
from boltc.machine import probe
from boltc.build import compile_flags
from boltc.resources import runtime_dir
from boltc.saved_contents import used_slots

if TYPE_CHECKING:
    from boltc.model import Model

WEIGHTS_MAGIC = b"BOLTCWT\n"
WEIGHTS_VERSION = 1
WEIGHTS_FILE = "weights.bin"
ALIGN = 64
CHECKSUM_WORDS = 1 << 22  # words weighed at once: a bounded temporary whatever the array's size
SCALING_PER_LINE = 6


@dataclass(frozen=True)
class _Buffer:
    bytes: int
    saved: int
    id_limit: int
    offset_width: int
    offset_limit: int
    room_slot: int
    permutation: int
    real_bytes: int
    comment: str


def export_library(model: Model, out: str | Path) -> list[str]:
    """Write the library of `model` into the directory `out` (made if missing; files of the same names replaced);
    returns the names written."""
    _refuse_unexportable(model)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot make the export directory ({exc.strerror})") from None
    plan = model.plan
    saved = model_file.saved_buffers(model, inference_only=True, tables=True)
    buffers = [_buffer_info(model, spec, {s.slot for s in saved}) for spec in model.buffers]
    slug = module_slug(plan.spec_path)
    headers = sorted(path.name for path in runtime_dir().glob("*.h"))
    cflags, ldflags = compile_flags(probe())
    lib = {
        "model_comment": c_comment(f"'{plan.model_name}'"),
        "spec_comment": c_comment(Path(plan.spec_path).name),
        "boltc_version": __version__,
        "module_file": f"{slug}.c",
        "module_object": f"{slug}.o",
        "headers": headers,
        "cflags": " ".join(flag for flag in cflags if not flag.startswith("-fsanitize")),
        "ldflags": " ".join(flag for flag in ldflags if not flag.startswith("-fsanitize")),
        "buffers": buffers,
        "saved_count": len(saved),
        "batch_size": plan.batch_size,
        "output_dim": plan.output.out_dim,
        "sparse_top_k": plan.output.lsh.inference_active if model.sparse_output else 0,
        "lsh_candidates": -1 if model.lsh_candidates is None else int(model.lsh_candidates),
        "sparse_default": int(model.sparse_output and not model.sparse_scores_all),
        "sparse_scores_all": int(model.sparse_scores_all),
        "layout_digest": _layout_digest(model),
        "inputs": [_input_info(model, index) for index in range(len(plan.inputs))],
    }
    files = {
        "boltc_model.h": render_template("export_api.h.j2", lib=lib),
        "boltc_model.c": render_template("export_library.c.j2", lib=lib),
        "main.c": render_template("export_main.c.j2", lib=lib),
        "Makefile": render_template("export_Makefile.j2", lib=lib),
        "README.txt": render_template("export_readme.txt.j2", lib=lib),
        f"{slug}.c": emit(plan).c_text,  # the text boltc compiled: emitting is deterministic
    }
    for name, text in files.items():
        checkpoint.write_atomically(out / name, lambda handle, data=text.encode(): handle.write(data))
    for header in headers:
        shutil.copyfile(runtime_dir() / header, out / header)
    _write_weights(out / WEIGHTS_FILE, model, saved)
    return [*files, *headers, WEIGHTS_FILE]


def _refuse_unexportable(model: Model) -> None:
    name = model.plan.model_name
    if model.reads_columns:
        raise UsageError(f"model '{name}' reads typed columns, whose featurizer (CSV/TSV parsing, label names, "
                         "histories and neighbourhoods) runs in Python: the C library takes feature ids or dense "
                         "vectors; serve this model with `boltc serve` instead")
    if model.plan.provisional:
        raise UsageError(f"model '{name}' learns sizes from its training data: fit it before exporting")
    for index in model.input_scaling or {}:
        if _sparse_only(model, index):
            raise UsageError(f"model '{name}' standardises input {index}, which a layer reads by feature id")


def _sparse_only(model: Model, index: int) -> bool:
    return any(layer.gathers_input_rows and layer.sources[0].index == index for layer in model.plan.layers)


def _buffer_info(model: Model, spec, saved_slots: set[int]) -> _Buffer:
    """What the loader allocates for buffer `spec`, and what it checks of the values the file gives it."""
    layer = model.plan.layers[spec.layer]
    itemsize = model.arrays[spec.name].dtype.itemsize
    used = spec.kind != "optimizer"  # inference never reads Adam's moments
    id_limit = offset_width = offset_limit = 0
    room_slot = -1
    if spec.slot in saved_slots and model.arrays[spec.name].dtype == np.int32:
        if spec.role in ("lsh_order", "table_ids"):
            id_limit = layer.out_dim
        elif layer.lsh is not None and spec.role == hash_family(layer.lsh.family).functions_role:
            id_limit = layer.in_dim
        elif spec.role == "table_offsets":
            offset_width = spec.shape[1]
            offset_limit = next(s.shape[1] for s in model.buffers if s.layer == spec.layer and s.role == "table_ids")
        elif spec.role == "table_sizes":
            room_slot = next(s.slot for s in model.buffers if s.layer == spec.layer and s.role == "table_offsets")
        else:
            raise UsageError(f"boltc cannot check the ids of array '{spec.name}' in C: it does not export this model")
    return _Buffer(int(np.prod(spec.shape, dtype=np.int64)) * itemsize if used else 0, int(spec.slot in saved_slots),
                   id_limit, offset_width, offset_limit, room_slot, int(spec.role == "lsh_order" and id_limit > 0),
                   itemsize if spec.slot in saved_slots and model.arrays[spec.name].dtype.kind == "f" else 0,
                   c_comment(f"{spec.name} {list(spec.shape)}"))


def _input_info(model: Model, index: int) -> dict:
    model_input = model.plan.inputs[index]
    scaling = (model.input_scaling or {}).get(index)
    info = {"index": index, "dim": model_input.dim, "sparse_only": int(_sparse_only(model, index)),
            "scaling": None, "mean_name": "NULL", "inverse_std_name": "NULL"}
    if scaling is not None:
        info["scaling"] = {part: _float_lines(getattr(scaling, part)) for part in ("mean", "inverse_std")}
        info["mean_name"], info["inverse_std_name"] = f"input_{index}_mean", f"input_{index}_inverse_std"
    return info


def _float_lines(values: np.ndarray) -> list[str]:
    """float32 values as C initialiser lines: each printed with 9 significant digits, which reads back exactly."""
    texts = [f"{float(v):.9g}f" for v in values.astype(np.float32)]
    return [", ".join(texts[i:i + SCALING_PER_LINE]) + "," for i in range(0, len(texts), SCALING_PER_LINE)]


def _layout_digest(model: Model) -> str:
    """The first 8 bytes of a SHA-256 of every buffer's slot, name, shape and type, as a C constant."""
    text = "\n".join(f"{s.slot} {s.name} {s.shape} {model.arrays[s.name].dtype.str}" for s in model.buffers)
    return "0x" + hashlib.sha256(text.encode()).hexdigest()[:16]


def weighted_sum(array: np.ndarray) -> int:
    """The checksum the loader recomputes: the sum (mod 2^64) of the array's 64-bit little-endian words, the last
    padded with zeros, word i weighed by 2i + 1."""
    raw = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    whole = len(raw) // 8 * 8
    words = raw[:whole].view("<u8")
    if whole < len(raw):
        words = np.concatenate([words, np.frombuffer(raw[whole:].tobytes().ljust(8, b"\0"), "<u8")])
    total = 0
    for start in range(0, len(words), CHECKSUM_WORDS):
        part = words[start:start + CHECKSUM_WORDS]
        weights = np.arange(start, start + len(part), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        total += int(np.multiply(part, weights).sum(dtype=np.uint64))
    return total % (1 << 64)


def _exported_array(model: Model, spec) -> np.ndarray:
    """A buffer as the weights file holds it: tables with room for inserted labels have their free slots zeroed
    (a rebuild leaves old values there, which the loader would have to tell from ids)."""
    array = model.arrays[spec.name]
    sizes = model.arrays.get(buffer_name(spec.layer, "table_sizes"))
    if spec.role == "table_ids" and sizes is not None:
        offsets = model.arrays[buffer_name(spec.layer, "table_offsets")]
        array = np.where(used_slots(offsets, sizes, array.shape[1]), array, 0)
    return np.ascontiguousarray(array)


def _write_weights(path: Path, model: Model, saved) -> None:
    """The weights file: magic, version, array count and layout digest, a table of (slot, bytes, offset,
    checksum), then each array at a 64-byte boundary."""
    arrays = [_exported_array(model, spec) for spec in saved]
    offset = len(WEIGHTS_MAGIC) + 16 + 32 * len(saved)
    table, offsets = [], []
    for spec, array in zip(saved, arrays):
        offset = (offset + ALIGN - 1) // ALIGN * ALIGN
        offsets.append(offset)
        table.append(struct.pack("<IIQQQ", spec.slot, 0, array.nbytes, offset, weighted_sum(array)))
        offset += array.nbytes
    header = WEIGHTS_MAGIC + struct.pack("<IIQ", WEIGHTS_VERSION, len(saved), int(_layout_digest(model), 16))

    def write(handle) -> None:
        handle.write(header + b"".join(table))
        for at, array in zip(offsets, arrays):
            handle.write(b"\0" * (at - handle.tell()))
            handle.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())

    checkpoint.write_atomically(path, write)
