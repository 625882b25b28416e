"""learning_rate=auto: the rate raced on the user's own data before training, and the cache of the choice.

Each trial trains the same freshly initialised model on the same first quarter of the first epoch's order, and is
scored by its *progressive* loss: the mean loss of the second half of those batches, each computed before the update
that learns from it, on rows the trial had not yet seen. That is a held-out estimate of how far each rate got in the
same number of steps, for free (no evaluation pass). A rate whose loss became NaN or infinite scores worst. The race
walks a geometric grid from the optimizer's usual default towards lower loss, up first, until both neighbours of the
best rate are tried (three or four trials where the loss is unimodal in the rate), and chooses the rate one step
*below* the one that learned fastest: the best rate over a whole training run is lower than the best over a short
horizon. Measured on an Amazon-670K-shaped set (100,000 rows, 2026-12-06): the fastest rate was 0.03 over 24
batches, 0.01 over a quarter epoch and 0.005 over an epoch, while the best held-out P@1 of 10 epochs came at 0.002
(0.005 and 0.01 peaked after one epoch and fell apart); on Fashion-MNIST 0.003 was fastest at every horizon and 0.001
trains to 0.893. The model decides what a trial runs (``Model`` drives this module); this module holds the grid, the
walk, the rule and the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

from boltc.machine import read_cached_choice, store_choice

RATES_VERSION = 3
# Geometric grids, a factor of about sqrt(10) apart, around each optimizer's usual default (Adam 0.001, SGD 0.01),
# where the walk starts.
GRID = {
    "adam": (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1),
    "sgd": (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
}
START = 2
# A trial runs this share of an epoch's batches, at least TRIAL_BATCHES_LEAST (or the whole epoch, when shorter) and
# at most TRIAL_BATCHES_MOST: three or four trials cost about an epoch.
TRIAL_SHARE = 1 / 4
TRIAL_BATCHES_LEAST = 16
TRIAL_BATCHES_MOST = 256
# Progressive losses this close (relative) are a tie, which the lower rate wins: on MovieLens next-item rows 0.01 and
# 0.03 came within 0.1% of each other on one row order of four, and the rate chosen a step below the higher one
# (0.01) lost a third of the recall@10 of the other orders' choice (0.003).
LOSS_TIE = 0.005


@dataclass(frozen=True, slots=True)
class RateTrial:
    """One learning rate run for a trial's batches from the same starting weights."""

    learning_rate: float
    loss: float  # mean progressive loss of the trial's second half (inf: the loss diverged)
    seconds: float


@dataclass(frozen=True, slots=True)
class RateChoice:
    key: str
    learning_rate: float  # chosen: a step below the fastest
    fastest: float  # the rate of the lowest progressive loss
    trials: tuple[RateTrial, ...]
    batches: int  # per trial
    rows: int  # per trial
    seconds: float
    cached: bool = False

    def to_json(self) -> dict:
        data = asdict(self)
        del data["cached"]
        data["trials"] = [{**t, "loss": t["loss"] if math.isfinite(t["loss"]) else None} for t in data["trials"]]
        return data

    @staticmethod
    def from_json(data: dict) -> RateChoice:
        trials = tuple(RateTrial(float(t["learning_rate"]), float("inf") if t["loss"] is None else float(t["loss"]),
                                 float(t["seconds"])) for t in data["trials"])
        return RateChoice(str(data["key"]), float(data["learning_rate"]), float(data["fastest"]), trials,
                          int(data["batches"]), int(data["rows"]), float(data["seconds"]), cached=True)

    def describe(self) -> str:
        tried = ", ".join(f"{t.learning_rate:g}: {t.loss:.4f}" if math.isfinite(t.loss) else
                          f"{t.learning_rate:g}: diverged" for t in self.trials)
        spent = "from the cache" if self.cached else f"in {self.seconds:.1f} s"
        return (f"learning rate {self.learning_rate:g}, a step below {self.fastest:g}, whose loss fell furthest in "
                f"a race {spent} over {self.batches} batches ({self.rows:,} rows) per rate; progressive loss {tried}")


def trial_batches(epoch_batches: int) -> int:
    return min(epoch_batches, max(TRIAL_BATCHES_LEAST, min(TRIAL_BATCHES_MOST, round(epoch_batches * TRIAL_SHARE))))


def progressive_loss(batch_losses: list[float]) -> float:
    """The mean loss of the second half of a trial's batches (the first half mostly measures the start)."""
    second_half = batch_losses[len(batch_losses) // 2:]
    if not second_half or not all(math.isfinite(x) for x in second_half):
        return float("inf")
    return sum(second_half) / len(second_half)


def next_rate(grid: tuple[float, ...], trials: list[RateTrial]) -> float | None:
    """The walk's next rate to try: START first, then an untried neighbour of the best so far, the higher one
    first; None once both neighbours of the best are tried. While every trial diverged it walks down."""
    tried = {t.learning_rate: t.loss for t in trials}
    if not tried:
        return grid[START]
    finite = [t for t in trials if math.isfinite(t.loss)]
    if not finite:
        lower = [rate for rate in grid if rate < min(tried)]
        return lower[-1] if lower else None
    best = grid.index(min(finite, key=lambda t: t.loss).learning_rate)
    for neighbour in (best + 1, best - 1):
        if 0 <= neighbour < len(grid) and grid[neighbour] not in tried:
            return grid[neighbour]
    return None


def fastest(trials: list[RateTrial]) -> float | None:
    """The rate of the lowest progressive loss, or the next lower rate tried where its loss ties with it (within
    LOSS_TIE); None: every trial diverged."""
    finite = [t for t in trials if math.isfinite(t.loss)]
    if not finite:
        return None
    best = min(finite, key=lambda t: t.loss)
    lower = [t for t in finite if t.learning_rate < best.learning_rate]
    if lower:
        below = max(lower, key=lambda t: t.learning_rate)
        if below.loss <= best.loss + LOSS_TIE * abs(best.loss):
            return below.learning_rate
    return best.learning_rate


def step_below(grid: tuple[float, ...], rate: float) -> float:
    """The grid's rate below `rate` (below the grid's lowest: the grid's own ratio further down)."""
    index = grid.index(rate)
    return grid[index - 1] if index > 0 else grid[0] * grid[0] / grid[1]


def choice_key(parts: list) -> str:
    return hashlib.sha256(json.dumps([RATES_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:32]


def cached(key: str) -> RateChoice | None:
    """The choice stored under `key` (see choice_key), or None: raced again."""
    return read_cached_choice("rates", key, RateChoice.from_json)


def store(choice: RateChoice) -> None:
    store_choice("rates", choice.key, choice.to_json())
