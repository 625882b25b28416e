#!/usr/bin/env python3
"""Debian package descriptions -> Debtags: a multi-label text classification workload from the local apt index.

Reads every Packages and Translation-en file apt has (``apt-get update -o Acquire::Languages=en`` fetches them),
keeps the packages with semantic Debtags, splits them 80/20 by source package and writes, into ``--out``:

- ``train.txt`` / ``test.txt``: the extreme-classification text format, header ``N_ROWS N_FEATURES N_LABELS``, then
  ``l1,l2 f:v f:v ...`` per package (label ids sorted, feature ids ascending, values with 6 significant digits);
- ``train.ft.txt`` / ``test.ft.txt``: the same packages for fastText, ``__label__TAG ... lowercased tokens``;
- ``labels.txt``: one tag per line, line number (0-based) = label id;
- ``meta.json``: the parameters, counts and the index files read.

Features: the tokens of the short + long description and their adjacent pairs, hashed (CRC-32) into
``--features`` buckets, weighted by sublinear tf times idf (from the training split) and L2-normalised per row.
Labels are the tags used by at least 5 training packages; the count therefore depends on the apt index and the
seed; ``specs/debtags.bolt``'s ``multilabel[auto]`` takes it from the training file's header.

The work is skipped when the outputs are newer than the index files and were made with the same parameters,
unless ``--force``.

Usage (from the repository root)::

    python bench/debtags/prepare.py [--out bench/data/debtags] [--features 1048576] [--seed 0] [--force]
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bench"))
from apt_index import (TEST_FRACTION, UPDATE_HINT, IndexFile, find_index_files, first_stanzas,  # noqa: E402
                       log, read_translations, source_name, split_by_source, split_tags)
from common import prepare_arguments, up_to_date_meta, write_atomic  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "bench" / "data" / "debtags"
DEFAULT_FEATURES = 2**20

MIN_TRAIN_PACKAGES_PER_TAG = 5  # below this a tag is too rare to learn or to measure
FORMAT_VERSION = 1  # bump when the output for the same index and parameters changes

# Lowercase runs of letters, digits and '+', '.', '-' that start with a letter or digit and end with one or with
# '+': keeps names such as c++, gtk-3, python3.11, x86-64 and e-mail whole, while a sentence's final '.' or a
# dash used as punctuation falls away. Everything else ('/', ':', quotes, brackets) separates tokens.
TOKEN = re.compile(r"[a-z0-9](?:[a-z0-9+.\-]*[a-z0-9+])?")


def is_semantic_tag(tag: str) -> bool:
    """False for the Debtags vocabulary's bookkeeping tags, which say nothing about the package.

    - ``special::*``: the tag database's own markers (``special::not-yet-tagged`` and the like); bookworm has
      none, older indexes do.
    - ``FACET::TODO`` and ``devel::lang:TODO``: "this facet still needs tagging" placeholders (27 of them in
      bookworm, e.g. ``suite::TODO``, ``role::TODO``), not a property of the package.

    The other facets stay: ``role::`` (program, shared-lib, documentation, ...) and ``suite::`` (gnome, kde, emacs,
    ...) are real properties that descriptions state ("This package contains the shared library", "part of the
    GNOME desktop"), as are ``implemented-in::``, ``made-of::`` and ``iso15924::``.
    """
    return not tag.startswith("special::") and tag.rsplit(":", 1)[-1] != "TODO"


# ---- the tagged packages of the apt index (bench/apt_index.py reads it) --------------------------------------


@dataclass(frozen=True)
class Package:
    name: str
    source: str
    tags: tuple[str, ...]  # semantic tags only, sorted
    text: str


@dataclass
class IndexReading:
    packages: list[Package]
    stanzas: int  # Packages stanzas read, duplicates included
    unique: int  # distinct package names
    tagged: int  # distinct packages with a Tag field
    without_translation: int  # kept packages whose text is the Packages file's own Description
    bookkeeping_tags: list[str]  # the tags dropped as non-semantic


def read_index(files: list[IndexFile]) -> IndexReading:
    """The packages with at least one semantic tag, one per package name (the first apt lists).

    The text comes from Translation-en, matched on (Package, Description-md5), else on Package alone, else the
    Packages file's Description field; of a package listed by several suites, the first stanza apt lists.
    """
    translations = read_translations(files)
    chosen, stanzas = first_stanzas(files, frozenset({"Source", "Tag", "Description", "Description-md5"}))

    packages, bookkeeping, tagged, without_translation = [], set(), 0, 0
    for name, stanza in sorted(chosen.items()):
        if "Tag" not in stanza:
            continue
        tagged += 1
        tags = set(split_tags(stanza["Tag"]))
        semantic = {tag for tag in tags if is_semantic_tag(tag)}
        bookkeeping |= tags - semantic
        if not semantic:
            continue
        text, translated = translations.text_of(stanza)
        without_translation += not translated
        packages.append(Package(name, source_name(stanza), tuple(sorted(semantic)), text))
    return IndexReading(packages, stanzas, len(chosen), tagged, without_translation, sorted(bookkeeping))


# ---- split, labels and features -------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def terms(tokens: list[str]) -> Iterator[str]:
    """Unigrams and adjacent bigrams; a bigram joins its tokens with a blank, which no unigram holds."""
    yield from tokens
    for first, second in zip(tokens, tokens[1:]):
        yield f"{first} {second}"


class TermHasher:
    """Term -> bucket by CRC-32 of the UTF-8 bytes: the same ids on every run and machine, unlike hash()."""

    def __init__(self, n_buckets: int):
        self.n_buckets = n_buckets
        self.cache: dict[str, int] = {}

    def bucket(self, term: str) -> int:
        found = self.cache.get(term)
        if found is None:
            found = self.cache[term] = zlib.crc32(term.encode("utf-8")) % self.n_buckets
        return found


@dataclass
class CountMatrix:
    """Term counts per row in CSR form, bucket ids ascending within a row."""

    indptr: np.ndarray
    indices: np.ndarray
    counts: np.ndarray


def count_terms(token_lists: Iterable[list[str]], hasher: TermHasher) -> CountMatrix:
    indptr, indices, counts = [0], [], []
    for tokens in token_lists:
        buckets, row_counts = np.unique(np.fromiter((hasher.bucket(t) for t in terms(tokens)), dtype=np.int64),
                                        return_counts=True)
        indices.append(buckets)
        counts.append(row_counts)
        indptr.append(indptr[-1] + len(buckets))
    return CountMatrix(np.array(indptr, dtype=np.int64), np.concatenate(indices), np.concatenate(counts))


def inverse_document_frequency(train: CountMatrix, n_rows: int, n_buckets: int) -> np.ndarray:
    """Smoothed idf, ln((1 + N) / (1 + df)) + 1, from the training rows; 0 for buckets no training row has, whose
    weights the model never trains (they would only add their random initial values to a test row's score)."""
    df = np.bincount(train.indices, minlength=n_buckets)
    idf = np.log((1.0 + n_rows) / (1.0 + df)) + 1.0
    idf[df == 0] = 0.0
    return idf


def tf_idf_rows(matrix: CountMatrix, idf: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(bucket ids, values) per row: (1 + ln count) * idf, L2-normalised; zero entries left out."""
    values = (1.0 + np.log(matrix.counts)) * idf[matrix.indices]
    rows = []
    for start, stop in zip(matrix.indptr[:-1], matrix.indptr[1:]):
        ids, row = matrix.indices[start:stop], values[start:stop]
        present = row > 0
        ids, row = ids[present], row[present]
        norm = math.sqrt(float(row @ row))
        rows.append((ids, row / norm if norm else row))
    return rows


# ---- output ---------------------------------------------------------------------------------------------------


def xmc_text(rows: list[tuple[np.ndarray, np.ndarray]], labels: list[list[int]], n_features: int,
             n_labels: int) -> str:
    lines = [f"{len(rows)} {n_features} {n_labels}"]
    for (ids, values), row_labels in zip(rows, labels):
        entries = " ".join(f"{i}:{v:.6g}" for i, v in zip(ids.tolist(), values.tolist()))
        lines.append(f"{','.join(map(str, row_labels))} {entries}")
    return "\n".join(lines) + "\n"


def fasttext_text(token_lists: list[list[str]], tag_lists: list[list[str]]) -> str:
    return "".join(" ".join([*(f"__label__{tag}" for tag in tags), *tokens]) + "\n"
                   for tokens, tags in zip(token_lists, tag_lists))


OUTPUT_NAMES = ("train.txt", "test.txt", "train.ft.txt", "test.ft.txt", "labels.txt", "meta.json")


def existing_meta(out_dir: Path, files: list[IndexFile], features: int, seed: int) -> dict | None:
    """The meta of outputs made with these parameters after the index files last changed, else None."""
    return up_to_date_meta(out_dir, OUTPUT_NAMES, [f.path for f in files],
                           {"format_version": FORMAT_VERSION, "features": features, "seed": seed})


def mean(values: Iterable[int]) -> float:
    values = list(values)
    return round(sum(values) / len(values), 3) if values else 0.0


def prepare(out_dir: Path = DEFAULT_OUT, features: int = DEFAULT_FEATURES, seed: int = 0,
            force: bool = False) -> dict:
    """Writes the workload into ``out_dir`` (skipped when up to date unless ``force``) and returns its meta."""
    if features < 1:
        raise SystemExit(f"prepare: error: --features must be positive, got {features}")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    files = find_index_files()
    if not any(f.kind == "Packages" for f in files):
        raise SystemExit(f"prepare: error: apt has no Packages index on disk; {UPDATE_HINT}")
    if not force and (meta := existing_meta(out_dir, files, features, seed)) is not None:
        log(f"up to date: {out_dir} ({meta['train_rows']} train, {meta['test_rows']} test rows, "
            f"{meta['labels']} labels); --force rebuilds")
        return meta

    index = read_index(files)
    if not index.packages:
        raise SystemExit(f"prepare: error: no package in apt's index has a Debtags Tag field "
                         f"({index.stanzas} stanzas read); {UPDATE_HINT}")
    if not any(f.kind == "Translations" for f in files):
        log("warning: no Translation-en index: only short descriptions are available; " + UPDATE_HINT)
    log(f"{index.unique} packages, {index.tagged} with tags, {len(index.packages)} with semantic tags")

    train, test = split_by_source(index.packages, seed)
    tag_counts = Counter(tag for p in train for tag in p.tags)
    label_names = sorted(tag for tag, count in tag_counts.items() if count >= MIN_TRAIN_PACKAGES_PER_TAG)
    label_ids = {tag: i for i, tag in enumerate(label_names)}
    rare_tags = sorted(set(tag_counts) - set(label_ids))
    test_tags = Counter(tag for p in test for tag in p.tags)
    unlearned_test_tags = {tag: n for tag, n in test_tags.items() if tag not in label_ids}

    def labelled(packages: list[Package]) -> list[Package]:
        """The packages left with a label; the rest have only tags too rare in training."""
        return [p for p in packages if any(tag in label_ids for tag in p.tags)]

    train_kept, test_kept = labelled(train), labelled(test)
    log(f"split by source: {len(train_kept)} train rows ({len(train) - len(train_kept)} without a label left), "
        f"{len(test_kept)} test rows ({len(test) - len(test_kept)} without a label left); "
        f"{len(label_names)} labels")

    hasher = TermHasher(features)
    train_tokens = [tokenize(p.text) for p in train_kept]
    test_tokens = [tokenize(p.text) for p in test_kept]
    train_counts = count_terms(train_tokens, hasher)
    test_counts = count_terms(test_tokens, hasher)
    idf = inverse_document_frequency(train_counts, len(train_kept), features)
    train_rows, test_rows = tf_idf_rows(train_counts, idf), tf_idf_rows(test_counts, idf)
    train_tags = [[tag for tag in p.tags if tag in label_ids] for p in train_kept]
    test_tag_lists = [[tag for tag in p.tags if tag in label_ids] for p in test_kept]
    log(f"featurized {len(hasher.cache)} distinct terms into {features} buckets "
        f"({int(np.count_nonzero(idf))} used by training rows)")

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows, tokens, tags in (("train", train_rows, train_tokens, train_tags),
                                     ("test", test_rows, test_tokens, test_tag_lists)):
        ids = [[label_ids[tag] for tag in row_tags] for row_tags in tags]  # sorted: tags and ids share one order
        write_atomic(out_dir / f"{name}.txt", xmc_text(rows, ids, features, len(label_names)))
        write_atomic(out_dir / f"{name}.ft.txt", fasttext_text(tokens, tags))
    write_atomic(out_dir / "labels.txt", "".join(f"{tag}\n" for tag in label_names))

    meta = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "features": features,
        "labels": len(label_names),
        "test_fraction_of_sources": TEST_FRACTION,
        "min_train_packages_per_tag": MIN_TRAIN_PACKAGES_PER_TAG,
        "packages_stanzas_read": index.stanzas,
        "packages_unique": index.unique,
        "packages_with_tags": index.tagged,
        "packages_with_semantic_tags": len(index.packages),
        "packages_without_translation": index.without_translation,
        "sources_train": len({p.source for p in train}),
        "sources_test": len({p.source for p in test}),
        "train_rows": len(train_kept),
        "test_rows": len(test_kept),
        "train_packages_without_label": len(train) - len(train_kept),
        "test_packages_without_label": len(test) - len(test_kept),
        "dropped_bookkeeping_tags": index.bookkeeping_tags,
        "dropped_rare_tags": len(rare_tags),
        "test_tags_unseen_in_labels": len(unlearned_test_tags),
        "test_tag_assignments_dropped": sum(unlearned_test_tags.values()),
        "mean_labels_per_row": {"train": mean(map(len, train_tags)), "test": mean(map(len, test_tag_lists))},
        "mean_nnz_per_row": {"train": mean(len(ids) for ids, _ in train_rows),
                             "test": mean(len(ids) for ids, _ in test_rows)},
        "index_files": [{"kind": f.kind, "origin": f.origin, "path": str(f.path)} for f in files],
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_atomic(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")  # last: it marks a complete output
    log(f"wrote {out_dir} in {meta['seconds']} s: {meta['train_rows']} train / {meta['test_rows']} test rows, "
        f"{meta['labels']} labels, "
        f"{meta['mean_nnz_per_row']['train']} non-zeros per training row")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = prepare_arguments(__doc__.split("\n\n")[0], DEFAULT_OUT, REPO_ROOT)
    parser.add_argument("--features", type=int, default=DEFAULT_FEATURES,
                        help=f"hash buckets, the input size (default: {DEFAULT_FEATURES})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default: 0)")
    args = parser.parse_args(argv)
    prepare(args.out, args.features, args.seed, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
