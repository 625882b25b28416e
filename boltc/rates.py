"""learning_rate=auto: the rate raced on the user's own data before training, and the cache of the choice.

Every candidate of a geometric grid trains the same freshly initialised model on the same first batches of the
first epoch's order, and is scored by its *progressive* loss: the mean loss of the second half of those batches, each
computed before the update that learns from it, on rows the trial had not yet seen. That is a held-out estimate of
how far each rate got in the same number of steps, for free (no evaluation pass). A rate whose loss became NaN or
infinite scores worst. The lowest wins; the grid's factor of about 3 is as fine as a step's noise allows. The model
decides what a trial runs (``Model`` drives this module); this module holds the grid, the rule and the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass

from boltc.machine import cache_root

RATES_VERSION = 1
# Geometric grids, a factor of sqrt(10) apart, around each optimizer's usual default (Adam 0.001, SGD 0.01).
GRID = {
    "adam": (0.0003, 0.001, 0.003, 0.01, 0.03),
    "sgd": (0.003, 0.01, 0.03, 0.1, 0.3),
}
# A trial runs this share of an epoch's batches, at least TRIAL_BATCHES_LEAST (or the whole epoch, when shorter) and
# at most TRIAL_BATCHES_MOST: the five trials cost about a third of an epoch.
TRIAL_SHARE = 1 / 16
TRIAL_BATCHES_LEAST = 16
TRIAL_BATCHES_MOST = 64


@dataclass(frozen=True, slots=True)
class RateTrial:
    learning_rate: float
    loss: float  # mean progressive loss of the trial's second half (inf: the loss diverged)
    seconds: float


@dataclass(frozen=True, slots=True)
class RateChoice:
    key: str
    learning_rate: float
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
        return RateChoice(str(data["key"]), float(data["learning_rate"]), trials, int(data["batches"]),
                          int(data["rows"]), float(data["seconds"]), cached=True)

    def describe(self) -> str:
        tried = ", ".join(f"{t.learning_rate:g}: {t.loss:.4f}" if math.isfinite(t.loss) else
                          f"{t.learning_rate:g}: diverged" for t in self.trials)
        spent = "from the cache" if self.cached else f"in {self.seconds:.1f} s"
        return (f"learning rate {self.learning_rate:g}, raced {spent} over {self.batches} batches ({self.rows:,} "
                f"rows) per rate; progressive loss {tried}")


def trial_batches(epoch_batches: int) -> int:
    return min(epoch_batches, max(TRIAL_BATCHES_LEAST, min(TRIAL_BATCHES_MOST, round(epoch_batches * TRIAL_SHARE))))


def progressive_loss(batch_losses: list[float]) -> float:
    """The mean loss of the second half of a trial's batches (the first half mostly measures the start)."""
    second_half = batch_losses[len(batch_losses) // 2:]
    if not second_half or not all(math.isfinite(x) for x in second_half):
        return float("inf")
    return sum(second_half) / len(second_half)


def winner(trials: list[RateTrial]) -> float:
    """The rate of the lowest progressive loss (the grid's middle when every trial diverged)."""
    finite = [t for t in trials if math.isfinite(t.loss)]
    if not finite:
        return trials[len(trials) // 2].learning_rate / 10
    return min(finite, key=lambda t: t.loss).learning_rate


def choice_key(parts: list) -> str:
    return hashlib.sha256(json.dumps([RATES_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:32]


def _path(key: str):
    return cache_root() / "rates" / f"{key}.json"


def cached(key: str) -> RateChoice | None:
    try:
        return RateChoice.from_json(json.loads(_path(key).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: raced again


def store(choice: RateChoice) -> None:
    path = _path(choice.key)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(choice.to_json(), indent=1))
    os.replace(partial, path)
