#!/usr/bin/env python3
"""PyTorch peer for extreme-classification text files on the CPU, with a full or a sampled softmax.

Network (the shape of boltc's ``specs/amazon670k.bolt`` on Amazon-670K-shaped data):
``EmbeddingBag(n_features, --hidden, mode="sum")`` with the feature values as per-sample weights (exactly a
bias-free linear layer on the sparse input) + a bias, ReLU, then an output layer (weight [n_labels, hidden],
bias [n_labels]) under a softmax. The sizes come from the files' header ``N_ROWS N_FEATURES N_LABELS``; rows
are ``l1,l2 f:v f:v ...`` with 0-based ids. Loss: cross-entropy against the row's labels spread evenly (target
1/n on each of its n labels), i.e. minus the mean over the row's labels of log_softmax, averaged over the batch.

--softmax picks what the softmax of a training batch runs over:

- ``full`` (default): all labels; Adam on every parameter.
- ``sampled``: one candidate set per batch, shared by its rows: the union of the batch's labels and --negatives
  labels drawn uniformly without replacement from all labels. Logits and log_softmax cover the candidates only;
  each row's labels are among them, and the other rows' labels act as its negatives. No logQ correction: every
  uniform negative would get the same one, a constant shift that the softmax ignores; only labels frequent
  enough to be in most batches anyway would be shifted less. The default 2048 negatives plus the ~1,150
  distinct labels of a batch of 256 Amazon-670K-shaped rows make ~3,200 candidates, about boltc's active set per
  row there (0.5% of 670,091 = 3,351). The candidates' output rows are looked up with sparse gradients and
  stepped by ``torch.optim.SparseAdam`` ("lazy" Adam: rows outside the candidates keep their moments unchanged
  instead of decaying them); the other parameters by Adam as in full mode. The alternative, a dense gradient of
  the output layer (index_select on a plain parameter) and a dense Adam step over all its rows, took 404 ms per
  batch against 71 ms at the Amazon shape (torch 2.13, 2 threads, quiet 2-core Xeon).

--input-update lazy gives the input layer (the EmbeddingBag) sparse gradients and SparseAdam too: only the rows
of a batch's features are stepped, as boltc steps a sparse input's layer. On wide hashed inputs (the CSV workloads'
~870,000 features) the dense Adam step over every row is most of a batch's time.

Evaluation is the same in both modes: dense scores of all labels, top-5.

Adam(lr=1e-4, betas=(0.9, 0.999), eps=1e-7), batch 256, reshuffled every epoch from --seed; the last, partial
batch of an epoch is kept. Weights start Glorot-uniform with zero biases, as boltc's do (--init torch gives what
nn.Linear would start with). The dense Adam is torch's fused CPU implementation by default (--adam foreach is
torch's default one: the same update, several times slower on a large full-softmax output layer).

Training runs until --time-budget seconds of pure training time (batch assembly including the negatives'
draw, forward, backward and the optimizer steps; no data loading, no evaluation) or --max-epochs, whichever
comes first; the budget is checked before each batch, so the last batch may overrun it a little.
Test precision@1 and @5 (and recall@k for each k of --recall-at) on the first --eval-rows test rows is
measured at the end of each epoch, every
--eval-every training seconds if given, and at the end, giving a (train_seconds, samples, p@1, p@5) curve.
Then: inference rows/s on those rows (batch --batch-size, forward + top-5, from the last evaluation), batch-1
latency (median of 50 single-row forward passes + top-5, after 3 warm-up passes), and peak RSS (getrusage
ru_maxrss). torch is imported in main() only, so other scripts can import the numpy reader (read_xc_text).

Progress goes to stderr; with --json the last stdout line is one JSON object.

Usage (from the repository root)::

    python bench/peers/torch_xmc.py --train bench/data/amazon/train.txt --test bench/data/amazon/test.txt \
        [--softmax sampled] --time-budget 60 --eval-rows 2000 --threads 2 --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import import_torch, log  # noqa: E402  (bench/common.py)

TOP_K = 5
LATENCY_CALLS = 50
LATENCY_WARMUP = 3


@dataclass
class XCData:
    """CSR features plus CSR label lists of an extreme-classification text file."""

    indptr: np.ndarray          # int64 [n_rows + 1]
    indices: np.ndarray         # int64 [nnz]
    values: np.ndarray          # float32 [nnz]
    label_indptr: np.ndarray    # int64 [n_rows + 1]
    labels: np.ndarray          # int64 [n_label_entries]
    n_features: int
    n_labels: int

    @property
    def n_rows(self) -> int:
        return self.indptr.size - 1


def _parse_numbers(text: str, sep: str, dtype) -> np.ndarray:
    if not text.strip():
        return np.empty(0, dtype=dtype)
    return np.fromstring(text, dtype=dtype, sep=sep)


def read_xc_text(path: Path, chunk_lines: int = 20_000, max_rows: int | None = None) -> XCData:
    """Read ``N_ROWS N_FEATURES N_LABELS`` + ``l1,l2 f:v f:v ...`` lines into CSR arrays, a chunk of lines at a
    time (per chunk: one string join and one numpy parse for the features, one for the labels).
    ``max_rows`` stops after that many rows."""
    with open(path, "r", encoding="ascii") as fh:
        header = fh.readline().split()
        if len(header) != 3:
            raise ValueError(f"{path}: header must be 'N_ROWS N_FEATURES N_LABELS'")
        n_rows, n_features, n_labels = (int(v) for v in header)
        wanted = n_rows if max_rows is None else min(n_rows, max_rows)
        feat_counts, lab_counts, feat_parts, val_parts, lab_parts = [], [], [], [], []
        seen = 0
        while seen < wanted:
            lines = list(itertools.islice(fh, min(chunk_lines, wanted - seen)))
            if not lines:
                break
            heads, rests = [], []
            fcount = np.empty(len(lines), dtype=np.int64)
            lcount = np.empty(len(lines), dtype=np.int64)
            for i, line in enumerate(lines):
                line = line.rstrip("\n")
                if not line or line[0] == " " or ":" in line.partition(" ")[0]:
                    head, rest = "", line.strip()            # no labels on this row
                else:
                    head, _, rest = line.partition(" ")
                heads.append(head)
                rests.append(rest)
                fcount[i] = rest.count(":")
                lcount[i] = head.count(",") + 1 if head else 0
            pairs = _parse_numbers(" ".join(rests).replace(":", " "), " ", np.float64)
            if pairs.size != 2 * int(fcount.sum()):
                raise ValueError(f"{path}: malformed feature entries near row {seen + 1}")
            labs = _parse_numbers(",".join(h for h in heads if h), ",", np.int64)
            if labs.size != int(lcount.sum()):
                raise ValueError(f"{path}: malformed label lists near row {seen + 1}")
            feat_parts.append(pairs[0::2].astype(np.int64))
            val_parts.append(pairs[1::2].astype(np.float32))
            lab_parts.append(labs)
            feat_counts.append(fcount)
            lab_counts.append(lcount)
            seen += len(lines)
    if seen != wanted:
        raise ValueError(f"{path}: header says {n_rows} rows, found only {seen}")

    def csr(counts):
        indptr = np.zeros(seen + 1, dtype=np.int64)
        if counts:
            np.cumsum(np.concatenate(counts), out=indptr[1:])
        return indptr

    indices = np.concatenate(feat_parts) if feat_parts else np.empty(0, dtype=np.int64)
    labels = np.concatenate(lab_parts) if lab_parts else np.empty(0, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= n_features):
        raise ValueError(f"{path}: feature id out of range 0..{n_features - 1}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"{path}: label id out of range 0..{n_labels - 1}")
    return XCData(csr(feat_counts), indices,
                  np.concatenate(val_parts) if val_parts else np.empty(0, dtype=np.float32),
                  csr(lab_counts), labels, n_features, n_labels)


def _gather(indptr: np.ndarray, rows: np.ndarray):
    """Positions of the CSR entries of ``rows`` (in that order) and each row's entry count."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    positions = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
    return positions, counts, offsets


def bag_inputs(data: XCData, rows: np.ndarray):
    """EmbeddingBag inputs for ``rows``: flat feature ids, bag offsets, per-sample weights (numpy)."""
    positions, _, offsets = _gather(data.indptr, rows)
    return data.indices[positions], offsets[:-1], data.values[positions]


def label_targets(data: XCData, rows: np.ndarray):
    """(batch row, label id, weight 1/n) for every label of ``rows``."""
    positions, counts, _ = _gather(data.label_indptr, rows)
    batch_rows = np.repeat(np.arange(rows.size, dtype=np.int64), counts)
    weights = np.repeat(1.0 / np.maximum(counts, 1), counts).astype(np.float32)
    return batch_rows, data.labels[positions], weights


def recall_from_hits(hit: np.ndarray, label_counts: np.ndarray, ks: Sequence[int]) -> dict:
    """recall@k = |top-k ∩ the row's labels| / its label count, from ``hit`` [rows, >= k] (True where a prediction
    is one of the row's labels), averaged over the rows that have labels: boltc's definition, where a test row
    whose labels training never saw (boltc leaves them out) does not count, while precision counts it as 0."""
    labelled = label_counts > 0
    if not labelled.any():
        return {f"recall@{k}": float("nan") for k in ks}
    return {f"recall@{k}": float((hit[labelled, :k].sum(axis=1) / label_counts[labelled]).mean()) for k in ks}


def precision_at(top: np.ndarray, data: XCData, n_rows: int, recall_ks: Sequence[int] = ()) -> dict:
    """precision@1 and @5 (|top-k ∩ labels| / k) averaged over the first n_rows rows, and recall@k for each of
    ``recall_ks`` (``top`` holds at least that many columns)."""
    n_labels = np.int64(data.n_labels)
    label_counts = np.diff(data.label_indptr[:n_rows + 1])
    true_rows = np.repeat(np.arange(n_rows, dtype=np.int64), label_counts)
    true_keys = np.sort(true_rows * n_labels + data.labels[:data.label_indptr[n_rows]])
    pred_keys = np.arange(n_rows, dtype=np.int64)[:, None] * n_labels + top.astype(np.int64)
    hit = np.isin(pred_keys, true_keys)
    return {"precision@1": float(hit[:, :1].sum(axis=1).mean() / 1),
            "precision@5": float(hit[:, :TOP_K].sum(axis=1).mean() / TOP_K),
            **recall_from_hits(hit, label_counts, recall_ks)}


def parse_recall_ks(text: str | None) -> tuple[int, ...]:
    """--recall-at "10,20" -> (10, 20); None or "" -> ()."""
    ks = tuple(int(part) for part in (text or "").split(",") if part.strip())
    if any(k < 1 for k in ks):
        raise ValueError(f"--recall-at takes positive k values, got {text!r}")
    return ks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PyTorch full- or sampled-softmax peer for extreme classification")
    parser.add_argument("--train", type=Path, required=True, help="training set (XC text format)")
    parser.add_argument("--test", type=Path, required=True, help="test set (XC text format)")
    parser.add_argument("--softmax", choices=("full", "sampled"), default="full",
                        help="full: over all labels (default); sampled: over the batch's labels plus --negatives")
    parser.add_argument("--negatives", type=int, default=2048,
                        help="uniform random negatives per batch with --softmax sampled (default 2048: with a "
                             "batch's ~1,150 labels, about boltc's 3,351 active neurons per row at the Amazon-670K "
                             "shape)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden layer width (default 128)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds of pure training time (default: no limit, --max-epochs decides)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="epoch limit (default 1 without --time-budget, else unlimited)")
    parser.add_argument("--eval-rows", type=int, default=2000, help="evaluate on the first N test rows")
    parser.add_argument("--recall-at", default=None,
                        help="also recall@k for these comma-separated k (the top-k predicted grows to the largest)")
    parser.add_argument("--eval-every", type=float, default=None,
                        help="also evaluate every this many training seconds (default: only at epoch ends "
                             "and at the end)")
    parser.add_argument("--input-update", choices=("dense", "lazy"), default="dense",
                        help="dense: Adam steps every input-layer row each batch (default); lazy: sparse gradients "
                             "and SparseAdam, only the rows of the batch's features (boltc's update of a sparse "
                             "input)")
    parser.add_argument("--init", choices=("glorot", "torch"), default="glorot",
                        help="glorot: Glorot-uniform weights, zero biases (as boltc); torch: PyTorch defaults")
    parser.add_argument("--adam", choices=("fused", "foreach", "loop"), default="fused",
                        help="torch.optim.Adam implementation of the dense parameters (default fused: the "
                             "fastest on this CPU; the same update)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last stdout line")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.threads, args.eval_rows, args.hidden) < 1:
        parser.error("--batch-size, --threads, --eval-rows and --hidden must be >= 1")
    if args.negatives < 0:
        parser.error("--negatives must be >= 0")
    if args.time_budget is not None and args.time_budget <= 0:
        parser.error("--time-budget must be > 0")
    if args.max_epochs is not None and args.max_epochs < 1:
        parser.error("--max-epochs must be >= 1")
    if args.eval_every is not None and args.eval_every <= 0:
        parser.error("--eval-every must be > 0")
    max_epochs = args.max_epochs or (1 if args.time_budget is None else 1_000_000)
    try:
        recall_ks = parse_recall_ks(args.recall_at)
    except ValueError as error:
        parser.error(str(error))
    depth = max((TOP_K, *recall_ks))  # how many labels each evaluated row ranks
    sampled = args.softmax == "sampled"

    torch = import_torch(args.threads, args.seed)
    import torch.nn.functional as F  # noqa: E402

    t0 = time.perf_counter()
    train = read_xc_text(args.train)
    test = read_xc_text(args.test, max_rows=args.eval_rows)
    load_seconds = time.perf_counter() - t0
    if (test.n_features, test.n_labels) != (train.n_features, train.n_labels):
        raise SystemExit(f"shapes differ: train {train.n_features}x{train.n_labels}, "
                         f"test {test.n_features}x{test.n_labels}")
    n_train, n_eval = train.n_rows, test.n_rows
    n_labels = train.n_labels
    if n_labels < depth:
        raise SystemExit(f"the top {depth} needs at least {depth} labels; the files have {n_labels}")
    n_negatives = min(args.negatives, n_labels) if sampled else None
    log(f"loaded {n_train:,} training rows ({train.indices.size / max(n_train, 1):.1f} nnz/row) and the first "
        f"{n_eval:,} test rows in {load_seconds:.2f}s; {train.n_features:,} features, {n_labels:,} labels")

    class Peer(torch.nn.Module):
        def __init__(self, n_features: int, n_labels: int, hidden: int):
            super().__init__()
            # sparse=True: a gradient of only the rows of the batch's features, for SparseAdam (--input-update)
            self.embed = torch.nn.EmbeddingBag(n_features, hidden, mode="sum", sparse=lazy_input)
            self.bias = torch.nn.Parameter(torch.zeros(hidden))
            # The output layer's bias is a column [n_labels, 1] so that the sampled softmax can look it up by
            # rows with a sparse gradient, like the weight (a sparse gradient cannot pass through a view).
            self.out_weight = torch.nn.Parameter(torch.empty(n_labels, hidden))
            self.out_bias = torch.nn.Parameter(torch.zeros(n_labels, 1))

        def forward(self, idx, offsets, weights, candidates=None):
            """Logits of every label, or of the label ids in ``candidates`` only (in that order)."""
            hidden = torch.relu(self.embed(idx, offsets, per_sample_weights=weights) + self.bias)
            if candidates is None:
                return F.linear(hidden, self.out_weight, self.out_bias[:, 0])
            # Sparse gradients: only the candidates' rows get a gradient and an optimizer step.
            weight = F.embedding(candidates, self.out_weight, sparse=True)
            bias = F.embedding(candidates, self.out_bias, sparse=True)
            return torch.addmm(bias.T, hidden, weight.T)

    lazy_input = args.input_update == "lazy"
    model = Peer(train.n_features, n_labels, args.hidden)
    with torch.no_grad():
        if args.init == "glorot":
            # Glorot-uniform on the [fan_in, fan_out] layers, zero biases: what boltc's initialize does.
            for weight, fan_in, fan_out in ((model.embed.weight, train.n_features, args.hidden),
                                            (model.out_weight, args.hidden, n_labels)):
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                weight.uniform_(-limit, limit)
            model.bias.zero_()
        else:
            # What nn.Linear(fan_in, fan_out) starts with, weight and bias U(+-1/sqrt(fan_in)) (EmbeddingBag's
            # own default would be N(0, 1)).
            for params, fan_in in (((model.embed.weight, model.bias), train.n_features),
                                   ((model.out_weight, model.out_bias), args.hidden)):
                bound = 1.0 / math.sqrt(fan_in)
                for param in params:
                    param.uniform_(-bound, bound)
    adam_options = {"fused": True} if args.adam == "fused" else {"foreach": args.adam == "foreach"}
    betas, eps = (0.9, 0.999), 1e-7
    sparse_params = [model.embed.weight] if lazy_input else []
    dense_params = [model.bias] + ([] if lazy_input else [model.embed.weight])
    (sparse_params if sampled else dense_params).extend([model.out_weight, model.out_bias])
    optimizers = [torch.optim.Adam(dense_params, lr=args.lr, betas=betas, eps=eps, **adam_options)]
    if sparse_params:
        optimizers.append(torch.optim.SparseAdam(sparse_params, lr=args.lr, betas=betas, eps=eps))
    n_params = sum(p.numel() for p in model.parameters())

    def batch_tensors(data: XCData, rows: np.ndarray):
        idx, offsets, weights = bag_inputs(data, rows)
        return torch.from_numpy(idx), torch.from_numpy(offsets), torch.from_numpy(weights)

    negative_rng = np.random.default_rng([args.seed, 1])    # a stream apart from the shuffle's

    def softmax_columns(labels: np.ndarray):
        """(candidate label ids or None for all labels, the softmax column of each entry of ``labels``)."""
        if not sampled:
            return None, torch.from_numpy(labels)
        negatives = negative_rng.choice(n_labels, n_negatives, replace=False)
        candidates = np.union1d(labels, negatives)              # sorted and unique: searchsorted finds the labels
        return torch.from_numpy(candidates), torch.from_numpy(np.searchsorted(candidates, labels))

    def evaluate():
        """(metrics, seconds) over the eval rows; dense scores of all labels, batch --batch-size."""
        model.eval()
        top = np.empty((n_eval, depth), dtype=np.int64)
        started = time.perf_counter()
        with torch.no_grad():
            for lo in range(0, n_eval, args.batch_size):
                rows = np.arange(lo, min(lo + args.batch_size, n_eval), dtype=np.int64)
                logits = model(*batch_tensors(test, rows))
                # softmax is monotonic: the top-k of the logits is the top-k of the probabilities.
                top[lo:lo + rows.size] = torch.topk(logits, depth, dim=1).indices.numpy()
                del logits
        seconds = time.perf_counter() - started
        model.train()
        return precision_at(top, test, n_eval, recall_ks), seconds

    curve: list[dict] = []
    eval_seconds: list[float] = []

    def record_point(train_seconds: float, samples: int, why: str) -> None:
        metrics, seconds = evaluate()
        eval_seconds.append(seconds)
        curve.append({"train_seconds": train_seconds, "samples": samples, **metrics})
        recalls = "".join(f", R@{k} {metrics[f'recall@{k}']:.4f}" for k in recall_ks)
        log(f"[{why}] {train_seconds:.1f}s of training, {samples:,} samples: test P@1 {metrics['precision@1']:.4f}, "
            f"P@5 {metrics['precision@5']:.4f}{recalls} (eval {seconds:.1f}s, {n_eval / seconds:,.0f} rows/s)")

    shuffle = np.random.default_rng(args.seed)
    train_seconds = 0.0
    samples = 0
    loss_sum = 0.0
    loss_rows = 0
    candidate_sum = 0
    steps = 0
    epochs_done = 0
    next_eval = args.eval_every
    next_log = 10.0
    out_of_time = False
    log(f"training: {args.softmax} softmax{f' ({n_negatives:,} negatives per batch)' if sampled else ''}, "
        f"{n_params:,} parameters, hidden {args.hidden}, batch {args.batch_size}, lr {args.lr}, "
        f"{args.threads} threads, budget {args.time_budget if args.time_budget is not None else 'none'}s, "
        f"max epochs {max_epochs}")
    model.train()
    for epoch in range(max_epochs):
        order = shuffle.permutation(n_train)
        for lo in range(0, n_train, args.batch_size):
            if args.time_budget is not None and train_seconds >= args.time_budget:
                out_of_time = True
                break
            started = time.perf_counter()
            rows = order[lo:lo + args.batch_size]
            idx, offsets, weights = batch_tensors(train, rows)
            t_rows, t_labels, t_weights = label_targets(train, rows)
            candidates, t_columns = softmax_columns(t_labels)
            logits = model(idx, offsets, weights, candidates)
            log_probs = F.log_softmax(logits, dim=1)
            del logits
            picked = log_probs[torch.from_numpy(t_rows), t_columns]
            loss = -(picked * torch.from_numpy(t_weights)).sum() / rows.size
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            loss.backward()
            del log_probs
            for optimizer in optimizers:
                optimizer.step()
            step_loss = float(loss.detach())
            train_seconds += time.perf_counter() - started
            samples += rows.size
            steps += 1
            candidate_sum += n_labels if candidates is None else candidates.numel()
            loss_sum += step_loss * rows.size
            loss_rows += rows.size
            if not math.isfinite(step_loss):
                raise SystemExit(f"training diverged: loss {step_loss} after {samples} samples")
            if train_seconds >= next_log:
                # With --softmax sampled the loss is over the candidates: lower than the full softmax's.
                log(f"  {train_seconds:.0f}s: {samples:,} samples, {samples / train_seconds:,.1f} samples/s, "
                    f"mean loss {loss_sum / loss_rows:.4f}")
                loss_sum, loss_rows = 0.0, 0
                next_log = train_seconds + 10.0
            if next_eval is not None and train_seconds >= next_eval:
                record_point(train_seconds, samples, "every")
                while next_eval <= train_seconds:       # stay on multiples of --eval-every
                    next_eval += args.eval_every
        if out_of_time:
            break
        epochs_done += 1
        record_point(train_seconds, samples, f"epoch {epoch + 1}")
    if not curve or curve[-1]["samples"] != samples:
        record_point(train_seconds, samples, "budget" if out_of_time else "end")
    final = {k: curve[-1][k] for k in ("precision@1", "precision@5", *(f"recall@{k}" for k in recall_ks))}
    samples_per_second = samples / train_seconds if train_seconds > 0 else 0.0
    inference_rows_per_second = n_eval / eval_seconds[-1] if eval_seconds[-1] > 0 else 0.0
    mean_candidates = candidate_sum / steps if steps else None

    # Batch-1 latency: one row's forward pass and top-5, dense scores of all labels.
    model.eval()
    one = batch_tensors(test, np.array([0], dtype=np.int64))
    timings = []
    with torch.no_grad():
        for call in range(LATENCY_WARMUP + LATENCY_CALLS):
            started = time.perf_counter()
            torch.topk(model(*one), TOP_K, dim=1)
            if call >= LATENCY_WARMUP:
                timings.append(time.perf_counter() - started)
    latency_ms = 1000.0 * float(np.median(timings))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB

    log(f"trained {train_seconds:.1f}s: {samples:,} samples ({samples / n_train:.3f} epochs), "
        f"{samples_per_second:,.1f} samples/s"
        f"{f', {mean_candidates:,.0f} candidates per batch' if sampled and mean_candidates else ''}; "
        f"final P@1 {final['precision@1']:.4f}, P@5 {final['precision@5']:.4f}; "
        f"inference {inference_rows_per_second:,.0f} rows/s; batch-1 latency {latency_ms:.2f} ms; "
        f"peak RSS {peak_rss_mb:,.0f} MB")

    if args.json:
        record = {
            "system": f"pytorch-{args.softmax}-softmax",
            "version": torch.__version__,
            "threads": args.threads,
            "batch_size": args.batch_size,
            "samples_per_second": samples_per_second,
            "train_seconds": train_seconds,
            "samples_seen": samples,
            "curve": curve,
            "final": final,
            "inference_rows_per_second": inference_rows_per_second,
            "latency_ms_batch1": latency_ms,
            "peak_rss_mb": peak_rss_mb,
            "torch_version": torch.__version__,
            "epochs": samples / n_train,
            "epochs_completed": epochs_done,
            "time_budget": args.time_budget,
            "lr": args.lr,
            "seed": args.seed,
            "init": args.init,
            "adam": args.adam,
            "n_train": n_train,
            "n_eval": n_eval,
            "n_parameters": n_params,
            "mean_candidates_per_batch": mean_candidates,
            "eval_seconds": eval_seconds,
            "load_seconds": load_seconds,
            "config": {
                "train": str(args.train),
                "test": str(args.test),
                "softmax": args.softmax,
                "negatives": n_negatives,
                "hidden": args.hidden,
                "n_features": train.n_features,
                "n_labels": n_labels,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "betas": list(betas),
                "eps": eps,
                "init": args.init,
                "adam": args.adam,
                "output_optimizer": "SparseAdam" if sampled else f"Adam ({args.adam})",
                "input_optimizer": "SparseAdam" if lazy_input else f"Adam ({args.adam})",
                "seed": args.seed,
                "time_budget": args.time_budget,
                "max_epochs": args.max_epochs,
                "eval_every": args.eval_every,
                "eval_rows": args.eval_rows,
                "recall_at": list(recall_ks),
            },
        }
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
