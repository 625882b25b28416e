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


def test_batches_accumulated_per_exchange_step_as_one_process_steps_their_rows_in_one_batch(write_spec):
    """Two global batches of 32 a step (their gradients accumulated, one update), on one worker and on two: the
    update one process makes on the batch of 64 they make up, to rounding."""
    spec = SPECS["dense layers"].replace("batch_size = 32", "batch_size = 64")
    path = write_spec(spec)
    data = _data(spec)
    alone = boltc.load(path, tune=False)
    alone.fit(data, epochs=3, learning_rate=0.01, validation=False)
    for workers in (1, 2):
        trained, history = _in_process(path, data, workers, batch_size=32, batches_per_step=2)
        assert trained.step == alone.step == 30 and history.exchanges[0].steps == 10
        for name, want in _state(alone).items():
            np.testing.assert_allclose(_state(trained)[name], want, rtol=2e-5, atol=2e-6, err_msg=f"{workers} {name}")


def test_accumulated_batches_collect_the_sum_of_their_gradients(write_spec):
    """A share of two batches holds, row by row, the sum of the shares of each alone (the same weights, the same
    step), for LSH-sparse rows and dense ones alike, bit for bit."""
    from boltc.training import next_step, step_settings

    spec = SPECS["per-row sets"].replace("top = dense(x, 16, activation=relu)",
                                         "top = dense(x, 16, activation=relu, sparsity=0.25)")
    model = boltc.load(write_spec(spec), tune=False)
    model.learning_rate = 0.01
    feed = model.compiled.feed(model.prepare_data(_data(spec), labelled=True), 1)
    step_settings(model)
    next_step(model, None)
    first, second = np.arange(0, 32), np.arange(32, 64)

    def copied(share):
        return [None if i is None else i.copy() for i in share.ids], [g.copy() for g in share.gradients]

    def alone(batches):
        """The share of `batches` as the step's only ones (the stamps of rows an earlier collect wrote cleared)."""
        for parameter in exchange.exchanged_parameters(model.buffers):
            if parameter.touched is not None:
                model.arrays[parameter.touched].fill(0)
        return copied(exchange.collect(model, feed, batches, 64))

    both_ids, both = alone([first, second])
    parts = [alone([rows]) for rows in (first, second)]
    for parameter in exchange.exchanged_parameters(model.buffers):
        index = parameter.index
        if parameter.touched is None:
            np.testing.assert_array_equal(both[index], parts[0][1][index] + parts[1][1][index], err_msg=parameter.name)
            continue
        summed = np.zeros((parameter.rows,) + both[index].shape[1:], np.float32)
        for part_ids, part in parts:
            summed[part_ids[index]] += part[index]
        np.testing.assert_array_equal(both_ids[index], np.union1d(parts[0][0][index], parts[1][0][index]))
        np.testing.assert_array_equal(both[index], summed[both_ids[index]], err_msg=parameter.name)


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


def _shares_of_one_parameter(model, parameter, rows_by_rank, width, rng):
    """Shares whose only gradients are `parameter`'s, rank r's at rows_by_rank[r]."""
    count = len(exchange.exchanged_parameters(model.buffers))
    shares = []
    for rank, ids in enumerate(rows_by_rank):
        ids = np.array(ids, np.int64)
        gradients = [None] * count
        gradients[parameter.index] = rng.normal(size=(len(ids), width)).astype(np.float32) if len(ids) else None
        share_ids = [None] * count
        share_ids[parameter.index] = ids
        shares.append(exchange.Share(len(ids), float(rank), share_ids, gradients))
    return shares


def test_shares_step_the_union_of_their_rows_as_numpy_adam_does(write_spec):
    """The C step of the workers' shares against numpy: each row's gradients summed over the ranks that sent it,
    Adam on the rows of the union, every other row and its moments left alone."""
    from boltc.training import next_step, step_settings

    path = write_spec(SPECS["per-row sets"])
    model = boltc.load(path, tune=False)
    model.learning_rate = 0.01
    plan = model.plan
    output = next(p for p in exchange.exchanged_parameters(model.buffers) if p.rows == 300 and p.width == 16)
    rng = np.random.default_rng(0)
    model.arrays[output.name + "_m"][...] = rng.normal(size=(300, 16)) * 0.01
    model.arrays[output.name + "_v"][...] = rng.random(size=(300, 16)) * 0.01
    before = {role: model.arrays[output.name + role].astype(np.float64) for role in ("", "_m", "_v")}
    shares = _shares_of_one_parameter(model, output, ([1, 4, 7, 299], [4, 5], [], [0, 7, 299]), 16, rng)
    step_settings(model)
    next_step(model, None)
    applied = exchange.apply_shares(model, shares)
    assert applied.union_rows[output.index] == 6 and applied.rows == 9 and applied.loss == 6.0

    gradient = np.zeros((300, 16))
    touched = np.zeros(300, bool)
    for share in shares:
        if share.gradients[output.index] is not None:
            np.add.at(gradient, share.ids[output.index], share.gradients[output.index])
            touched[share.ids[output.index]] = True
    m = plan.beta1 * before["_m"] + (1 - plan.beta1) * gradient
    v = plan.beta2 * before["_v"] + (1 - plan.beta2) * gradient ** 2
    weights = before[""] - 0.01 * (m / (1 - plan.beta1)) / (np.sqrt(v / (1 - plan.beta2)) + plan.eps)
    for role, want in (("", weights), ("_m", m), ("_v", v)):
        got = model.arrays[output.name + role]
        np.testing.assert_allclose(got[touched], want[touched], rtol=2e-5, atol=1e-7, err_msg=role)
        np.testing.assert_array_equal(got[~touched], before[role][~touched].astype(np.float32), err_msg=role)


@pytest.mark.parametrize("rows", [[[3, 2]], [[5, 300]], [[-1]]], ids=["descending", "past the end", "negative"])
def test_shares_with_rows_out_of_order_or_range_are_refused(rows, write_spec):
    from boltc.training import next_step, step_settings

    model = boltc.load(write_spec(SPECS["per-row sets"]), tune=False)
    model.learning_rate = 0.01
    output = next(p for p in exchange.exchanged_parameters(model.buffers) if p.rows == 300 and p.width == 16)
    step_settings(model)
    next_step(model, None)
    weights = model.arrays[output.name].copy()
    with pytest.raises(UsageError, match="out of order or out of range"):
        exchange.apply_shares(model, _shares_of_one_parameter(model, output, rows, 16, np.random.default_rng(1)))
    np.testing.assert_array_equal(model.arrays[output.name], weights)


def test_a_global_batch_beyond_the_compiled_size_is_refused(write_spec):
    path = write_spec(SPECS["dense layers"])
    with pytest.raises(UsageError, match="between 1 and 32, the size the model was compiled for"):
        _in_process(path, _data(SPECS["dense layers"]), 2, batch_size=64)


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


@pytest.mark.parametrize("setting, message", [("freeze_tables_after = 1", "freezes its tables"),
                                              ("warmup = 10", "warmup or schedule"),
                                              ("schedule = cosine", "warmup or schedule")])
def test_what_workers_do_not_follow_is_refused(setting, message, write_spec):
    path = write_spec(SPECS["per-row sets"].replace("seed = 5", f"seed = 5, {setting}"))
    with pytest.raises(UsageError, match=message):
        _in_process(path, _data(SPECS["per-row sets"]), 2)


# -- on Ray ---------------------------------------------------------------------------------------------------------

# one pytest process runs every test that starts Ray (--dist loadgroup), and tests of the server's batching under
# load (tests/run/test_serve.py) with them: on CI's two cores, Ray's workers beside either starve them
RAY_TESTS = pytest.mark.xdist_group("cores")


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


def test_workers_on_a_typed_column_file_learn_its_labels_once_and_train_as_one_process(tmp_path):
    """A CSV of typed columns is read whole by every worker, which keeps its share of the rows; the label names
    are the driver's, learned once: the workers' dense layers end as one process's, to rounding."""
    from test_columns import SPEC as COLUMNS_SPEC  # tests/run is on the path

    spec = tmp_path / "shop.bolt"
    spec.write_text(COLUMNS_SPEC.replace("epochs = 30", "epochs = 3"))
    rng = np.random.default_rng(2)
    sections = ["shoes", "clothes", "kitchen", "sale", "garden", "toys"]
    lines = ["title,Brand,price,added,recent,section"]
    for r in range(90):
        picked = rng.choice(len(sections), size=1 + r % 2, replace=False)
        lines.append(f"item {r} {sections[picked[0]]} thing,Brand{r % 7},{rng.uniform(0, 200):.2f},"
                     f"2024-0{1 + r % 9}-1{r % 10},a{r % 5} b{r % 3},{';'.join(sections[p] for p in picked)}")
    data = tmp_path / "shop.csv"
    data.write_text("\n".join(lines) + "\n")
    alone = boltc.load(spec, tune=False)
    alone.fit(str(data), epochs=3, learning_rate=0.01, validation=False)
    model = boltc.load(spec, tune=False)
    model.learning_rate = 0.01
    trained, history = distributed.train(model, str(data), distributed.Settings(workers=2, epochs=3, in_process=True))
    assert trained.label_names == alone.label_names and [r.samples for r in history.epochs] == [90] * 3
    for name, want in _state(alone).items():
        np.testing.assert_allclose(_state(trained)[name], want, rtol=2e-5, atol=2e-6, err_msg=name)
