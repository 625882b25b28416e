"""The stages in order: parse -> check -> plan -> emit -> build, and the loaders built on them."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from boltc import checkpoint, facts, ir, model_file
from boltc import tune as tuning
from boltc.build import CompiledLibrary, build, cache_entry, compile_flags, is_cached
from boltc.check import check
from boltc.diagnostics import ModelFileError, SpecErrors, SpecProblem
from boltc.emit import CSource, emit
from boltc.machine import Machine, probe
from boltc.data import Dataset
from boltc.model import Model, dataset_for
from boltc.parse import parse, parse_file
from boltc.plan import MeasuredLsh, Plan, plan


@dataclass(frozen=True)
class Compiled:
    plan: Plan
    source: CSource
    library: CompiledLibrary
    seconds: float  # wall time of the whole pipeline


def _checked(path: str | Path, source: str | None, learned: ir.Learned | None = None) -> ir.Model:
    spec = parse(source, str(path)) if source is not None else parse_file(path)
    return check(spec, learned)


def plan_spec(path: str | Path, *, source: str | None = None, machine: Machine | None = None,
              real_type: str = "float", measured: dict[int, MeasuredLsh] | None = None,
              learned: ir.Learned | None = None) -> Plan:
    """parse -> check -> plan, without compiling anything (what ``boltc explain`` shows)."""
    machine = machine or probe()
    return plan(_checked(path, source, learned), machine, real_type=real_type, measured=measured)


def build_info(the_plan: Plan) -> dict:
    """Where the plan's library sits in the cache and how it is compiled, without compiling it (what explain shows).
    The key is the digest of the emitted C with its headers and flags: emitting takes milliseconds, and a key
    computed from the plan instead could miss a template change."""
    machine = probe()
    key, entry = cache_entry(emit(the_plan), machine)
    return {"key": key, "entry": str(entry), "cached": is_cached(entry), "compiler": " ".join(machine.compiler),
            "cflags": list(compile_flags(machine)[0])}


def compile_spec(path: str | Path, *, source: str | None = None, real_type: str = "float",
                 measured: dict[int, MeasuredLsh] | None = None, learned: ir.Learned | None = None) -> Compiled:
    started = time.perf_counter()
    machine = probe()
    the_plan = plan_spec(path, source=source, machine=machine, real_type=real_type, measured=measured,
                         learned=learned)
    c_source = emit(the_plan)
    library = build(c_source, machine)
    return Compiled(the_plan, c_source, library, time.perf_counter() - started)


def autotune_enabled() -> bool:
    """Whether a model's first fit() measures its sparse layers' values (``BOLTC_TUNE=off`` turns it off)."""
    return os.environ.get("BOLTC_TUNE", "on").strip().lower() not in ("off", "0", "no", "false")


def tune_spec(path: str | Path, data, *, source: str | None = None, real_type: str = "float",
              budget: float = tuning.DEFAULT_BUDGET_SECONDS, progress: bool | None = None,
              force: bool = False) -> tuning.Tuning:
    """What ``boltc tune`` runs: the measured values of the spec's sparse layers on `data` (cached)."""
    machine = probe()
    spec = _checked(path, source, _learned_from(path, source, data, machine, real_type))
    dataset = dataset_for(plan(spec, machine, real_type=real_type), data, labelled=True)
    return tuning.tune(spec, machine, dataset, real_type=real_type, budget=budget, progress=progress, force=force)


def _learned_from(path: str | Path, source: str | None, data, machine: Machine, real_type: str) -> ir.Learned | None:
    """What an XMC data file says of the spec's auto sizes (its header's label count), for the commands that read
    such a file without a model (tune, explain --data); None for a spec that leaves nothing to the data."""
    provisional = plan(_checked(path, source), machine, real_type=real_type)
    if not provisional.provisional or provisional.inputs[0].column is not None:
        return None  # typed columns are read by a model's own featurizers: a fit learns them
    return facts.learn(provisional, None, data, skip_bad_rows=False)[0]


def cached_measurements(path: str | Path, data, *, real_type: str = "float") -> dict[int, MeasuredLsh]:
    """Measured values stored for this spec and data file, without measuring anything (what explain shows)."""
    machine = probe()
    base = plan(_checked(path, None, _learned_from(path, None, data, machine, real_type)), machine,
                real_type=real_type)
    if not any(layer.lsh is not None for layer in base.layers):
        return {}
    found = tuning.cached(tuning.tuning_key(base, machine, dataset_for(base, data, labelled=True)))
    return found.measured if found else {}


def load(path: str | Path, *, real_type: str = "float", tune: bool | None = None,
         tune_budget: float = tuning.FIT_BUDGET_SECONDS) -> Model:
    """Compile a ``.bolt`` spec (or fetch it from the cache) and return a freshly initialised model.

    With ``tune`` (default: on unless ``BOLTC_TUNE=off``), a model with LSH-sparse layers measures their values
    on its training data at its first ``fit`` (or takes them from the cache) and is rebuilt on them, and a spec
    without a learning rate races one there (without ``tune``: the optimizer's usual default)."""
    compiled = compile_spec(path, real_type=real_type)
    model = Model(compiled.plan, compiled.library, compiled.source.buffers)
    _learns_sizes(model, path, real_type)
    model.measure_learning_rate = autotune_enabled() if tune is None else tune
    if model.measure_learning_rate and (model.sparse_output or model.plan.provisional):
        source = compiled.plan.spec_source

        def tuned(dataset: Dataset, learned: ir.Learned | None):
            found = tuning.tune(_checked(path, source, learned), probe(), dataset, real_type=real_type,
                                budget=tune_budget, accept_incomplete=True)
            again = compile_spec(path, source=source, real_type=real_type, measured=found.measured, learned=learned)
            return again.plan, again.library, again.source.buffers, found

        model.tuner = tuned
    return model


def _learns_sizes(model: Model, path: str | Path, real_type: str) -> None:
    """A model whose plan is provisional compiles again, at its first fit, on what its training data says."""
    if not model.plan.provisional:
        return
    source = model.plan.spec_source

    def compiled_on(learned: ir.Learned):
        again = compile_spec(path, source=source, real_type=real_type, learned=learned)
        return again.plan, again.library, again.source.buffers

    model.learner = compiled_on


def _saved_options(path: str | Path, header: dict) -> dict:
    """What a model file says its spec was compiled with: the spec, real type, measured and learned values."""
    try:
        options = {"path": header["spec_path"], "source": header["spec_source"], "real_type": header["real_type"]}
        options["measured"] = {int(index): MeasuredLsh(**values)
                               for index, values in header.get("measured", {}).items()}
    except KeyError as exc:
        raise ModelFileError(str(path), f"model file has no {exc.args[0]}") from None
    except (TypeError, ValueError, AttributeError):
        raise ModelFileError(str(path), "model file has unreadable measured values") from None
    try:
        options["learned"] = ir.Learned.from_json(header["learned"]) if header.get("learned") is not None else None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ModelFileError(str(path), "model file has unreadable learned values") from None
    return options


def saved_plan(path: str | Path) -> Plan:
    """The plan of a model saved with ``Model.save`` (what ``boltc explain MODEL.boltm`` shows), without compiling."""
    options = _saved_options(path, checkpoint.read_header(path)[0])
    try:
        return plan_spec(options.pop("path"), **options)
    except (SpecErrors, SpecProblem, TypeError, ValueError) as exc:
        raise ModelFileError(str(path), f"the spec saved in the file does not compile: {exc}") from None


def load_model(path: str | Path) -> Model:
    """Restore a model saved with ``Model.save``: its spec is stored inside and recompiled (or found cached). An
    inference-only file is mapped rather than read (its pages are shared by every process that serves it), and its
    checksums are verified while the spec compiles."""
    header, payload_at = checkpoint.read_header(path)
    options = _saved_options(path, header)
    spec_path = options.pop("path")
    with ThreadPoolExecutor(1, thread_name_prefix="boltc-verify") as background:
        mapped = background.submit(checkpoint.read_arrays, path, header, payload_at, mapped=True) \
            if model_file.is_inference_only(str(path), header) else None
        try:
            compiled = compile_spec(spec_path, **options)
        except (SpecErrors, SpecProblem) as exc:
            raise ModelFileError(str(path), f"the spec saved in the file does not compile: {exc}") from None
        except (TypeError, ValueError) as exc:  # a real type or a measured value no plan accepts
            raise ModelFileError(str(path), f"the file's compile options are unusable ({exc})") from None
        model = Model(compiled.plan, compiled.library, compiled.source.buffers, initialize=False)  # restore fills it
        _learns_sizes(model, spec_path, options["real_type"])
        arrays = mapped.result() if mapped is not None else \
            checkpoint.read_arrays(path, header, payload_at, destination=model.saved_arrays())
    model.restore(str(path), header, arrays)
    return model
