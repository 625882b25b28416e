"""The synthetic XMC generator at a shape other than Amazon-670K's: headers, id ranges and the up-to-date check."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "amazon"))
from generate import file_rows, generate, main  # noqa: E402

import pytest  # noqa: E402


def read_rows(path: Path) -> tuple[list[str], list[list[int]], list[list[int]]]:
    header, *lines = path.read_text().splitlines()
    labels, features = [], []
    for line in lines:
        label_text, *pairs = line.split(" ")
        labels.append([int(x) for x in label_text.split(",")])
        features.append([int(pair.split(":")[0]) for pair in pairs])
    return header.split(), labels, features


def test_a_smaller_shape_keeps_every_id_inside_it_and_is_not_remade(tmp_path):
    made = generate(tmp_path, 300, 40, n_features=500, n_labels=200, quiet=True)
    assert made["generated"]
    header, labels, features = read_rows(tmp_path / "train.txt")
    assert header == ["300", "500", "200"] and len(labels) == 300
    assert all(0 <= label < 200 for row in labels for label in row)
    assert all(0 <= feature < 500 for row in features for feature in row)
    assert all(row == sorted(set(row)) for row in labels + features)
    assert file_rows(tmp_path / "test.txt", 500, 200) == 40
    assert file_rows(tmp_path / "test.txt") is None  # not Amazon's shape
    assert not generate(tmp_path, 300, 40, n_features=500, n_labels=200, quiet=True)["generated"]
    assert generate(tmp_path, 300, 40, n_features=500, n_labels=300, quiet=True)["generated"]


def test_a_shape_too_small_for_the_row_law_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--features", "59", "--out", "unused"])
    assert "--features must be >= 60 (distinct prototype members) and --labels >= 15" in capsys.readouterr().err
