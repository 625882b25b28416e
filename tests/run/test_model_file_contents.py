"""Model files are checked for their contents, not only their bytes: a file whose checksums hold but whose hash
coordinates, neuron order, moments or parameters no boltc writer makes is a clean ModelFileError, never a crash in C
or NaN predictions. The fuzz test rewrites decoded arrays of a saved LSH model with hostile values and loads each
file in a child process, so that a crash fails the test instead of ending the run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import boltc
from boltc import checkpoint
from boltc.diagnostics import ModelFileError
from boltc.saved_contents import check_ragged

# an LSH-sparse output reading a ReLU layer: DWTA coordinates and a neuron order are saved with it
LSH_SPEC = """\
model hashed {
    input x: dense[8, standardize=false]
    target y: classes[300]
    h = dense(x, 16, activation=relu)
    o = dense(h, 300, activation=softmax, sparsity=0.1)
    loss cross_entropy(o, y)
    train { batch_size = 32, epochs = 1, seed = 5 }
}
"""


def _rows(count: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, 8)).astype(np.float32), rng.integers(0, 300, size=count)


@pytest.fixture
def saved_lsh(write_spec, tmp_path):
    model = boltc.load(write_spec(LSH_SPEC, "hashed.bolt"), tune=False)
    model.fit(_rows(256, 1))
    path = tmp_path / "hashed.boltm"
    model.save(path)
    return path


def _rewritten(path, tmp_path, name: str, change) -> object:
    header, arrays = checkpoint.read_model_file(path)
    arrays = {key: value.copy() for key, value in arrays.items()}
    change(arrays[name])
    out = tmp_path / f"changed-{name}.boltm"
    checkpoint.write_model_file(out, header, arrays)  # checksums of the changed arrays: only the contents are wrong
    return out


def _set(index, value):
    def change(array):
        array[index] = value
    return change


@pytest.mark.parametrize("name, change, message", [
    ("l1.lsh_coords", _set(0, 10**8), "array 'l1.lsh_coords' holds ids outside the layer's input coordinates (0 to 15)"),
    ("l1.lsh_coords", _set(5, -1), "array 'l1.lsh_coords' holds ids outside the layer's input coordinates (0 to 15)"),
    ("l1.lsh_order", _set(3, 300), "array 'l1.lsh_order' holds ids outside the layer's neurons (0 to 299)"),
    ("l1.lsh_order", lambda a: a.__setitem__(1, a[0]), "array 'l1.lsh_order' is not an order of the layer's 300 "
                                                         "neurons (each once)"),
    ("l1.weights", _set((7, 2), np.nan), "array 'l1.weights' holds infinite or NaN values"),
    ("l0.bias", _set(0, np.inf), "array 'l0.bias' holds infinite or NaN values"),
    ("l1.weights_v", _set((0, 0), -1.0), "array 'l1.weights_v' holds negative second moments"),
])
def test_out_of_range_contents_are_refused_by_name(saved_lsh, tmp_path, name, change, message):
    changed = _rewritten(saved_lsh, tmp_path, name, change)
    with pytest.raises(ModelFileError) as caught:
        boltc.load_model(changed)
    assert str(caught.value) == f"{changed}: {message}"


@pytest.mark.parametrize("family, name, message", [
    ("minhash", "l1.lsh_coords", "array 'l1.lsh_coords' holds ids outside the layer's input coordinates (0 to 15)"),
    ("srp", "l1.lsh_planes", "array 'l1.lsh_planes' holds hyperplane entries other than -1 and 1"),
])
def test_every_hash_familys_functions_are_checked_by_the_family(write_spec, tmp_path, family, name, message):
    model = boltc.load(write_spec(LSH_SPEC.replace("sparsity=0.1)", f"sparsity=0.1, sampling={family}())"),
                                  "hashed.bolt"), tune=False)
    model.fit(_rows(64, 1))
    path = tmp_path / "hashed.boltm"
    model.save(path)
    boltc.load_model(path)  # as written, it passes
    changed = _rewritten(path, tmp_path, name, _set(0, 10**8))
    with pytest.raises(ModelFileError) as caught:
        boltc.load_model(changed)
    assert str(caught.value) == f"{changed}: {message}"


def test_a_file_boltc_wrote_passes_its_checks_unchanged(saved_lsh, tmp_path):
    same = _rewritten(saved_lsh, tmp_path, "l1.lsh_coords", lambda array: None)
    x, _ = _rows(20, 2)
    np.testing.assert_array_equal(boltc.load_model(same).predict(x, top_k=3, sparse=True)[0],
                                  boltc.load_model(saved_lsh).predict(x, top_k=3, sparse=True)[0])


FUZZ_CHILD = """
import json, sys
import numpy as np
import boltc
from boltc.diagnostics import ModelFileError
x = np.random.default_rng(3).normal(size=(40, 8)).astype(np.float32)
outcomes = []
for path in sys.argv[1:]:
    try:
        model = boltc.load_model(path)
    except ModelFileError:
        outcomes.append("refused")
        continue
    for sparse in (False, True):
        ids, scores = model.predict(x, top_k=5, sparse=sparse)
        assert ((ids >= 0) & (ids < 300)).all() and np.isfinite(scores).all(), path
    outcomes.append("loaded")
print(json.dumps(outcomes))
"""

HOSTILE = (-1, 1, 2**31 - 1, -2**31, 10**8, 15, 16, 299, 300, np.nan, np.inf, -np.inf, -1e30, 1e30, 0)


def test_hostile_values_in_any_saved_array_are_refused_or_harmless(saved_lsh, tmp_path):
    header, arrays = checkpoint.read_model_file(saved_lsh)
    names = sorted(arrays)
    rng = np.random.default_rng(11)
    paths = []
    for trial in range(48):
        name = names[trial % len(names)]
        changed = {key: value.copy() for key, value in arrays.items()}
        flat = changed[name].reshape(-1)
        for position in rng.choice(flat.size, size=min(flat.size, int(rng.integers(1, 4))), replace=False):
            value = HOSTILE[int(rng.integers(len(HOSTILE)))]
            if flat.dtype.kind in "iu":
                info = np.iinfo(flat.dtype)
                value = 0 if not np.isfinite(value) else int(min(max(value, info.min), info.max))
            flat[position] = value
        path = tmp_path / f"fuzz-{trial}.boltm"
        checkpoint.write_model_file(path, header, changed)
        paths.append(str(path))
    done = subprocess.run([sys.executable, "-c", FUZZ_CHILD, *paths], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(outcomes) == len(paths) and "refused" in outcomes and "loaded" in outcomes


@pytest.mark.parametrize("indptr, values", [([0, 2, 1, 3], 3), ([1, 2, 3, 3], 3), ([0, 1, 2, 4], 3), ([0, 1, 3], 3)])
def test_saved_offsets_that_do_not_partition_their_values_are_refused(indptr, values):
    """History and neighbour stores: three rows' offsets into `values` items (one too few offsets in the last case)."""
    with pytest.raises(ModelFileError, match="array 'history.0.indptr' is not the offsets of 3 rows into 3 values"):
        check_ragged("m.boltm", "history.0.indptr", np.array(indptr, dtype=np.int64), 3, values)
    check_ragged("m.boltm", "history.0.indptr", np.array([0, 1, 1, 3], dtype=np.int64), 3, 3)  # an empty row is fine
