"""Generated-code snapshots: the digest of the C, cdef and buffer list emitted for every bundled spec, and for the
variants in tests/emit/variants/ (the kernels' modes that no bundled spec uses), on one fixed machine description, so that a change which should not touch the generated code proves it did not, and one that
should names every spec whose code moved. After a change to the generated code that is meant, rewrite them with
``BOLTC_UPDATE_SNAPSHOTS=1 python -m pytest tests/emit/test_snapshots.py`` and say why in the commit."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from boltc import ir
from boltc.emit import emit
from boltc.machine import Machine
from boltc.pipeline import plan_spec

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).with_name("snapshots.json")
# not this machine: the plan (threads, memory limits) must not follow whoever runs the tests
FIXED_MACHINE = Machine(cores=16, memory_bytes=64 << 30, arch="x86_64", cpu_model="snapshot machine",
                        isa=("avx2", "avx512f"), cpu_fingerprint="snapshot", compiler=("cc",),
                        compiler_id="cc (snapshot)", native_flag=True, openmp=True)
# the label counts of the bundled specs' training data (their classes[auto] / multilabel[auto]), so that the code
# snapshotted is the code they train with
LEARNED = {"debian_depends.bolt": ir.Learned(labels=38077), "debian_graph.bolt": ir.Learned(labels=58),
           "debian_section.bolt": ir.Learned(labels=58), "debtags.bolt": ir.Learned(labels=487),
           "movielens_next.bolt": ir.Learned(labels=9031),
           "debian_sizes.bolt": ir.Learned(labels=58, bins=(("unpacked", (8.0, 40.0, 210.5, 1e4)),
                                                             ("packed", (1024.0, 65536.0))))}


def _digests() -> dict[str, str]:
    digests = {}
    variants = Path(__file__).with_name("variants")
    for path in sorted((REPO / "specs").glob("*.bolt")) + sorted(variants.glob("*.bolt")):
        source = emit(plan_spec(path, machine=FIXED_MACHINE, learned=LEARNED.get(path.name)))
        text = source.c_text + source.cdef + repr(source.buffers)
        digests[path.name] = hashlib.sha256(text.encode()).hexdigest()
    return digests


def test_the_generated_code_of_every_bundled_spec_matches_its_snapshot(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    digests = _digests()
    if os.environ.get("BOLTC_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(SNAPSHOTS.read_text())
    moved = sorted(name for name in digests.keys() | recorded.keys() if digests.get(name) != recorded.get(name))
    if moved:
        pytest.fail(f"the generated code of {', '.join(moved)} differs from tests/emit/snapshots.json: if that is "
                    "meant, rewrite it with BOLTC_UPDATE_SNAPSHOTS=1 and say why")
