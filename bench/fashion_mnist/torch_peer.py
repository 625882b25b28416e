#!/usr/bin/env python3
"""PyTorch peer of boltc's Fashion-MNIST spec, for the CPU benchmark.

Network: Linear(784, 256) -> ReLU -> Linear(256, 10), softmax cross-entropy,
Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-7), batch 256, reshuffled every epoch
from --seed. The last, partial batch of an epoch is kept.

Reads the extreme-classification text files written by convert.py into dense float32
arrays. Per-epoch training time (time.perf_counter) excludes data loading and
evaluation. Progress goes to stderr; with --json the last stdout line is one JSON object.

Usage (from the repository root)::

    python bench/fashion_mnist/torch_peer.py --train bench/data/fashion_mnist/train.txt \
        --test bench/data/fashion_mnist/test.txt --epochs 5 --threads 2 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import import_torch, log  # noqa: E402  (bench/common.py)

HIDDEN = 256


def read_xc_text(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Parse an extreme-classification text file into (X float32 [N, F], y int64 [N], n_labels).

    Only the first label of each row is used (Fashion-MNIST rows carry exactly one).
    """
    with open(path, "r", encoding="ascii") as fh:
        header = fh.readline().split()
        body = fh.read()
    if len(header) != 3:
        raise ValueError(f"{path}: header must be 'N_POINTS N_FEATURES N_LABELS'")
    n_points, n_features, n_labels = (int(v) for v in header)

    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != n_points:
        raise ValueError(f"{path}: header says {n_points} points, found {len(lines)} rows")

    heads = []
    rests = []
    counts = np.empty(n_points, dtype=np.int64)
    for i, line in enumerate(lines):
        head, _, rest = line.partition(" ")
        heads.append(head.partition(",")[0])
        rests.append(rest)
        counts[i] = rest.count(":")
    if any(h == "" for h in heads):
        raise ValueError(f"{path}: a row has no label")
    y = np.array(heads, dtype=np.int64)

    flat = " ".join(rests).replace(":", " ")
    # float32 parses faster and holds feature ids exactly up to 2**24.
    parse_dtype = np.float32 if n_features <= 2**24 else np.float64
    pairs = np.fromstring(flat, dtype=parse_dtype, sep=" ") if flat.strip() else np.empty(0)
    if pairs.size != 2 * int(counts.sum()):
        raise ValueError(f"{path}: malformed feature tokens")
    feat = pairs[0::2].astype(np.int64)
    vals = pairs[1::2].astype(np.float32)
    if feat.size and (feat.min() < 0 or feat.max() >= n_features):
        raise ValueError(f"{path}: feature id out of range 0..{n_features - 1}")
    if y.size and (y.min() < 0 or y.max() >= n_labels):
        raise ValueError(f"{path}: label out of range 0..{n_labels - 1}")

    x = np.zeros((n_points, n_features), dtype=np.float32)
    x[np.repeat(np.arange(n_points), counts), feat] = vals
    return x, y, n_labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PyTorch peer for boltc's Fashion-MNIST spec")
    parser.add_argument("--train", type=Path, required=True, help="training set (XC text format)")
    parser.add_argument("--test", type=Path, required=True, help="test set (XC text format)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-rows", type=int, default=None, help="evaluate on the first N test rows (default all)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last stdout line")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.threads < 1:
        parser.error("--epochs, --batch-size and --threads must be >= 1")

    torch = import_torch(args.threads, args.seed)

    t0 = time.perf_counter()
    x_train_np, y_train_np, n_labels = read_xc_text(args.train)
    x_test_np, y_test_np, _ = read_xc_text(args.test)
    log(f"loaded {args.train} {x_train_np.shape} and {args.test} {x_test_np.shape} "
        f"in {time.perf_counter() - t0:.2f}s")
    n_features = x_train_np.shape[1]
    if x_test_np.shape[1] != n_features:
        raise SystemExit(f"feature count differs: train {n_features}, test {x_test_np.shape[1]}")

    x_train = torch.from_numpy(x_train_np)
    y_train = torch.from_numpy(y_train_np)
    x_test = torch.from_numpy(x_test_np[:args.eval_rows])
    y_test = torch.from_numpy(y_test_np[:args.eval_rows])
    n_train = x_train.shape[0]

    model = torch.nn.Sequential(
        torch.nn.Linear(n_features, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, n_labels),
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-7)
    shuffle_gen = torch.Generator().manual_seed(args.seed)

    def accuracy() -> tuple[float, float]:
        model.eval()
        started = time.perf_counter()
        with torch.no_grad():
            correct = 0
            for lo in range(0, x_test.shape[0], 4096):
                pred = model(x_test[lo:lo + 4096]).argmax(dim=1)
                correct += int((pred == y_test[lo:lo + 4096]).sum())
        return correct / x_test.shape[0], time.perf_counter() - started

    epoch_seconds: list[float] = []
    epoch_loss: list[float] = []
    curve: list[dict] = []
    for epoch in range(args.epochs):
        model.train()
        loss_sum = torch.zeros(())
        start = time.perf_counter()
        perm = torch.randperm(n_train, generator=shuffle_gen)
        for lo in range(0, n_train, args.batch_size):
            idx = perm[lo:lo + args.batch_size]
            xb = x_train.index_select(0, idx)
            yb = y_train.index_select(0, idx)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * idx.numel()
        elapsed = time.perf_counter() - start
        epoch_seconds.append(elapsed)
        epoch_loss.append(float(loss_sum) / n_train)
        tested, eval_seconds = accuracy()
        # accuracy is P@1 for one label per row
        curve.append({"train_seconds": sum(epoch_seconds), "samples": n_train * (epoch + 1),
                      "precision@1": tested, "accuracy": tested})
        log(f"epoch {epoch + 1}/{args.epochs}: {elapsed:.3f}s, {n_train / elapsed:,.0f} samples/s, mean train loss "
            f"{epoch_loss[-1]:.4f}, test accuracy {tested:.4f}")

    train_seconds = sum(epoch_seconds)
    samples_per_second = n_train * args.epochs / train_seconds
    final = curve[-1]["accuracy"]
    log(f"test accuracy {final:.4f} ({x_test.shape[0]} points, {eval_seconds:.2f}s); "
        f"train {train_seconds:.3f}s, {samples_per_second:,.0f} samples/s at {args.threads} threads")

    if args.json:
        record = {
            "system": "pytorch",
            "version": torch.__version__,
            "epochs": args.epochs,
            "epoch_seconds": epoch_seconds,
            "train_seconds": train_seconds,
            "samples_seen": int(n_train) * args.epochs,
            "samples_per_second": samples_per_second,
            "curve": curve,
            "final": {"precision@1": final, "accuracy": final},
            "inference_rows_per_second": x_test.shape[0] / eval_seconds,
            "threads": args.threads,
            "config": {"hidden": HIDDEN, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                       "adam_eps": 1e-7},
            "n_train": int(n_train),
            "n_eval": int(x_test.shape[0]),
            "epoch_train_loss": epoch_loss,
        }
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
