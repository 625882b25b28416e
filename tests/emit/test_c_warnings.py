"""The generated C of every bundled spec and variant compiles warning-free under ``-Wall -Wextra -Werror``, for the
x86-64 baseline (16-byte vectors), for the plain scalar fallback and for this machine: ``boltc export`` hands this
C to users' builds, which may treat warnings as errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from boltc.emit import emit
from boltc.machine import probe
from boltc.pipeline import plan_spec
from boltc.resources import runtime_dir

from test_snapshots import FIXED_MACHINE, LEARNED, REPO  # tests/emit is on the path, as pytest runs it

SPECS = sorted((REPO / "specs").glob("*.bolt")) + sorted(Path(__file__).with_name("variants").glob("*.bolt"))
TARGETS = {"baseline": ("-O2",), "scalar": ("-O2", "-DBOLT_SCALAR_ONLY")}


@pytest.mark.parametrize("spec", SPECS, ids=lambda path: path.stem)
def test_generated_c_compiles_without_warnings(spec, tmp_path):
    source = emit(plan_spec(spec, machine=FIXED_MACHINE, learned=LEARNED.get(spec.name)))
    module = tmp_path / "module.c"
    module.write_text(source.c_text)
    native = tuple(flag for flag in probe().cflags if flag.startswith(("-O", "-march", "-f")))
    for target, flags in {**TARGETS, "this machine": native}.items():
        compiled = subprocess.run(["cc", *flags, "-fopenmp", "-Wall", "-Wextra", "-Werror", "-I", str(runtime_dir()),
                                   "-c", str(module), "-o", str(tmp_path / "module.o")],
                                  capture_output=True, text=True, check=False)
        assert compiled.returncode == 0, f"{target}:\n{compiled.stderr[-3000:]}"
