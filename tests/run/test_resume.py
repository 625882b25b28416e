"""Training resumed equals training that went on: fit(2) then fit(2), and fit(2), save, load, fit(2), end with the
same parameters, optimizer state and tables, bit for bit, as fit(4), for LSH-sparse outputs and hidden layers,
sparse inputs and frozen tables (whose inserted labels a saved file carries)."""

from __future__ import annotations

import numpy as np
import pytest

import boltc

def _spec(layers: str, train: str = "") -> str:
    """An LSH-sparse output `o` over `layers` (which end in one named `top`) of a dense input."""
    return f"""\
model resumed {{
    input x: dense[8, standardize=false]
    target y: classes[300]
    {layers}
    o = dense(top, 300, activation=softmax, sparsity=0.1)
    loss cross_entropy(o, y)
    train {{ batch_size = 32, seed = 5{train} }}
}}
"""


SPECS = {
    "dwta output": _spec("top = dense(x, 16, activation=relu)"),
    "sparse hidden layer": _spec("h = dense(x, 400, activation=relu, sparsity=0.05, sampling=minhash())\n"
                                 "    top = dense(h, 16, activation=relu)"),
    "frozen tables": _spec("top = dense(x, 16, activation=relu)", ", freeze_tables_after = 1"),
}


def _rows(count: int):
    rng = np.random.default_rng(3)
    return rng.normal(size=(count, 8)).astype(np.float32), rng.integers(0, 300, size=count)


def _state(model) -> dict[str, np.ndarray]:
    return {spec.name: model.arrays[spec.name].copy() for spec in model.buffers
            if spec.kind in ("parameter", "optimizer", "hash", "table")}


def _fit(model, data, epochs: int) -> None:
    model.fit(data, epochs=epochs, learning_rate=0.01, validation=False)


@pytest.mark.parametrize("spec", list(SPECS), ids=list(SPECS))
def test_resumed_training_equals_training_that_went_on(spec, write_spec, tmp_path):
    path = write_spec(SPECS[spec], "resumed.bolt")
    data = _rows(600)
    went_on = boltc.load(path, tune=False)
    _fit(went_on, data, 4)
    want = _state(went_on)

    in_memory = boltc.load(path, tune=False)
    _fit(in_memory, data, 2)
    _fit(in_memory, data, 2)
    reloaded = boltc.load(path, tune=False)
    _fit(reloaded, data, 2)
    reloaded.save(tmp_path / "half.boltm")
    reloaded = boltc.load_model(tmp_path / "half.boltm")
    _fit(reloaded, data, 2)
    for resumed, how in ((in_memory, "fit twice"), (reloaded, "saved and loaded")):
        assert (resumed.step, resumed.epochs_trained) == (went_on.step, went_on.epochs_trained)
        got = _state(resumed)
        for name, array in want.items():
            np.testing.assert_array_equal(got[name], array, err_msg=f"{how}: {name}")


def test_a_stopped_cli_job_resumes_from_its_checkpoint_as_it_would_have_gone_on(tmp_path, capsys):
    from boltc import checkpoint as model_files
    from boltc.cli import main
    from test_export import XMC_SPEC, _xmc_file  # noqa: E402 (tests/run is on the path)

    spec, train = tmp_path / "small_xmc.bolt", tmp_path / "train.txt"
    spec.write_text(XMC_SPEC)
    _xmc_file(train, 800, 0)
    common = ["train", str(spec), "--train", str(train), "--learning-rate", "0.005"]
    assert main([*common, "--epochs", "4", "--save", str(tmp_path / "went_on.boltm")]) == 0
    checkpoint = tmp_path / "job.boltm"
    # the job stops after its second epoch (as a killed one would have left its checkpoint)...
    assert main([*common, "--epochs", "2", "--checkpoint", str(checkpoint)]) == 0
    assert model_files.read_header(checkpoint)[0]["epochs_trained"] == 2
    # ...and the same command, resumed, trains the two it had left
    capsys.readouterr()
    assert main([*common, "--epochs", "4", "--checkpoint", str(checkpoint), "--resume",
                 "--save", str(tmp_path / "resumed.boltm")]) == 0
    assert f"resuming from {checkpoint}: 2 epochs trained, 2 to go" in capsys.readouterr().out
    _, want = model_files.read_model_file(tmp_path / "went_on.boltm")
    _, got = model_files.read_model_file(tmp_path / "resumed.boltm")
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        np.testing.assert_array_equal(got[name], array, err_msg=name)
    spec.write_text(XMC_SPEC.replace("seed = 3", "seed = 4"))
    assert main([*common, "--epochs", "4", "--checkpoint", str(checkpoint), "--resume"]) == 1
    assert f"{checkpoint} was trained from another version of {spec}" in capsys.readouterr().err


def test_a_killed_job_loses_nothing_its_checkpoint_holds(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from boltc import checkpoint as model_files
    from boltc.cli import main
    from test_export import XMC_SPEC, _xmc_file  # noqa: E402 (tests/run is on the path)

    spec, train, job = tmp_path / "small_xmc.bolt", tmp_path / "train.txt", tmp_path / "job.boltm"
    spec.write_text(XMC_SPEC)
    _xmc_file(train, 6000, 0)
    common = ["train", str(spec), "--train", str(train), "--learning-rate", "0.005", "--epochs", "6"]
    running = subprocess.Popen([sys.executable, "-m", "boltc.cli", *common, "--checkpoint", str(job)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not job.exists() and running.poll() is None and time.monotonic() < deadline:  # bounded
        time.sleep(0.005)
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=30)
    assert job.exists(), running.stderr.read()
    trained = model_files.read_header(job)[0]["epochs_trained"]
    assert main([*common, "--checkpoint", str(job), "--resume", "--save", str(tmp_path / "resumed.boltm")]) == 0
    assert main([*common, "--save", str(tmp_path / "went_on.boltm")]) == 0
    _, want = model_files.read_model_file(tmp_path / "went_on.boltm")
    _, got = model_files.read_model_file(tmp_path / "resumed.boltm")
    for name, array in want.items():
        np.testing.assert_array_equal(got[name], array, err_msg=f"resumed after {trained} epochs: {name}")
