"""The stages in order: parse -> check -> plan -> emit -> build, and the loaders built on them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from boltc import checkpoint
from boltc.build import CompiledLibrary, build
from boltc.check import check
from boltc.diagnostics import ModelFileError
from boltc.emit import CSource, emit
from boltc.machine import Machine, probe
from boltc.model import Model
from boltc.parse import parse, parse_file
from boltc.plan import Plan, plan


@dataclass(frozen=True)
class Compiled:
    plan: Plan
    source: CSource
    library: CompiledLibrary
    seconds: float  # wall time of the whole pipeline


def plan_spec(path: str | Path, *, source: str | None = None, machine: Machine | None = None,
              real_type: str = "float") -> Plan:
    """parse -> check -> plan, without compiling anything (what ``boltc explain`` shows)."""
    machine = machine or probe()
    spec = parse(source, str(path)) if source is not None else parse_file(path)
    return plan(check(spec, memory_bytes=machine.memory_bytes), machine, real_type=real_type)


def compile_spec(path: str | Path, *, source: str | None = None, real_type: str = "float") -> Compiled:
    started = time.perf_counter()
    machine = probe()
    the_plan = plan_spec(path, source=source, machine=machine, real_type=real_type)
    c_source = emit(the_plan)
    library = build(c_source, machine)
    return Compiled(the_plan, c_source, library, time.perf_counter() - started)


def load(path: str | Path, *, real_type: str = "float") -> Model:
    """Compile a ``.bolt`` spec (or fetch it from the cache) and return a freshly initialised model."""
    compiled = compile_spec(path, real_type=real_type)
    return Model(compiled.plan, compiled.library, compiled.source.buffers)


def load_model(path: str | Path) -> Model:
    """Restore a model saved with ``Model.save``: its spec is stored inside and recompiled (or found cached)."""
    header, payload_at = checkpoint.read_header(path)
    try:
        spec_path, spec_source, real_type = header["spec_path"], header["spec_source"], header["real_type"]
    except KeyError as exc:
        raise ModelFileError(str(path), f"model file has no {exc.args[0]}") from None
    compiled = compile_spec(spec_path, source=spec_source, real_type=real_type)
    model = Model(compiled.plan, compiled.library, compiled.source.buffers)
    arrays = checkpoint.read_arrays(path, header, payload_at, destination=model.saved_arrays())
    model.restore(str(path), header, arrays)
    return model
