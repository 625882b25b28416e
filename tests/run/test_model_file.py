"""Saving and loading models: bit-exact round trips, atomic replacement, clear refusals."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import boltc
from boltc import checkpoint
from boltc.data import from_arrays
from boltc.diagnostics import ModelFileError

SPEC = """\
model saver {
    input  x: dense[6]
    target y: classes[3]
    h = dense(x, 5, activation=relu)
    o = dense(h, 3, activation=softmax)
    loss cross_entropy(o, y)
    train { batch_size = 8, seed = 2 }
}
"""


@pytest.fixture
def trained(write_spec):
    model = boltc.load(write_spec(SPEC, "saver.bolt"))
    rng = np.random.default_rng(0)
    data = from_arrays(rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 3, size=40), n_features=6,
                       n_labels=3)
    model.fit(data, epochs=2)
    return model, data


def test_round_trip_is_bit_exact_and_training_resumes_identically(trained, tmp_path):
    model, data = trained
    path = tmp_path / "m.boltm"
    model.save(path)
    restored = boltc.load_model(path)
    for buffer in model.buffers:
        if buffer.kind != "scratch":
            np.testing.assert_array_equal(restored.arrays[buffer.name], model.arrays[buffer.name], err_msg=buffer.name)
    assert (restored.step, restored.epochs_trained) == (model.step, model.epochs_trained)
    model.fit(data, epochs=1)
    restored.fit(data, epochs=1)
    for name, array in model.parameters().items():
        np.testing.assert_array_equal(restored.arrays[name], array, err_msg=name)


def test_failed_save_leaves_the_old_file(trained, tmp_path, monkeypatch):
    model, _ = trained
    path = tmp_path / "m.boltm"
    model.save(path)
    old = path.read_bytes()
    model.arrays["l0.weights"] += 1

    def crash(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(ModelFileError):
        model.save(path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.boltm", "saver.bolt"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b[:-10], "truncated model file (array 'scaling.0.inverse_std' is cut short)"),
    (lambda b: b[:-10] + bytes([b[-10] ^ 1]) + b[-9:], "corrupted model file (checksum mismatch)"),
    (lambda b: b"XXXXXXXX" + b[8:], "not a boltc model file (wrong magic bytes)"),
    (lambda b: b[:30], "truncated model file (header cut short)"),
    # the header length's top byte: the length would be 2^56 more, past the end of the file
    (lambda b: b[:15] + b"\x01" + b[16:], "truncated model file (header cut short)"),
    # one byte of the spec inside the header: its own checksum catches it before the spec is compiled
    (lambda b: b.replace(b"dense(x, 5", b"dense(x, 6", 1), "corrupted model file (header checksum mismatch)"),
])
def test_damaged_files_are_refused(trained, tmp_path, mutate, message):
    model, _ = trained
    path = tmp_path / "m.boltm"
    model.save(path)
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(ModelFileError) as caught:
        boltc.load_model(path)
    assert str(caught.value) == f"{path}: {message}"


def test_wrong_version_and_wrong_spec_are_refused(trained, tmp_path):
    model, _ = trained
    header, arrays = checkpoint.read_model_file(_saved(model, tmp_path))
    future = tmp_path / "future.boltm"
    checkpoint.write_model_file(future, {**header}, arrays)
    data = future.read_bytes().replace(b'"format_version": 3', b'"format_version": 9')
    future.write_bytes(data)
    with pytest.raises(ModelFileError, match="model file format 9 is not supported"):
        boltc.load_model(future)
    other = tmp_path / "other.boltm"
    header["spec_source"] = header["spec_source"].replace("dense(x, 5", "dense(x, 4").replace("dense(h, 3",
                                                                                             "dense(h, 3")
    checkpoint.write_model_file(other, header, arrays)
    with pytest.raises(ModelFileError, match=r"array 'l0.weights' has shape \(6, 5\), the spec needs \(6, 4\)"):
        boltc.load_model(other)


def test_a_saved_spec_that_does_not_compile_is_refused(trained, tmp_path):
    model, _ = trained
    header, arrays = checkpoint.read_model_file(_saved(model, tmp_path))
    broken = tmp_path / "broken.boltm"
    checkpoint.write_model_file(broken, {**header, "spec_source": header["spec_source"].replace("relu", "rleu")},
                                arrays)
    with pytest.raises(ModelFileError) as caught:
        boltc.load_model(broken)
    assert str(caught.value).startswith(f"{broken}: the spec saved in the file does not compile: ")
    assert "rleu" in str(caught.value)


@pytest.mark.parametrize(("field", "value"), [("dtype", "|O"), ("shape", [float("inf")]), ("shape", [2.5, 3]),
                                              ("offset", -64), ("nbytes", "many")])
def test_an_unusable_array_table_is_refused(trained, tmp_path, field, value):
    model, _ = trained
    path = _saved(model, tmp_path)
    header, payload_at = checkpoint.read_header(path)
    header["arrays"][0][field] = value
    with pytest.raises(ModelFileError, match=r"corrupted model file \(bad array table\)"):
        checkpoint.read_arrays(path, header, payload_at)


def test_a_header_nested_past_the_stack_is_refused(tmp_path):
    deep = b"[" * 100_000
    path = tmp_path / "deep.boltm"
    path.write_bytes(checkpoint.MAGIC + struct.pack("<Q", len(deep)) + deep + bytes(checkpoint.DIGEST_BYTES))
    with pytest.raises(ModelFileError, match=r"corrupted model file \(header checksum mismatch\)"):
        boltc.load_model(path)


KILL_TRIALS = 12
SAVER = """
import sys
import boltc
model = boltc.load_model(sys.argv[1])
version = 0
while True:
    version += 1
    model.arrays["l0.bias"][...] = version  # each save's file says which it is
    print(version, flush=True)
    model.save(sys.argv[1])
"""


def test_a_save_killed_at_any_point_leaves_the_old_or_the_new_file(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "m.boltm"
    model.arrays["l0.bias"][...] = 0  # version 0
    model.save(path)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(KILL_TRIALS):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(int(rng.integers(1, 4))):  # let it save a few times, then kill it somewhere in a save
            saver.stdout.readline()
        time.sleep(float(rng.uniform(0, 0.004)))
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        restored = boltc.load_model(path)  # never a half-written file
        bias = restored.arrays["l0.bias"]
        assert (bias == bias[0]).all()
        seen.add(float(bias[0]))
    assert len(seen) > 1  # the kills landed at different points, and the file moved on


def test_a_save_clears_what_killed_saves_left_behind(trained, tmp_path):
    model, _ = trained
    abandoned, running = tmp_path / ".m.boltm.abc123.tmp", tmp_path / ".m.boltm.def456.tmp"
    other = tmp_path / ".other.boltm.abc123.tmp"
    for leftover in (abandoned, running, other):
        leftover.write_bytes(b"half a model")
    two_hours_ago = time.time() - 7200
    for old in (abandoned, other):
        os.utime(old, (two_hours_ago, two_hours_ago))
    model.save(tmp_path / "m.boltm")
    assert not abandoned.exists()
    assert running.exists() and other.exists()  # perhaps a save still writing; another file's


def _saved(model, tmp_path):
    path = tmp_path / "base.boltm"
    model.save(path)
    return path


def test_no_pickle_anywhere_in_boltc():
    """Model files, caches and tuning records are JSON and raw arrays: nothing boltc reads can run code."""
    package = Path(boltc.__file__).resolve().parent
    uses = [f"{source.name}:{number}" for source in sorted(package.glob("*.py"))
            for number, line in enumerate(source.read_text().splitlines(), 1)
            if re.search(r"\bimport (c?pickle|marshal|shelve)\b|allow_pickle|np\.load\(|torch\.load\(", line)]
    assert uses == []
