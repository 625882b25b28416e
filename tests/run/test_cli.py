"""The boltc command through subprocesses, on a tiny data set the test writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SPEC = """\
model tiny {
    input  words: sparse[30]
    target topic: classes[3]
    hidden = dense(words, 16, activation=relu)
    scores = dense(hidden, 3, activation=softmax)
    loss cross_entropy(scores, topic)
    optimizer adam(learning_rate=0.02)
    train { batch_size = 32, epochs = 4, seed = 1 }
    metrics accuracy, precision@1, recall@2, loss
}
"""


def write_data(path: Path, rows: int, seed: int) -> None:
    """Each topic owns ten features; a row holds four features of its topic and one random one."""
    rng = np.random.default_rng(seed)
    lines = [f"{rows} 30 3"]
    for _ in range(rows):
        topic = int(rng.integers(0, 3))
        features = set((topic * 10 + rng.integers(0, 10, size=4)).tolist()) | {int(rng.integers(0, 30))}
        lines.append(f"{topic} " + " ".join(f"{f}:1" for f in sorted(features)))
    path.write_text("\n".join(lines) + "\n")


def boltc(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "boltc.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "tiny.bolt").write_text(SPEC)
    write_data(tmp_path / "train.txt", 300, seed=1)
    write_data(tmp_path / "test.txt", 90, seed=2)
    return tmp_path


def test_train_evaluate_predict_round_trip(workdir):
    done = boltc("train", "tiny.bolt", "--train", "train.txt", "--test", "test.txt", "--save", "tiny.boltm",
                 "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["epochs"] == 4 and len(report["epoch_seconds"]) == 4
    assert set(report["metrics"]) == {"accuracy", "precision@1", "recall@2", "loss"}
    assert report["metrics"]["accuracy"] > 0.9  # a separable task
    assert report["train_seconds"] > 0 and report["samples_per_second"] > 0
    assert report["epoch_loss"][-1] < report["epoch_loss"][0]

    done = boltc("evaluate", "tiny.boltm", "--data", "test.txt", "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    evaluated = json.loads(done.stdout.strip().splitlines()[-1])
    assert evaluated["metrics"] == pytest.approx(report["metrics"])
    assert evaluated["eval_seconds"] > 0 and evaluated["samples_per_second"] > 0

    done = boltc("predict", "tiny.boltm", "--data", "test.txt", "--top-k", "2", cwd=workdir)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.strip().splitlines()
    assert len(rows) == 90
    truth = [int(line.split()[0]) for line in (workdir / "test.txt").read_text().splitlines()[1:]]
    top1 = [int(row.split()[0].split(":")[0]) for row in rows]
    assert np.mean(np.array(top1) == np.array(truth)) == pytest.approx(report["metrics"]["accuracy"])


def test_demo_trains_the_bundled_spec_on_generated_documents(tmp_path):
    done = boltc("demo", "--epochs", "1", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["epochs"] == 1 and report["metrics"]["accuracy"] > 0.5  # 50 topics: chance is 0.02
    assert "model 'demo'" in done.stderr and not list(tmp_path.iterdir())  # its files were temporary


def test_explain_prints_the_plan(workdir):
    done = boltc("explain", "tiny.bolt", cwd=workdir)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "model 'tiny' from tiny.bolt" in out
    assert "0  hidden  dense  30 -> 16" in out
    assert "gather - sparse input" in out
    done = boltc("explain", "tiny.bolt", "--json", cwd=workdir)
    data = json.loads(done.stdout)
    assert data["layers"][0]["parameters"] == 30 * 16 + 16
    assert data["totals"]["parameters"] == 30 * 16 + 16 + 16 * 3 + 3
    assert set(data["build"]) >= {"key", "entry", "cached", "cflags"}


def test_spec_error_exits_2_with_position(workdir):
    (workdir / "bad.bolt").write_text(SPEC.replace("dense(words, 16", "dense(wrds, 16"))
    done = boltc("explain", "bad.bolt", cwd=workdir)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "bad.bolt:4:20: error: undefined name 'wrds'"
    assert "hint: did you mean 'words'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_data_exits_1_naming_file_and_line(workdir):
    lines = (workdir / "train.txt").read_text().splitlines()
    lines[5] = "7 1:1"  # label 7 of a 3-class target, on line 6
    (workdir / "bad.txt").write_text("\n".join(lines) + "\n")
    done = boltc("train", "tiny.bolt", "--train", "bad.txt", cwd=workdir)
    assert done.returncode == 1
    assert "bad.txt:6:" in done.stderr and "Traceback" not in done.stderr


def test_skip_bad_rows_trains_on_the_rest_and_reports_how_many(workdir):
    lines = (workdir / "train.txt").read_text().splitlines()
    lines[5], lines[40] = "7 1:1", "1 2:x"  # lines 6 and 41
    (workdir / "bad.txt").write_text("\n".join(lines) + "\n")
    done = boltc("train", "tiny.bolt", "--train", "bad.txt", "--test", "test.txt", "--skip-bad-rows", "--json",
                 cwd=workdir)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["skipped_rows"] == {"train": 2, "test": 0}
    assert "bad.txt: skipped 2 bad rows (the first, line 6: label id 7 is out of range (n_labels = 3))" \
        in done.stderr
    assert report["metrics"]["accuracy"] > 0.9


def test_unreadable_model_file_exits_1(workdir):
    (workdir / "junk.boltm").write_bytes(b"junk")
    done = boltc("evaluate", "junk.boltm", "--data", "test.txt", cwd=workdir)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: junk.boltm: not a boltc model file (wrong magic bytes)"


def test_compile_emits_readable_c(workdir):
    done = boltc("compile", "tiny.bolt", "--emit-c", "out", cwd=workdir)
    assert done.returncode == 0, done.stderr
    c_text = (workdir / "out" / "tiny.c").read_text()
    assert "layer 0: dense 'hidden' (tiny.bolt:4)" in c_text
    assert (workdir / "out" / "bolt_abi.h").exists()
    again = boltc("compile", "tiny.bolt", "--json", cwd=workdir)
    assert json.loads(again.stdout)["compiled"] is False


SPARSE_SPEC = """\
model wide {
    input  words: sparse[60]
    target tags: multilabel[400]
    hidden = dense(words, 32, activation=relu)
    scores = dense(hidden, 400, activation=softmax, sparsity=0.05)
    loss cross_entropy(scores, tags)
    train { batch_size = 32, epochs = 2, seed = 3 }
}
"""


def write_tags(path: Path, rows: int, seed: int) -> None:
    """Each of 400 labels owns two of 60 features; a row holds its label's and one random one."""
    rng = np.random.default_rng(seed)
    lines = [f"{rows} 60 400"]
    for _ in range(rows):
        label = int(rng.integers(0, 400))
        features = sorted({label % 60, (label * 7) % 60, int(rng.integers(0, 60))})
        lines.append(f"{label} " + " ".join(f"{f}:1" for f in features))
    path.write_text("\n".join(lines) + "\n")


def test_train_chooses_rate_and_epochs_and_reports_what_sparse_inference_keeps(workdir):
    (workdir / "auto.bolt").write_text(SPARSE_SPEC.replace("epochs = 2", "epochs = auto, max_epochs = 6"))
    write_tags(workdir / "tags.txt", 600, seed=4)
    done = boltc("train", "auto.bolt", "--train", "tags.txt", "--validation", "0.2", "--save", "auto.boltm", "--json",
                 cwd=workdir, BOLTC_TUNE="on")  # the rate is raced where measuring is on
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["learning_rate"]["origin"] == "measured" and report["learning_rate"]["raced"]["trials"]
    validation = report["validation"]
    assert validation["rows"] == 120 and "120 training rows held out (20.0%, seed 3)" in validation["source"]
    assert 1 <= validation["best_epoch"] <= report["epochs"] <= 6
    check = report["sparse_check"]
    assert check["rows"] == 120 and 0 <= check["dense_top1_recall"] <= 1
    assert "sparse inference: dense inference's top-1 among its candidates for" in done.stderr  # the log, beside --json
    evaluated = json.loads(boltc("evaluate", "auto.boltm", "--data", "tags.txt", "--sparse", "--json",
                                 cwd=workdir).stdout.strip().splitlines()[-1])
    assert evaluated["sparse_check"] == check


def test_tune_measures_once_and_explain_shows_the_measured_values(workdir):
    (workdir / "wide.bolt").write_text(SPARSE_SPEC)
    write_tags(workdir / "tags.txt", 600, seed=4)
    assert boltc("compile", "wide.bolt", cwd=workdir).returncode == 0  # the formula's build, cached
    done = boltc("tune", "wide.bolt", "--data", "tags.txt", "--budget", "8", "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout.splitlines()[-1])
    assert not first["cached"] and first["trials"][0]["label"] == "formula"
    assert first["measured"]["1"]["note"].startswith("boltc tune: ")
    done = boltc("tune", "wide.bolt", "--data", "tags.txt", cwd=workdir)
    assert done.returncode == 0, done.stderr
    chosen = first["measured"]["1"]  # dwta or srp: whichever measured better on this machine at this moment
    assert "wide.bolt: from the cache" in done.stdout
    assert f"  layer 1: {chosen['family']} K={chosen['hashes']} L={chosen['tables']} " in done.stdout
    explained = json.loads(boltc("explain", "wide.bolt", "--data", "tags.txt", "--json", cwd=workdir).stdout)
    assert explained["layers"][1]["lsh"]["origin"] == f"measured ({first['measured']['1']['note']})"
    # the first fit of boltc train finds the same data's values in the cache and trains on them
    done = boltc("train", "wide.bolt", "--train", "tags.txt", "--epochs", "1", cwd=workdir, BOLTC_TUNE="on")
    assert done.returncode == 0, done.stderr
    assert f"layer 1 values from the cache: {first['measured']['1']['note']}" in done.stdout
    formula = json.loads(boltc("explain", "wide.bolt", "--json", cwd=workdir).stdout)
    assert formula["layers"][1]["lsh"]["origin"].startswith("formula")
    done = boltc("tune", "tiny.bolt", "--data", "train.txt", cwd=workdir)
    assert done.returncode == 0 and "no LSH-sparse layer, nothing to measure" in done.stdout
