"""Many processes and threads at once: concurrent compiles share one cache entry, a damaged or exposed cache is
never loaded from, and threads sharing one model get the answers serial calls get."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import boltc
from boltc import checkpoint
from boltc.data import from_arrays
from boltc.diagnostics import BuildError

SPEC = """\
model shared {
    input  x: dense[12]
    target y: classes[7]
    h = dense(x, 16, activation=relu)
    o = dense(h, 7, activation=softmax)
    loss cross_entropy(o, y)
    train { batch_size = 16, seed = 3 }
}
"""
SPARSE_OUTPUT = """\
model wide {
    input  words: sparse[300]
    target item: classes[2000]
    h = dense(words, 32, activation=relu)
    o = dense(h, 2000, activation=softmax, sparsity=0.05)
    loss cross_entropy(o, item)
    train { batch_size = 32, seed = 5 }
}
"""


def _entries(cache: Path) -> list[Path]:
    return sorted(p.parent for p in cache.glob("v1/*/*/meta.json"))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache of this test's own, empty at the start."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BOLTC_CACHE_DIR", str(cache))
    return cache


def test_eight_processes_compiling_one_spec_all_succeed_and_leave_one_entry(write_spec, own_cache, tmp_path):
    spec = write_spec(SPEC, "shared.bolt")
    # each child waits for the go file, so that all eight compile at once
    go = tmp_path / "go"
    child = textwrap.dedent(f"""
        import os, sys, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        import boltc
        model = boltc.load({str(spec)!r})
        print(model.library.key)
    """)
    children = [subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(8)]
    go.touch()
    outcomes = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0] * 8, [err for _, err in outcomes]
    keys = {out.strip() for out, _ in outcomes}
    assert len(keys) == 1
    assert [entry.name for entry in _entries(own_cache)] == list(keys)
    assert not list((own_cache / "tmp").iterdir())  # every build's scratch folder is gone


def test_cache_folders_are_user_only(write_spec, own_cache):
    model = boltc.load(write_spec(SPEC, "shared.bolt"))
    entry = model.library.so_path.parent
    for folder in (own_cache, own_cache / "v1", entry.parent, entry, own_cache / "tmp"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


@pytest.mark.parametrize("damage", ["garbage", "flipped byte"])
def test_a_damaged_cached_library_is_rebuilt(write_spec, own_cache, damage):
    spec = write_spec(SPEC, "shared.bolt")
    so_path = boltc.load(spec).library.so_path
    good = so_path.read_bytes()
    # a new file renamed over the library, not the library rewritten: this process has it mapped, and its pages
    # cut short under it would end this process (SIGBUS) at its next touch of them
    damaged = so_path.with_name(so_path.name + ".damaged")
    if damage == "garbage":
        damaged.write_bytes(b"\x7fELF not really")
    else:  # still a loadable library, but not the one that was built
        damaged.write_bytes(good[:-100] + bytes([good[-100] ^ 0xFF]) + good[-99:])
    os.replace(damaged, so_path)
    # new processes: this one has the module imported already
    load = [sys.executable, "-c", f"import boltc; boltc.load({str(spec)!r})"]
    result = subprocess.run(load, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"boltc: cached library {so_path} does not match the checksum it was built with; rebuilding" \
        in result.stderr
    recorded = json.loads((so_path.parent / "meta.json").read_text())["sha256"]
    assert recorded == hashlib.sha256(so_path.read_bytes()).hexdigest()
    again = subprocess.run(load, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "rebuilding" not in again.stderr, again.stderr


def test_a_cache_folder_others_can_write_is_made_private_and_its_libraries_rebuilt(write_spec, own_cache):
    spec = write_spec(SPEC, "shared.bolt")
    so_path = boltc.load(spec).library.so_path
    built_at = json.loads((so_path.parent / "meta.json").read_text())["built_at"]
    os.chmod(so_path.parent.parent, 0o777)
    result = subprocess.run([sys.executable, "-c", f"import boltc; boltc.load({str(spec)!r})"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"boltc: made the compile cache folder {so_path.parent.parent} private (others could write to it)" \
        in result.stderr
    assert stat.S_IMODE(so_path.parent.parent.stat().st_mode) == 0o700
    assert json.loads((so_path.parent / "meta.json").read_text())["built_at"] > built_at  # not trusted: rebuilt


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a folder away needs root")
def test_a_cache_folder_of_another_user_is_refused(write_spec, own_cache):
    spec = write_spec(SPEC, "shared.bolt")
    entry = boltc.load(spec).library.so_path.parent
    os.chown(entry, 65534, 65534)
    with pytest.raises(BuildError) as caught:
        boltc.load(spec)
    assert str(caught.value) == (f"the compile cache folder {entry} belongs to another user; boltc will not load "
                                 "code from it: set BOLTC_CACHE_DIR to a folder of your own")


def test_a_library_others_can_write_is_rebuilt_not_loaded(write_spec, own_cache):
    spec = write_spec(SPEC, "shared.bolt")
    so_path = boltc.load(spec).library.so_path
    os.chmod(so_path, 0o777)
    result = subprocess.run([sys.executable, "-c", f"import boltc; boltc.load({str(spec)!r})"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "is missing, someone else's or writable by others; rebuilding" in result.stderr
    assert stat.S_IMODE(so_path.stat().st_mode) == 0o755


def _trained(write_spec, text: str, name: str, n_features: int, n_labels: int, rows: int = 400):
    model = boltc.load(write_spec(text, name))
    rng = np.random.default_rng(7)
    if "sparse[" in text:
        import scipy.sparse as sp
        features = sp.random(rows, n_features, density=0.03, format="csr", random_state=7, dtype=np.float32)
        features.data[:] = 1.0
    else:
        features = rng.normal(size=(rows, n_features)).astype(np.float32)
    data = from_arrays(features, rng.integers(0, n_labels, size=rows), n_features=n_features, n_labels=n_labels)
    model.fit(data, epochs=2, progress=False)
    return model, data


@pytest.mark.parametrize(("text", "sizes"), [(SPEC, (12, 7)), (SPARSE_OUTPUT, (300, 2000))],
                         ids=["dense", "lsh-sparse"])
def test_eight_threads_predicting_at_once_get_the_serial_answers(write_spec, text, sizes):
    model, data = _trained(write_spec, text, "threads.bolt", *sizes)
    sparse = bool(model.sparse_layers)
    serial = model.predict(data, top_k=5, progress=False)
    serial_sparse = model.predict(data, top_k=5, sparse=True, progress=False) if sparse else None
    serial_metrics = model.evaluate(data, metrics=["precision@1", "loss"], progress=False)

    def work(worker: int):
        if worker % 3 == 0:
            return "evaluate", model.evaluate(data, metrics=["precision@1", "loss"], progress=False)
        if sparse and worker % 3 == 1:
            return "sparse", model.predict(data, top_k=5, sparse=True, progress=False)
        return "dense", model.predict(data, top_k=5, progress=False)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(32)))
    for kind, result in results:
        if kind == "evaluate":
            assert result == serial_metrics
        else:
            expected = serial_sparse if kind == "sparse" else serial
            np.testing.assert_array_equal(result[0], expected[0])
            np.testing.assert_array_equal(result[1], expected[1])


TRAIN_AND_SAVE = """
import sys
import numpy as np
import scipy.sparse as sp
import boltc
model = boltc.load(sys.argv[1])
rng = np.random.default_rng(11)
x = sp.random(600, 300, density=0.03, format="csr", dtype=np.float32, random_state=11)
model.fit((x, rng.integers(0, 2000, size=600)), epochs=2, progress=False)
print(model.threads)
model.save(sys.argv[2])
"""


def test_training_under_omp_num_threads_1_and_2_gives_identical_models(write_spec, tmp_path):
    spec = write_spec(SPARSE_OUTPUT, "wide.bolt")
    saved = {}
    for threads in ("1", "2"):
        path = tmp_path / f"threads{threads}.boltm"
        result = subprocess.run([sys.executable, "-c", TRAIN_AND_SAVE, str(spec), str(path)], capture_output=True,
                                text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": threads})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == threads  # the plan took the environment's thread count
        saved[threads] = checkpoint.read_model_file(path)[1]
    assert saved["1"].keys() == saved["2"].keys()
    for name, array in saved["1"].items():
        np.testing.assert_array_equal(saved["2"][name], array, err_msg=name)


def test_sanitizer_builds_take_only_known_sanitizers(monkeypatch):
    from boltc.build import compile_flags
    from boltc.machine import probe

    monkeypatch.setenv("BOLTC_SANITIZE", "undefined")
    cflags, ldflags = compile_flags(probe())
    assert "-fsanitize=undefined" in cflags and "-fsanitize=undefined" in ldflags
    monkeypatch.setenv("BOLTC_SANITIZE", "address,memory")
    with pytest.raises(BuildError) as caught:
        compile_flags(probe())
    assert str(caught.value) == "BOLTC_SANITIZE: unknown sanitizer memory (known: address, undefined)"
