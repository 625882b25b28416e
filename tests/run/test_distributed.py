"""Data-parallel training (boltc.distributed, boltc.exchange): one worker trains bit for bit as one process does,
several workers' gradients add up to the global batch's, the shares are summed as a numpy reference sums them, and
on Ray two workers train as two in-process workers do, read their shares of a file without dropping rows, and
survive one of them being killed mid-epoch."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import boltc
from boltc import checkpoint, distributed, exchange
from boltc.diagnostics import UsageError
from test_export import XMC_SPEC, _xmc_file  # tests/run is on the path


def _spec(input_decl: str, layers: str, output: str = "", optimizer: str = "") -> str:
    return f"""\
model parallel {{
    input x: {input_decl}
    target y: classes[300]
    {layers}
    o = dense(top, 300, activation=softmax{output})
    loss cross_entropy(o, y)
    {optimizer}
    train {{ batch_size = 32, seed = 5 }}
}}
"""


DENSE = "dense[8, standardize=false]"
TOP = "top = dense(x, 16, activation=relu)"
SPECS = {
    "dense layers": _spec(DENSE, TOP),
    "batch-shared set": _spec(DENSE, TOP, ", sparsity=0.1"),
    "per-row sets": _spec(DENSE, TOP, ", sparsity=0.1, sampling=dwta(active_sets=row)"),
    "sparse hidden layer": _spec(DENSE, "h = dense(x, 400, activation=relu, sparsity=0.05, sampling=minhash())\n"
                                        "    top = dense(h, 16, activation=relu)", ", sparsity=0.1"),
    "sparse input": _spec("sparse[1000]", TOP, ", sparsity=0.1, sampling=dwta(active_sets=row)"),
    "bf16 moments": _spec(DENSE, TOP, ", sparsity=0.1, sampling=dwta(active_sets=row)",
                          "optimizer adam(moments=bf16)"),
    "sgd": _spec(DENSE, TOP, ", sparsity=0.1", "optimizer sgd(learning_rate=0.01)"),
}


def _data(spec: str, rows: int = 600):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 300, size=rows)
    if "sparse[1000]" in spec:
        import scipy.sparse

        features = scipy.sparse.random(rows, 1000, density=0.01, format="csr", random_state=4, dtype=np.float32)
        return features, labels
    return rng.normal(size=(rows, 8)).astype(np.float32), labels


def _state(model) -> dict[str, np.ndarray]:
    return {spec.name: model.arrays[spec.name] for spec in model.buffers
            if spec.kind in ("parameter", "optimizer", "hash", "table")}


def _in_process(path, data, workers: int, epochs: int = 3, **settings):
    model = boltc.load(path, tune=False)
    model.learning_rate = 0.01
    return distributed.train(model, data, distributed.Settings(workers=workers, epochs=epochs, in_process=True,
                                                               **settings))


@pytest.mark.parametrize("name", list(SPECS), ids=list(SPECS))
def test_one_worker_trains_bit_for_bit_as_one_process(name, write_spec):
    """The gradients collected and applied in two calls are the update the fused backward makes."""
    path = write_spec(SPECS[name])
    data = _data(SPECS[name])
    alone = boltc.load(path, tune=False)
    alone_history = alone.fit(data, epochs=3, learning_rate=0.01, validation=False)
    trained, history = _in_process(path, data, 1)
    assert (trained.step, trained.epochs_trained) == (alone.step, alone.epochs_trained) == (57, 3)
    got = _state(trained)
    for array_name, want in _state(alone).items():
        np.testing.assert_array_equal(got[array_name], want, err_msg=array_name)
    assert [r.loss for r in history.epochs] == pytest.approx([r.loss for r in alone_history.epochs], rel=1e-9)


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_gradients_add_up_to_the_global_batch(workers, write_spec):
    """Dense layers have no batch-dependent active sets: the workers' summed shares of each global batch step the
    model as one process steps it on the whole batch, up to the order of the sums."""
    path = write_spec(SPECS["dense layers"])
    data = _data(SPECS["dense layers"])
    alone = boltc.load(path, tune=False)
    alone.fit(data, epochs=3, learning_rate=0.01, validation=False)
    trained, history = _in_process(path, data, workers)
    assert [r.samples for r in history.epochs] == [600] * 3
    got = _state(trained)
    for array_name, want in _state(alone).items():
        np.testing.assert_allclose(got[array_name], want, rtol=2e-5, atol=2e-6, err_msg=array_name)
    assert not all(np.array_equal(got[n], w) for n, w in _state(alone).items())  # summed in another order


def test_sparse_outputs_on_workers_learn_as_one_process_does(write_spec):
    """Active sets (top-ups, batch negatives) depend on which rows share a batch, so several workers are not
    bit-equal to one process; they learn as well."""
    path = write_spec(SPECS["per-row sets"])
    rng = np.random.default_rng(8)
    topics = rng.integers(0, 300, size=3000)
    centers = rng.normal(size=(300, 8)).astype(np.float32)
    features = centers[topics] + 0.05 * rng.normal(size=(3000, 8)).astype(np.float32)
    alone = boltc.load(path, tune=False)
    alone.fit((features, topics), epochs=6, learning_rate=0.01, validation=False)
    trained, _ = _in_process(path, (features, topics), 2, epochs=6)
    want = alone.evaluate((features, topics))["accuracy"]
    assert want > 0.5
    assert abs(trained.evaluate((features, topics))["accuracy"] - want) < 0.05


def test_shares_sum_in_rank_order_over_the_union_of_their_rows():
    width = 3
    rng = np.random.default_rng(0)
    shares, reference = [], np.zeros((20, width), np.float32)
    touched = np.zeros(20, bool)
    for rank, ids in enumerate(([1, 4, 7], [4, 5], [], [0, 7, 19])):
        ids = np.array(ids, np.int64)
        rows = rng.normal(size=(len(ids), width)).astype(np.float32)
        np.add.at(reference, ids, rows)
        touched[ids] = True
        whole = rng.normal(size=(2, 2)).astype(np.float32)
        shares.append(exchange.Share(len(ids), float(rank), [ids, None], [rows, whole]))
    total = exchange.summed(shares)
    np.testing.assert_array_equal(total.ids[0], np.flatnonzero(touched))
    np.testing.assert_allclose(total.gradients[0], reference[touched], rtol=1e-6)
    np.testing.assert_allclose(total.gradients[1], sum(s.gradients[1] for s in shares), rtol=1e-6)
    assert total.loss == 6.0 and total.rows == 8
    idle = exchange.Share(0, 0.0, [None, None], [None, None])
    assert exchange.summed([idle, idle]).gradients == [None, None]


def test_bf16_wire_rounds_to_the_nearest_bf16():
    values = np.array([1.0, -2.5, 1 + 2 ** -8, 1 + 3 * 2 ** -9, 3.0e38, 1e-30, 0.0], np.float32)
    halves = exchange.to_bf16(values)
    back = exchange.from_bf16(halves)
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to the even mantissa, 1; 1 + 3 * 2^-9 rounds up to 1 + 2^-7
    np.testing.assert_array_equal(back[:4], np.array([1.0, -2.5, 1.0, 1 + 2 ** -7], np.float32))
    assert np.all(np.abs(back - values) <= np.abs(values) * 2 ** -8)
    assert halves.dtype == np.uint16


def test_bf16_wire_halves_the_bytes_and_still_learns(write_spec):
    path = write_spec(SPECS["dense layers"])
    data = _data(SPECS["dense layers"])
    fp32, fp32_history = _in_process(path, data, 2)
    bf16, bf16_history = _in_process(path, data, 2, wire="bf16")
    sent = fp32_history.exchanges[0].bytes_sent, bf16_history.exchanges[0].bytes_sent
    assert sent[1] == pytest.approx(sent[0] / 2, rel=0.01)
    assert bf16_history.epochs[-1].loss == pytest.approx(fp32_history.epochs[-1].loss, rel=0.01)


def test_frozen_tables_are_refused(write_spec):
    path = write_spec(SPECS["per-row sets"].replace("seed = 5", "seed = 5, freeze_tables_after = 1"))
    with pytest.raises(UsageError, match="freezes its tables"):
        _in_process(path, _data(SPECS["per-row sets"]), 2)


# -- on Ray ---------------------------------------------------------------------------------------------------------

# one pytest process runs every test that starts Ray (--dist loadgroup): two Ray instances on CI's two cores would
# starve each other's workers
RAY_TESTS = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def xmc_job(tmp_path):
    spec, train = tmp_path / "small_xmc.bolt", tmp_path / "train.txt"
    spec.write_text(XMC_SPEC)
    _xmc_file(train, 1001, 0)  # an odd count: the two byte-range shards differ
    return spec, train


@RAY_TESTS
def test_two_ray_workers_read_their_shares_and_train_as_in_process(ray_local, xmc_job):
    spec, train = xmc_job
    settings = distributed.Settings(workers=2, epochs=2)
    on_ray, history = distributed.train(boltc.load(spec), str(train), settings)
    in_process, _ = distributed.train(boltc.load(spec), str(train),
                                      distributed.Settings(workers=2, epochs=2, in_process=True))
    assert [r.samples for r in history.epochs] == [1001, 1001]  # every row, though the shards are uneven
    assert on_ray.step == in_process.step == 2 * 16
    for name, want in _state(in_process).items():
        np.testing.assert_array_equal(_state(on_ray)[name], want, err_msg=name)
    exchanged = history.exchanges[0]
    assert 0 < exchanged.bytes_sent < exchanged.touched_bytes * 2  # a share, not the model
    assert exchanged.touched_bytes < 0.5 * sum(a.nbytes for a in on_ray.parameters().values())


@RAY_TESTS
def test_a_killed_worker_costs_a_restart_from_the_last_checkpoint(ray_local, xmc_job, tmp_path):
    """SIGKILL to one worker's process during the second epoch: the run starts again from the first epoch's
    checkpoint and ends as the undisturbed run does, every row trained."""
    spec, train = xmc_job
    saved = tmp_path / "job.boltm"
    killed = []

    def kill_during_second_epoch(group):
        if killed:
            return
        pid = group.at(1, "pid")

        def kill():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if saved.exists() and checkpoint.read_header(saved)[0].get("epochs_trained", 0) >= 1:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.001)

        threading.Thread(target=kill, daemon=True).start()

    settings = distributed.Settings(workers=2, epochs=3, checkpoint=str(saved), batch_size=16)
    trained, history = distributed.train(boltc.load(spec), str(train), settings, on_group=kill_during_second_epoch)
    assert killed and history.restarts == 1
    assert [r.epoch for r in history.epochs] == [1, 2, 3] and [r.samples for r in history.epochs] == [1001] * 3
    undisturbed, _ = distributed.train(boltc.load(spec), str(train),
                                       distributed.Settings(workers=2, epochs=3, batch_size=16, in_process=True))
    for name, want in _state(undisturbed).items():
        np.testing.assert_array_equal(_state(trained)[name], want, err_msg=name)


def test_without_ray_workers_say_what_to_install(monkeypatch, write_spec):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    path = write_spec(SPECS["dense layers"])
    with pytest.raises(UsageError, match=r"pip install 'boltc\[distributed\]'"):
        distributed.train(boltc.load(path, tune=False), _data(SPECS["dense layers"]),
                          distributed.Settings(workers=2, epochs=1))


@RAY_TESTS
def test_cli_trains_on_workers_and_resumes_a_stopped_job(ray_local, xmc_job, tmp_path, capsys):
    """`boltc train --workers 2`, stopped after one epoch and resumed from its checkpoint for a second, ends as
    two epochs in one go."""
    import json

    from boltc.cli import main

    spec, train = xmc_job
    job = tmp_path / "job.boltm"
    common = ["train", str(spec), "--train", str(train), "--workers", "2", "--checkpoint", str(job), "--json"]
    assert main([*common, "--epochs", "1"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["distributed"]["workers"] == 2 and first["epochs"] == 1
    assert first["distributed"]["exchanges"][0]["bytes_sent"] > 0
    assert main([*common, "--epochs", "2", "--resume", "--save", str(tmp_path / "done.boltm")]) == 0
    resumed = boltc.load_model(tmp_path / "done.boltm")
    went_on, _ = distributed.train(boltc.load(spec), str(train),
                                   distributed.Settings(workers=2, epochs=2, in_process=True))
    assert resumed.epochs_trained == 2
    for name, want in _state(went_on).items():
        np.testing.assert_array_equal(_state(resumed)[name], want, err_msg=name)


def test_cli_refuses_what_workers_do_not_do(xmc_job, capsys):
    from boltc.cli import main

    spec, train = xmc_job
    assert main(["train", str(spec), "--train", str(train), "--workers", "2", "--epochs", "auto"]) == 1
    assert "--workers trains a given number of epochs" in capsys.readouterr().err
    assert main(["train", str(spec), "--train", str(train), "--workers", "2", "--validation", "0.1"]) == 1
    assert "give --validation FILE" in capsys.readouterr().err


@RAY_TESTS
def test_workers_on_two_simulated_nodes_train_as_in_process(xmc_job):
    """A cluster of two nodes of one CPU (ray.cluster_utils.Cluster): each worker runs on a node of its own, the
    model reaches them and the checkpoints come back through the object store, not a shared folder."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        spec, train = xmc_job
        trained, history = distributed.train(boltc.load(spec), str(train), distributed.Settings(workers=2, epochs=1))
        nodes = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        assert len(nodes) == 2
    finally:
        ray.shutdown()
        cluster.shutdown()
    in_process, _ = distributed.train(boltc.load(spec), str(train),
                                      distributed.Settings(workers=2, epochs=1, in_process=True))
    assert history.epochs[0].samples == 1001
    for name, want in _state(in_process).items():
        np.testing.assert_array_equal(_state(trained)[name], want, err_msg=name)
