"""Models saved for inference only: no optimizer state, the LSH tables as they were, mapped when loaded; they predict
exactly as the model they were saved from, refuse to train, and refuse tables that would index outside their arrays
in C."""

from __future__ import annotations

import numpy as np
import pytest

import boltc
from boltc import checkpoint
from boltc.diagnostics import ModelFileError, UsageError

# an LSH-sparse output reading a ReLU layer, and the rewriting of a saved file's arrays with valid checksums
from test_model_file_contents import LSH_SPEC, _rewritten, _rows, _set  # noqa: E402 (tests/run is on the path)


@pytest.fixture
def trained(write_spec):
    model = boltc.load(write_spec(LSH_SPEC, "hashed.bolt"), tune=False)
    model.fit(_rows(512, 1), epochs=2)
    return model


def _saved(model, tmp_path, name="served.boltm"):
    path = tmp_path / name
    model.save(path, inference_only=True)
    return path


def test_an_inference_only_file_predicts_exactly_as_its_model(trained, tmp_path):
    path = _saved(trained, tmp_path)
    header, _ = checkpoint.read_header(path)
    stored = {entry["name"] for entry in header["arrays"]}
    assert {"l1.weights", "l1.bias", "l1.table_offsets", "l1.table_ids", "l1.lsh_order"} <= stored
    assert not {name for name in stored if name.endswith(("_m", "_v"))}, "optimizer state was saved"

    loaded = boltc.load_model(path)
    assert loaded.inference_only
    assert isinstance(loaded.arrays["l1.weights"], np.memmap)  # mapped, not read
    features, labels = _rows(100, 7)
    for sparse in (False, True):
        want_ids, want_scores = trained.predict(features, top_k=5, sparse=sparse)
        got_ids, got_scores = loaded.predict(features, top_k=5, sparse=sparse)
        np.testing.assert_array_equal(got_ids, want_ids)
        np.testing.assert_array_equal(got_scores, want_scores)
    assert loaded.evaluate((features, labels)) == trained.evaluate((features, labels))


def test_it_refuses_to_train_and_saves_for_inference_again(trained, tmp_path):
    loaded = boltc.load_model(_saved(trained, tmp_path))
    with pytest.raises(UsageError) as caught:
        loaded.fit(_rows(64, 2), epochs=1)
    assert str(caught.value) == ("model 'hashed' was saved for inference only (no optimizer state): it cannot be "
                                 "trained; load the full model file to train on")
    again = tmp_path / "again.boltm"
    loaded.save(again)
    header, arrays = checkpoint.read_model_file(again)
    assert header["inference_only"] is True
    for name, array in arrays.items():
        np.testing.assert_array_equal(array, trained.arrays[name], err_msg=name)


def test_every_model_file_keeps_its_arrays_at_64_byte_boundaries(trained, tmp_path):
    for inference_only in (False, True):
        path = tmp_path / f"m{inference_only}.boltm"
        trained.save(path, inference_only=inference_only)
        header, payload_at = checkpoint.read_header(path)
        assert payload_at % 64 == 0
        assert all(entry["offset"] % 64 == 0 for entry in header["arrays"])


@pytest.mark.parametrize(("name", "change", "message"), [
    ("l1.table_ids", _set((3, 17), 300), "array 'l1.table_ids' holds ids outside the layer's neurons (0 to 299)"),
    ("l1.table_ids", _set((0, 0), -1), "array 'l1.table_ids' holds ids outside the layer's neurons (0 to 299)"),
    ("l1.table_offsets", _set((2, 5), 10 ** 6),
     "array 'l1.table_offsets' is not the bucket offsets of tables of its width"),
    ("l1.table_offsets", _set((1, 0), 4), "array 'l1.table_offsets' is not the bucket offsets of tables of its width"),
])
def test_tables_that_would_index_outside_their_arrays_are_refused(trained, tmp_path, name, change, message):
    bad = _rewritten(_saved(trained, tmp_path), tmp_path, name, change)
    with pytest.raises(ModelFileError) as caught:
        boltc.load_model(bad)
    assert str(caught.value) == f"{bad}: {message}"


def test_an_inference_only_model_is_never_saved_as_a_trainable_one(trained, tmp_path):
    loaded = boltc.load_model(_saved(trained, tmp_path))
    with pytest.raises(UsageError) as caught:
        loaded.save(tmp_path / "full.boltm", inference_only=False)
    assert str(caught.value) == ("model 'hashed' was loaded from a file saved for inference only: it has no "
                                 "optimizer state to save (save it with inference_only=True)")
    assert not (tmp_path / "full.boltm").exists()
