#!/usr/bin/env python3
"""Amazon-670K-shaped synthetic data, streamed to disk in the extreme-classification text format.

Shape (the real Amazon-670K's): 135,909 features, 670,091 labels, about 5 labels and about 75
non-zero features per row.

- Labels per row: ``n = min(1 + Poisson(4), 15)``, distinct within the row.
- Label law: Zipf-Mandelbrot over ranks, ``p(k) ~ 1 / (k + q)^a`` for k = 1..670,091 (a = 1,
  q = 50 by default, which puts the most frequent label in about 1% of rows); a fixed random
  permutation (from --seed) maps rank -> label id.
- Features: label ``l`` owns a prototype set of 30 feature ids, ``hash(seed, l, j) mod 135,909``
  for j = 0..29 (computed on the fly, nothing stored). A row takes ``k = min(12, 64 // n)`` distinct
  members of each of its labels' prototypes, then uniformly random noise features up to a
  per-row target of ``45 + Poisson(30)`` entries (at least 5 noise features). Repeats are merged.
- Values: uniform on {0.500, 0.501, ..., 1.500}, written with 3 decimals.

Each file starts with ``N_ROWS 135909 670091``; each row is ``l1,l2,... f:v f:v ...`` with 0-based
ids, labels and features sorted and unique. Rows are made and written 10,000 at a time (numpy,
vectorised), so memory stays small whatever the row count. Train and test come from different
sub-seeds of --seed and share the label law, the permutation and the prototypes. The output is a
function of (--seed, --chunk-rows, the law parameters); a ``meta.json`` next to the files records
them with the measured statistics. Generation is skipped when both files already hold the asked
row counts and ``meta.json`` matches, unless --force.

Usage (from the repository root)::

    python bench/amazon/generate.py --train-rows 100000 --test-rows 20000 [--seed 0] [--out bench/data/amazon]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_OUT = REPO_ROOT / "bench" / "data" / "amazon"

N_FEATURES = 135_909
N_LABELS = 670_091
PROTOTYPE_SIZE = 30
MAX_LABELS = 15
SPLIT_CODES = {"train": 1, "test": 2}
FORMAT_VERSION = 1

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit avalanche mix (the splitmix64 finaliser) of a uint64 array; wraps modulo 2**64."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x & _MASK64


class LabelLaw:
    """Zipf-Mandelbrot label sampler and the label prototypes shared by every split of one seed."""

    def __init__(self, seed: int, a: float, q: float, n_labels: int = N_LABELS, n_features: int = N_FEATURES):
        self.a, self.q = a, q
        self.n_labels, self.n_features = n_labels, n_features
        ranks = np.arange(1, n_labels + 1, dtype=np.float64)
        weights = (ranks + q) ** (-a)
        self.probabilities = weights / weights.sum()
        self.cdf = np.cumsum(self.probabilities)
        self.cdf[-1] = 1.0
        law_rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
        self.rank_to_label = law_rng.permutation(n_labels).astype(np.int64)
        # Keys of the prototype hash: one 64-bit salt per seed.
        self.salt = np.uint64(int(law_rng.integers(0, 2**63, dtype=np.int64)))

    def draw_ranks(self, rng: np.random.Generator, size) -> np.ndarray:
        """0-based ranks (0 = most frequent) drawn from the law."""
        u = rng.random(size)
        return np.minimum(np.searchsorted(self.cdf, u, side="right"), self.n_labels - 1).astype(np.int64)

    def prototype(self, labels: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Feature id of prototype slot ``slots`` (0..29) of ``labels`` (arrays of one shape)."""
        key = labels.astype(np.uint64) * np.uint64(PROTOTYPE_SIZE) + slots.astype(np.uint64)
        return (_mix64(_mix64(key ^ self.salt)) % np.uint64(self.n_features)).astype(np.int64)


def _exclusive_cumsum(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def make_chunk(law: LabelLaw, rng: np.random.Generator, n_rows: int, *, mean_extra_labels: float = 4.0,
               per_label: int = 12, signal_budget: int = 64, base_nnz: int = 45, extra_nnz: float = 30.0,
               min_noise: int = 5):
    """One chunk of rows as CSR-style arrays.

    Returns (label_indptr, labels, feature_indptr, features, values_milli): labels and features
    sorted and unique within each row; values_milli are the values times 1000 (500..1500).
    """
    n_lab = np.minimum(1 + rng.poisson(mean_extra_labels, n_rows), MAX_LABELS).astype(np.int64)
    cols = np.arange(MAX_LABELS)
    valid = cols[None, :] < n_lab[:, None]

    # Distinct ranks per row: draw, sort, redraw repeats until none are left.
    ranks = np.where(valid, law.draw_ranks(rng, (n_rows, MAX_LABELS)), law.n_labels)
    for _ in range(100):
        ranks.sort(axis=1)
        repeat = np.zeros_like(valid)
        repeat[:, 1:] = (ranks[:, 1:] == ranks[:, :-1]) & (ranks[:, 1:] < law.n_labels)
        n_repeat = int(repeat.sum())
        if n_repeat == 0:
            break
        ranks[repeat] = law.draw_ranks(rng, n_repeat)
    else:  # pragma: no cover - needs absurd luck
        raise RuntimeError("could not draw distinct labels")

    label_matrix = np.where(valid, law.rank_to_label[np.minimum(ranks, law.n_labels - 1)], law.n_labels)
    label_matrix.sort(axis=1)
    labels = label_matrix[valid]          # row-major: row by row, sorted within a row
    label_indptr = _exclusive_cumsum(n_lab)
    label_row = np.repeat(np.arange(n_rows, dtype=np.int64), n_lab)

    # Signal: k distinct prototype slots of each of the row's labels.
    k_row = np.minimum(per_label, signal_budget // n_lab)
    k_pair = k_row[label_row]
    slot_order = np.argsort(rng.random((labels.size, PROTOTYPE_SIZE)), axis=1)
    take = np.arange(PROTOTYPE_SIZE)[None, :] < k_pair[:, None]
    signal_slots = slot_order[take]
    signal_labels = np.repeat(labels, k_pair)
    signal_rows = np.repeat(label_row, k_pair)
    signal_feats = law.prototype(signal_labels, signal_slots)

    # Noise up to the row's target size.
    target = base_nnz + rng.poisson(extra_nnz, n_rows)
    n_noise = np.maximum(target - n_lab * k_row, min_noise)
    noise_rows = np.repeat(np.arange(n_rows, dtype=np.int64), n_noise)
    noise_feats = rng.integers(0, law.n_features, int(n_noise.sum()), dtype=np.int64)

    keys = np.concatenate([signal_rows * law.n_features + signal_feats, noise_rows * law.n_features + noise_feats])
    keys = np.unique(keys)                # sorted by row, then feature; repeats merged
    feat_rows = keys // law.n_features
    features = keys - feat_rows * law.n_features
    feature_indptr = _exclusive_cumsum(np.bincount(feat_rows, minlength=n_rows))
    values_milli = rng.integers(500, 1501, features.size, dtype=np.int64)
    return label_indptr, labels, feature_indptr, features, values_milli


def _n_digits(x: np.ndarray) -> np.ndarray:
    nd = np.ones(x.shape, dtype=np.int64)
    for power in range(1, 19):
        above = x >= 10 ** power
        if not above.any():
            break
        nd += above
    return nd


def _put_digits(buf: np.ndarray, last: np.ndarray, x: np.ndarray, nd: np.ndarray) -> None:
    """Write each x (>= 0) in decimal so that its last digit lands at buf[last]."""
    x = x.copy()
    for p in range(int(nd.max()) if nd.size else 0):
        sel = nd > p
        buf[(last - p)[sel]] = (48 + x % 10)[sel]
        x //= 10


def format_chunk(label_indptr, labels, feature_indptr, features, values_milli) -> bytes:
    """The text lines of one chunk, built byte by byte with numpy (no per-token Python)."""
    n_rows = label_indptr.size - 1
    n_lab = np.diff(label_indptr)
    n_feat = np.diff(feature_indptr)
    if (n_lab < 1).any() or (n_feat < 1).any():
        raise ValueError("every row needs at least one label and one feature")

    # Label token: digits + ',' (or ' ' after the row's last label).
    lab_nd = _n_digits(labels)
    lab_len = lab_nd + 1
    # Feature token: digits + ':' + 'd.ddd' + ' ' (or '\n' after the row's last feature).
    feat_nd = _n_digits(features)
    feat_len = feat_nd + 7

    lab_cum = _exclusive_cumsum(lab_len)
    feat_cum = _exclusive_cumsum(feat_len)
    lab_bytes = lab_cum[label_indptr[1:]] - lab_cum[label_indptr[:-1]]
    feat_bytes = feat_cum[feature_indptr[1:]] - feat_cum[feature_indptr[:-1]]
    row_start = _exclusive_cumsum(lab_bytes + feat_bytes)
    buf = np.empty(int(row_start[-1]), dtype=np.uint8)

    lab_row = np.repeat(np.arange(n_rows), n_lab)
    lab_pos = row_start[lab_row] + lab_cum[:-1] - np.repeat(lab_cum[label_indptr[:-1]], n_lab)
    _put_digits(buf, lab_pos + lab_nd - 1, labels, lab_nd)
    lab_sep = np.full(labels.size, ord(","), dtype=np.uint8)
    lab_sep[label_indptr[1:] - 1] = ord(" ")
    buf[lab_pos + lab_nd] = lab_sep

    feat_row = np.repeat(np.arange(n_rows), n_feat)
    feat_pos = (row_start[feat_row] + lab_bytes[feat_row] + feat_cum[:-1]
                - np.repeat(feat_cum[feature_indptr[:-1]], n_feat))
    _put_digits(buf, feat_pos + feat_nd - 1, features, feat_nd)
    colon = feat_pos + feat_nd
    buf[colon] = ord(":")
    buf[colon + 1] = 48 + values_milli // 1000
    buf[colon + 2] = ord(".")
    buf[colon + 3] = 48 + (values_milli // 100) % 10
    buf[colon + 4] = 48 + (values_milli // 10) % 10
    buf[colon + 5] = 48 + values_milli % 10
    feat_sep = np.full(features.size, ord(" "), dtype=np.uint8)
    feat_sep[feature_indptr[1:] - 1] = ord("\n")
    buf[colon + 6] = feat_sep
    return buf.tobytes()


def write_split(path: Path, law: LabelLaw, seed: int, split: str, n_rows: int, chunk_rows: int) -> dict:
    """Stream one split to ``path`` (via a temporary file, renamed at the end); return its statistics."""
    label_hits = np.zeros(law.n_labels, dtype=np.int64)
    total_labels = total_nnz = 0
    tmp = path.with_name(path.name + ".partial")
    started = time.perf_counter()
    with open(tmp, "wb") as fh:
        fh.write(f"{n_rows} {law.n_features} {law.n_labels}\n".encode("ascii"))
        for chunk_index, lo in enumerate(range(0, n_rows, chunk_rows)):
            rows = min(chunk_rows, n_rows - lo)
            rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], chunk_index]))
            label_indptr, labels, feature_indptr, features, values = make_chunk(law, rng, rows)
            fh.write(format_chunk(label_indptr, labels, feature_indptr, features, values))
            label_hits += np.bincount(labels, minlength=law.n_labels)
            total_labels += labels.size
            total_nnz += features.size
    os.replace(tmp, path)
    seconds = time.perf_counter() - started
    head_label = int(law.rank_to_label[0])
    busiest = int(label_hits.argmax()) if n_rows else head_label
    return {
        "rows": n_rows,
        "seconds": round(seconds, 3),
        "bytes": path.stat().st_size,
        "mean_labels_per_row": total_labels / max(n_rows, 1),
        "mean_nnz_per_row": total_nnz / max(n_rows, 1),
        "head_label": head_label,
        "head_label_row_frequency": int(label_hits[head_label]) / max(n_rows, 1),
        "busiest_label": busiest,
        "busiest_label_row_frequency": int(label_hits[busiest]) / max(n_rows, 1),
        "distinct_labels_seen": int((label_hits > 0).sum()),
    }


def file_rows(path: Path, n_features: int = N_FEATURES, n_labels: int = N_LABELS) -> int | None:
    """Row count of a complete file of this shape: the header's, if the file holds exactly that many lines after
    it."""
    try:
        with open(path, "rb") as fh:
            header = fh.readline().split()
            if len(header) != 3 or [int(header[1]), int(header[2])] != [n_features, n_labels]:
                return None
            lines = 0
            while True:
                block = fh.read(1 << 24)
                if not block:
                    break
                lines += block.count(b"\n")
        return int(header[0]) if lines == int(header[0]) else None
    except (OSError, ValueError):
        return None


def generate(out: Path, train_rows: int, test_rows: int, *, seed: int = 0, a: float = 1.0, q: float = 50.0,
             chunk_rows: int = 10_000, n_features: int = N_FEATURES, n_labels: int = N_LABELS, force: bool = False,
             quiet: bool = False) -> dict:
    """Make ``out/train.txt`` and ``out/test.txt`` (unless already there); return the paths and stats."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"train": out / "train.txt", "test": out / "test.txt"}
    params = {"format_version": FORMAT_VERSION, "seed": seed, "a": a, "q": q, "chunk_rows": chunk_rows,
              "train_rows": train_rows, "test_rows": test_rows, "n_features": n_features, "n_labels": n_labels}
    meta_path = out / "meta.json"

    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    if not force and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if (meta.get("params") == params and file_rows(paths["train"], n_features, n_labels) == train_rows
                and file_rows(paths["test"], n_features, n_labels) == test_rows):
            say(f"generate: {paths['train']} and {paths['test']} are up to date (use --force to remake)")
            return {"paths": paths, "meta": meta, "generated": False}

    started = time.perf_counter()
    law = LabelLaw(seed, a, q, n_labels, n_features)
    expected_head = 1.0 - (1.0 - law.probabilities[0]) ** 5
    stats = {}
    for split, n_rows in (("train", train_rows), ("test", test_rows)):
        stats[split] = write_split(paths[split], law, seed, split, n_rows, chunk_rows)
        s = stats[split]
        say(f"generate: {split}: {n_rows:,} rows, {s['bytes'] / 1e6:,.1f} MB in {s['seconds']:.2f}s; "
            f"{s['mean_labels_per_row']:.2f} labels/row, {s['mean_nnz_per_row']:.1f} non-zeros/row; "
            f"head label {s['head_label']} in {100 * s['head_label_row_frequency']:.2f}% of rows "
            f"(busiest label {100 * s['busiest_label_row_frequency']:.2f}%); "
            f"{s['distinct_labels_seen']:,} distinct labels")
    total = time.perf_counter() - started
    say(f"generate: done in {total:.1f}s (law a={a}, q={q}: head-label probability per draw "
        f"{law.probabilities[0]:.5f}, about {100 * expected_head:.2f}% of rows at 5 labels/row)")
    meta = {"params": params, "stats": stats, "seconds": round(total, 3)}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {"paths": paths, "meta": meta, "generated": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Amazon-670K-shaped synthetic extreme-classification data")
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--test-rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default bench/data/amazon)")
    parser.add_argument("--a", type=float, default=1.0, help="Zipf-Mandelbrot exponent (default 1)")
    parser.add_argument("--q", type=float, default=50.0, help="Zipf-Mandelbrot offset (default 50)")
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="rows made and written at a time")
    parser.add_argument("--features", type=int, default=N_FEATURES, help=f"feature ids (default {N_FEATURES:,})")
    parser.add_argument("--labels", type=int, default=N_LABELS, help=f"label ids (default {N_LABELS:,})")
    parser.add_argument("--force", action="store_true", help="remake the files even if they are up to date")
    args = parser.parse_args(argv)
    if args.train_rows < 1 or args.test_rows < 1 or args.chunk_rows < 1 or args.seed < 0:
        parser.error("--train-rows, --test-rows and --chunk-rows must be >= 1, --seed >= 0")
    if args.a <= 0 or args.q < 0:
        parser.error("--a must be > 0 and --q >= 0")
    if args.features < 2 * PROTOTYPE_SIZE or args.labels < MAX_LABELS:
        parser.error(f"--features must be >= {2 * PROTOTYPE_SIZE} (distinct prototype members) and --labels >= "
                     f"{MAX_LABELS} (distinct labels per row)")
    generate(args.out, args.train_rows, args.test_rows, seed=args.seed, a=args.a, q=args.q,
             chunk_rows=args.chunk_rows, n_features=args.features, n_labels=args.labels, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
