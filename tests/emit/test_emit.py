"""Generated C: deterministic, warning-free with and without OpenMP, free of spec identifiers, and annotated with
where each part came from."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from boltc.check import check
from boltc.emit import c_comment, emit, module_slug
from boltc.machine import probe
from boltc.parse import parse
from boltc.plan import plan
from boltc.resources import runtime_dir

REPO = Path(__file__).resolve().parents[2]

SPEC = """\
model m {
    input  x: sparse[40]
    input  d: dense[3]
    target y: multilabel[9]
    a = dense(x, 17, activation=relu)
    b = dense(a, 5, activation=tanh, bias=false)
    c = concat(b, d, a)
    o = dense(c, 9, activation=sigmoid)
    loss binary_cross_entropy(o, y)
    optimizer OPT
}
"""


def source_for(text: str, path: str = "dir/my model.bolt", real_type: str = "float"):
    return emit(plan(check(parse(text, path)), probe(), real_type=real_type))


VARIANTS = {
    "adam-float": SPEC.replace("OPT", "adam(learning_rate=0.01)"),
    "sgd-float": SPEC.replace("OPT", "sgd(learning_rate=0.1)"),
    "softmax-dense": "model f {\n input p: dense[784]\n target l: classes[10]\n h = dense(p, 256, activation=relu)\n"
                     " s = dense(h, 10, activation=softmax)\n loss cross_entropy(s, l)\n}\n",
    "lsh-sparse-output": "model x {\n input p: sparse[300]\n target l: multilabel[1000]\n"
                         " h = dense(p, 33, activation=relu)\n s = dense(h, 1000, activation=softmax, sparsity=0.05)\n"
                         " loss cross_entropy(s, l)\n}\n",
    "srp-sparse-output": "model x {\n input p: dense[30]\n target l: classes[700]\n"
                         " h = dense(p, 17, activation=tanh)\n"
                         " s = dense(h, 700, activation=softmax, sparsity=0.1, sampling=srp(hashes=5))\n"
                         " loss cross_entropy(s, l)\n optimizer sgd(learning_rate=0.1)\n}\n",
    "sparse-bce-frozen": "model x {\n input p: sparse[300]\n target l: multilabel[900]\n"
                         " h = dense(p, 20, activation=relu)\n s = dense(h, 900, activation=sigmoid, sparsity=0.05)\n"
                         " loss binary_cross_entropy(s, l)\n train { freeze_tables_after = 2 }\n}\n",
    "bf16-sparse-output": "model x {\n input p: sparse[300]\n target l: multilabel[1000]\n"
                          " h = dense(p, 33, activation=relu)\n"
                          " s = dense(h, 1000, activation=softmax, sparsity=0.05, precision=bf16)\n"
                          " loss cross_entropy(s, l)\n}\n",
}


def strip_comments(c_text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", c_text, flags=re.S)


def test_render_is_deterministic():
    assert source_for(VARIANTS["adam-float"]).c_text == source_for(VARIANTS["adam-float"]).c_text


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("real_type", ["float", "double"])
@pytest.mark.parametrize("openmp", [True, False], ids=["openmp", "serial"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_generated_c_compiles_cleanly(tmp_path, variant, openmp, real_type):
    source = source_for(VARIANTS[variant], real_type=real_type)
    path = tmp_path / "module.c"
    path.write_text(source.c_text)
    compiler = probe().compiler
    flags = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror", "-O2", "-c"]
    if probe().native_flag:  # the machine's own extensions, as boltc builds: AVX-512 and AMX code where it has them
        flags.append("-mcpu=native" if probe().arch in ("arm64", "aarch64") else "-march=native")
    if openmp and probe().openmp:
        flags.append("-fopenmp")
    done = subprocess.run([*compiler, *flags, f"-I{runtime_dir()}", str(path), "-o", str(tmp_path / "m.o")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if shutil.which("nm"):
        symbols = subprocess.run(["nm", "-g", "--defined-only", str(tmp_path / "m.o")], capture_output=True,
                                 text=True).stdout.split()
        exported = sorted(s for s in symbols if re.fullmatch(r"[A-Za-z_]\w*", s) and s.startswith("bolt"))
        assert exported == ["bolt_collect_share", "bolt_find_heavy", "bolt_infer_batch", "bolt_rebuild", "bolt_step_shares",
                            "bolt_train_batch"]


HOSTILE = ["int", "main", "__attribute__", "bolt_train_batch", "SLOT_L0_WEIGHTS", "größe", "x" * 10000, "_Pragma"]


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: n[:20])
def test_spec_identifiers_never_reach_c(name):
    text = (f"model {name} {{\n input {name}: dense[4]\n target t: classes[3]\n"
            f" {name}_h = dense({name}, 5, activation=relu)\n o = dense({name}_h, 3, activation=softmax)\n"
            " loss cross_entropy(o, t)\n}\n")
    hostile = source_for(text).c_text
    plain = source_for(text.replace(name, "q")).c_text
    # Names change only comments: with comments removed the two programs are identical.
    assert strip_comments(hostile) == strip_comments(plain)


def test_comments_cannot_be_closed_from_the_spec():
    assert c_comment("a */ int x; /* b") == "a * / int x; / * b"
    assert c_comment("line\nbreak\x00") == "line break "
    assert "??" not in c_comment("trigraph ??/")
    assert c_comment("y" * 200).endswith("...") and len(c_comment("y" * 200)) == 80


def test_module_slug_is_a_c_identifier_fragment():
    assert module_slug("dir/My Model!.bolt") == "my_model"
    assert module_slug("日本.bolt") == "model"
    assert re.fullmatch(r"[a-z0-9_]{1,24}", module_slug("x" * 100 + ".bolt"))


def test_banners_cite_spec_lines_and_every_size_is_a_constant():
    text = source_for(VARIANTS["adam-float"]).c_text
    assert "layer 0: dense 'a' (my model.bolt:5)" in text
    assert "layer 2: concat 'c' (my model.bolt:7)" in text
    assert "enum { L0_IN = 40, L0_OUT = 17, L0_TILE = 17, L0_IN_TILE = 40 };" in text
    assert "enum { L2_OUT = 25 };" in text
    assert "BATCH_SIZE = 256" in text


def test_buffer_table_matches_slots():
    source = source_for(VARIANTS["adam-float"])
    names = [b.name for b in source.buffers]
    assert names[:8] == ["l0.weights", "l0.bias", "l0.weights_m", "l0.weights_v", "l0.bias_m", "l0.bias_v",
                         "l0.act", "l0.grad"]
    assert [b.slot for b in source.buffers] == list(range(len(names)))
    for buffer in source.buffers:
        assert f"SLOT_L{buffer.layer}_{buffer.role.upper()} = {buffer.slot}," in source.c_text
    sgd = source_for(VARIANTS["sgd-float"])
    assert not any(b.kind == "optimizer" for b in sgd.buffers)


def test_the_emitted_c_does_not_depend_on_pythons_hash_seed(tmp_path):
    """Every bundled spec's C text, its cdef and its buffer list are the same in two processes whose str hashes
    differ: an iteration over a set or a hash-ordered dict would otherwise change the cache key, or the code."""
    script = (
        "import hashlib, pathlib, sys\n"
        "from boltc.emit import emit\n"
        "from boltc.machine import probe\n"
        "from boltc.pipeline import plan_spec\n"
        "machine = probe()\n"
        "for path in sorted(pathlib.Path(sys.argv[1]).glob('*.bolt')):\n"
        "    source = emit(plan_spec(path, machine=machine))\n"
        "    text = source.c_text + source.cdef + repr(source.buffers)\n"
        "    print(path.name, hashlib.sha256(text.encode()).hexdigest())\n")
    digests = []
    for seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", script, str(REPO / "specs")], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}, timeout=300)
        assert done.returncode == 0, done.stderr
        digests.append(done.stdout)
    assert digests[0].count("\n") == len(list((REPO / "specs").glob("*.bolt"))) > 0
    assert digests[0] == digests[1]
