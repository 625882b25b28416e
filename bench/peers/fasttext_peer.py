#!/usr/bin/env python3
"""fastText peer: a supervised fastText classifier (bag of token embeddings averaged into a --dim hidden
vector, then a multi-label output layer), trained on the CPU with fastText's own lock-free threads.

Input, either of:
- fastText text files (--train-ft/--test-ft, e.g. ``train.ft.txt``: ``__label__A __label__B tokens ...``),
  used as they are; defaults to word bigrams (--word-ngrams 2);
- otherwise the XC text files (--train/--test), converted into temporary fastText files with one token
  ``f<id>`` per non-zero feature. The feature VALUES are dropped: fastText averages the embeddings of a
  row's tokens with equal weights, so tf-idf or counts have no say. Word n-grams are off (an XC row is an
  unordered set of feature ids), and so are the hashed n-gram buckets they would need.

Loss (--loss): ``ova`` (default) is fastText's multi-label loss, one independent sigmoid per label, updated
on every label of every example: its cost per example grows with the label count (it is a full output
layer), fine for hundreds or thousands of labels, far too slow for Amazon-670K's 670,091. ``hs``
(hierarchical softmax over a Huffman tree, log2(labels) per update) is the usual choice at that scale; with
several labels on a line, fastText's softmax losses train on one of them drawn at random each time.

Precision@1/@5 of the top-5 predictions (threshold 0) on the first --eval-rows test rows, against that
file's labels (matched by their ``__label__`` names; a row without labels scores 0), and with --recall-at K
recall@K of the top K (over the rows that have labels, as boltc counts it).

Curve: fastText trains in one call, so every --epochs entry (default 1,2,4,8,16,32) trains a fresh model and
gives one point, each with that model's own training time. With --time-budget, the next entry runs only
if the time spent so far plus its projected time (the last one's time per epoch times its epochs) stays
within the budget; the first always runs. The top-level train_seconds, samples_seen and samples_per_second
describe the last (largest) model, whose precision is "final"; total_train_seconds sums all of them.
train_seconds is the train_supervised call, which includes fastText reading the training file (twice: its
dictionary, then the passes) and initializing the matrices: the Python API cannot separate them.
Inference rows/s times model.predict over the evaluated rows' texts, which fastText runs on one thread.

Progress goes to stderr; with --json the last stdout line is one JSON object (bench/peers/xc_eval.py).

Usage (from the repository root)::

    python bench/peers/fasttext_peer.py --train-ft bench/data/debtags/train.ft.txt \
        --test-ft bench/data/debtags/test.ft.txt --threads 2 --time-budget 60 --json
    python bench/peers/fasttext_peer.py --train bench/data/amazon/train.txt --test bench/data/amazon/test.txt \
        --loss hs --threads 2 --time-budget 300 --json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xc_eval import (NO_LABEL, TOP_K, XCData, add_contract_arguments, check_contract_arguments,  # noqa: E402
                     claim_stdout_for_record, curve_point, distribution_version, log, parse_recall_ks, peak_rss_mb,
                     precision_at_k, print_record, read_xc_text, recall_at_k, set_thread_environment, timed,
                     top_k_ids)

LABEL_PREFIX = "__label__"      # fastText's default: any token starting with it is a label
DEFAULT_BUCKETS = 2_000_000     # fastText's default number of hashed word n-gram rows

FtRow = tuple[list[str], str]   # (label tokens, the text fastText sees)


def xc_rows_as_text(data: XCData) -> Iterator[FtRow]:
    """Each XC row as fastText labels ``__label__<id>`` and tokens ``f<feature id>`` (values dropped)."""
    feature_tokens = [f"f{feature}" for feature in range(data.n_features)]
    for row in range(data.n_rows):
        features = data.indices[data.indptr[row]:data.indptr[row + 1]].tolist()
        labels = data.labels[data.label_indptr[row]:data.label_indptr[row + 1]].tolist()
        yield ([f"{LABEL_PREFIX}{label}" for label in labels],
               " ".join([feature_tokens[feature] for feature in features]))


def write_ft_file(rows: Iterable[FtRow], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for labels, text in rows:
            fh.write(" ".join(labels + [text]) + "\n")


def read_ft_rows(path: Path, max_rows: int) -> list[FtRow]:
    """The first max_rows lines of a fastText file, split the way fastText reads them: a token starting with
    __label__ is a label wherever it stands, the rest is the text."""
    rows = []
    with open(path, "r", encoding="utf-8") as fh:
        for line in fh:
            if len(rows) == max_rows:
                break
            tokens = line.split()
            rows.append(([t for t in tokens if t.startswith(LABEL_PREFIX)],
                         " ".join(t for t in tokens if not t.startswith(LABEL_PREFIX))))
    return rows


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def label_lists_as_csr(label_lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """CSR label ids (indptr, ids) of the rows' label names, and the name -> id map (ids in order of
    appearance)."""
    ids: dict[str, int] = {}
    indptr = np.zeros(len(label_lists) + 1, dtype=np.int64)
    flat: list[int] = []
    for row, names in enumerate(label_lists):
        flat.extend(ids.setdefault(name, len(ids)) for name in names)
        indptr[row + 1] = len(flat)
    return indptr, np.asarray(flat, dtype=np.int64), ids


def parse_epoch_schedule(text: str) -> list[int]:
    epochs = [int(part) for part in text.split(",") if part.strip()]
    if not epochs or any(e < 1 for e in epochs) or epochs != sorted(set(epochs)):
        raise ValueError("--epochs must be increasing positive integers, e.g. 1,2,4,8")
    return epochs


def load_inputs(args: argparse.Namespace, text_input: bool, scratch: Path) -> tuple[Path, int, list[FtRow]]:
    """(fastText training file, its row count, the evaluation rows), converting XC files into scratch."""
    if text_input:
        return args.train_ft, count_lines(args.train_ft), read_ft_rows(args.test_ft, args.eval_rows)
    train = read_xc_text(args.train)
    train_path = scratch / "train.ft.txt"
    write_ft_file(xc_rows_as_text(train), train_path)
    return train_path, train.n_rows, list(xc_rows_as_text(read_xc_text(args.test, max_rows=args.eval_rows)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fastText supervised peer for extreme classification")
    add_contract_arguments(parser, data_required=False)
    parser.add_argument("--train-ft", type=Path, help="training set in fastText format (instead of --train)")
    parser.add_argument("--test-ft", type=Path, help="test set in fastText format (instead of --test)")
    parser.add_argument("--loss", choices=("ova", "hs", "softmax", "ns"), default="ova",
                        help="ova: one-vs-all sigmoids, fastText's multi-label loss (default); hs: hierarchical "
                             "softmax, for very many labels")
    parser.add_argument("--dim", type=int, default=128, help="embedding (hidden) width; 128 as boltc's specs")
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--word-ngrams", type=int, default=None,
                        help="default 2 on fastText text input, 1 on XC feature ids (they have no order)")
    parser.add_argument("--buckets", type=int, default=DEFAULT_BUCKETS,
                        help="hashed n-gram rows when --word-ngrams > 1 (each costs --dim floats of memory)")
    parser.add_argument("--min-count", type=int, default=1)
    parser.add_argument("--epochs", default="1,2,4,8,16,32",
                        help="comma-separated epoch counts, one freshly trained model (curve point) each")
    parser.add_argument("--recall-at", default=None,
                        help="also recall@k for these comma-separated k (the top-k predicted grows to the largest)")
    args = parser.parse_args(argv)
    check_contract_arguments(parser, args)
    text_input = args.train_ft is not None or args.test_ft is not None
    if text_input and (args.train_ft is None or args.test_ft is None):
        parser.error("--train-ft and --test-ft go together")
    if not text_input and (args.train is None or args.test is None):
        parser.error("give --train and --test (XC text), or --train-ft and --test-ft (fastText text)")
    try:
        epoch_schedule = parse_epoch_schedule(args.epochs)
        recall_ks = parse_recall_ks(args.recall_at)
    except ValueError as error:
        parser.error(str(error))
    depth = max((TOP_K, *recall_ks))  # how many labels each evaluated row ranks
    word_ngrams = args.word_ngrams or (2 if text_input else 1)

    record_stream = claim_stdout_for_record()
    set_thread_environment(args.threads)
    import fasttext  # noqa: E402  (after the thread environment)

    with tempfile.TemporaryDirectory(prefix="fasttext_peer_") as scratch:
        (train_path, n_train, test_rows), load_seconds, _ = timed(
            load_inputs, args, text_input, Path(scratch))
        n_eval = len(test_rows)
        label_indptr, test_labels, label_ids = label_lists_as_csr([labels for labels, _ in test_rows])
        test_texts = [text for _, text in test_rows]
        log(f"loaded in {load_seconds:.2f}s ({'fastText text' if text_input else 'XC converted to f<id> tokens'}):"
            f" {n_train:,} training rows, {n_eval:,} evaluation rows")

        hyper = {"loss": args.loss, "dim": args.dim, "lr": args.lr, "wordNgrams": word_ngrams,
                 "minCount": args.min_count, "bucket": args.buckets if word_ngrams > 1 else 0,
                 "thread": args.threads, "seed": args.seed}
        curve: list[dict] = []
        spent = 0.0
        seconds_per_epoch = None        # of the last model trained
        for epochs in epoch_schedule:
            if seconds_per_epoch is not None and args.time_budget is not None:
                projected = seconds_per_epoch * epochs
                if spent + projected > args.time_budget:
                    log(f"stopping: {epochs} epochs would take about {projected:.1f}s more, past the "
                        f"{args.time_budget:g}s budget ({spent:.1f}s spent)")
                    break
            # verbose=1: fastText's summary lines, without the progress line it redraws every 100 ms.
            model, train_seconds, cpu_seconds = timed(
                fasttext.train_supervised, input=str(train_path), epoch=epochs, verbose=1, **hyper)
            final_epochs, seconds_per_epoch = epochs, train_seconds / epochs
            spent += train_seconds
            (predicted, _), predict_seconds, _ = timed(model.predict, test_texts, k=depth, threshold=0.0)
            top = top_k_ids(([label_ids.get(name, NO_LABEL) for name in names] for names in predicted), depth)
            precision = {**precision_at_k(top, label_indptr, test_labels),
                         **recall_at_k(top, label_indptr, test_labels, recall_ks)}
            curve.append(curve_point(train_seconds, n_train * epochs, precision))
            recalls = "".join(f", R@{k} {precision[f'recall@{k}']:.4f}" for k in recall_ks)
            log(f"{epochs} epochs: {train_seconds:.2f}s ({cpu_seconds / train_seconds:.2f} cores busy), "
                f"P@1 {precision['precision@1']:.4f}, P@5 {precision['precision@5']:.4f}{recalls}; "
                f"predict {n_eval / predict_seconds:,.0f} rows/s; {len(model.get_labels()):,} labels")
            del model

    final = curve[-1]
    record = {
        "system": "fasttext",
        "version": distribution_version("fasttext-wheel", "fasttext"),
        "train_seconds": final["train_seconds"],
        "samples_seen": final["samples"],
        "samples_per_second": final["samples"] / final["train_seconds"],
        "curve": curve,
        "final": {k: final[k] for k in ("precision@1", "precision@5", *(f"recall@{k}" for k in recall_ks))},
        "inference_rows_per_second": n_eval / predict_seconds,
        "threads": args.threads,
        "config": {**hyper, "epochs": final_epochs, "epoch_schedule": epoch_schedule,
                   "input": "fastText text" if text_input else "XC feature ids as tokens f<id>, values dropped",
                   "time_budget": args.time_budget},
        "load_seconds": load_seconds,
        "n_train": n_train,
        "n_eval": n_eval,
        "total_train_seconds": spent,
        "peak_rss_mb": peak_rss_mb(),
    }
    log(f"final ({final_epochs} epochs, {record['train_seconds']:.2f}s, {record['samples_per_second']:,.0f} "
        f"samples/s): P@1 {record['final']['precision@1']:.4f}, P@5 {record['final']['precision@5']:.4f}; "
        f"{spent:.1f}s of training over {len(curve)} models; peak RSS {record['peak_rss_mb']:,.0f} MB")
    if args.json:
        print_record(record, record_stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
