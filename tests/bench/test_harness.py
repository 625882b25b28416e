"""The bench harness's arithmetic: time to a P@1 along a curve, and the roofline's bytes and FLOPs per kernel."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from harness import time_to  # noqa: E402
from roofline.measure import kernel_rates  # noqa: E402


def test_time_to_interpolates_between_curve_points_from_the_origin():
    curve = [{"train_seconds": 10.0, "precision@1": 0.1}, {"train_seconds": 20.0, "precision@1": 0.3}]
    assert time_to(curve, 0.2) == pytest.approx(15.0)
    assert time_to(curve, 0.05) == pytest.approx(5.0)
    assert time_to(curve, 0.3) == pytest.approx(20.0)
    assert time_to(curve, 0.31) is None


def test_kernel_rates_count_the_rows_each_kernel_must_move():
    limits = {"triad_gbps": 10.0, "gather_gbps": 5.0, "update_gbps": 8.0, "fma_gflops": 100.0}
    profile = {"batches": 2.0, "forward_seconds": 1.0, "select_thread_seconds": 1.0, "score_thread_seconds": 3.0,
               "entries_scored": 1000.0, "backward_seconds": 0.5, "neurons_updated": 100.0,
               "entries_updated": 1000.0, "rebuilds": 2.0, "rebuild_seconds": 4.0}
    select, score, update, rebuild = kernel_rates(profile, in_dim=128, out_dim=50, limits=limits)
    row = 128 * 4 + 4  # a weight row and its bias
    assert select["ms_per_call"] == pytest.approx(125.0)  # a quarter of the forward's 1 s over 2 batches
    assert score["gb_per_s"] == pytest.approx(1000 * row / 0.75 / 1e9)
    assert score["of_pattern"] == pytest.approx(score["gb_per_s"] / 5.0)
    assert score["gflop_per_s"] == pytest.approx(2 * 128 * 1000 / 0.75 / 1e9)
    assert update["gb_per_s"] == pytest.approx(100 * 6 * row / 0.5 / 1e9)
    assert update["of_triad"] == pytest.approx(update["gb_per_s"] / 10.0)
    assert update["gflop_per_s"] == pytest.approx((4 * 128 * 1000 + 10 * 128 * 100) / 0.5 / 1e9)
    assert rebuild["ms_per_call"] == pytest.approx(2000.0)
    assert rebuild["gb_per_s"] == pytest.approx(2 * 50 * 128 * 4 / 4.0 / 1e9)
    # a batch-shared active set: each of its rows is gathered once, then multiplied by every row of the batch
    shared_score = kernel_rates(profile, in_dim=128, out_dim=50, limits=limits, shared=True)[1]
    assert shared_score["gb_per_s"] == pytest.approx(100 * row / 0.75 / 1e9)
    assert shared_score["gflop_per_s"] == score["gflop_per_s"]
