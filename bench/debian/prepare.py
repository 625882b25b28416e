#!/usr/bin/env python3
"""Debian packages -> their Section (utils, libs, python, ...): a single-label text classification workload from the
local apt index, as CSV files with a header for boltc's typed columns.

Reads every Packages and Translation-en file apt has (bench/apt_index.py; ``apt-get update -o
Acquire::Languages=en`` fetches them), keeps one row per package name that has a Section, splits the packages 80/20
by source package (seeded; every binary package of a source lands on the same side) and writes, into ``--out``:

- ``train.csv`` / ``test.csv``: columns ``package, source, section, short_description, long_description, tags,
  depends, relations, architecture, multi_arch, priority, installed_size, size`` (RFC 4180: the long description keeps its line breaks,
  quoted);
- ``train.ft.txt`` / ``test.ft.txt``: the same rows for fastText, ``__label__SECTION`` and then every column but
  the section as lowercased words (the words boltc's text() columns see), the short columns' values as tokens
  marked with their column (``dep:libc6``, ``tag:role::program``, ``arch:all``, ...);
- ``train.graph.ft.txt`` / ``test.graph.ft.txt``: the graph workload's rows for fastText (specs/debian_graph.bolt's
  view of a package): its description words and its dependency-graph neighbours' short-description words;
- ``train.depends.ft.txt`` / ``test.depends.ft.txt``: the recommendation workload's rows for fastText: the packages a
  package depends on or recommends as labels (in the test file only those training names), and the words of its
  name and descriptions;
- ``meta.json``: the counts (``sections_train`` is the count specs/debian_section.bolt's ``classes[auto]`` learns), the
  sections' frequencies and the index files read.

The section's area prefix (``contrib/``, ``non-free/``, ``non-free-firmware/``) is stripped: it says under which
license the package ships, not what it is (``contrib/utils`` packages are utilities like ``utils`` ones), no
description states it, and keeping it would split each section's few non-free packages into classes of their own.
Which areas apt lists (sources.list's components) then changes the rows, never the set of classes.

Columns other than the description: ``tags`` is the Debtags field as it stands (comma-separated; about half the
packages have one), ``depends`` the names in Depends and Pre-Depends (space-separated, versions, architecture
qualifiers and the ``|`` between alternatives dropped), ``relations`` the same of Pre-Depends, Depends and
Recommends (the edges of specs/debian_graph.bolt's dependency graph, the labels of specs/debian_depends.bolt),
``architecture`` ``all`` or ``amd64``, ``multi_arch`` (``same`` marks most shared libraries), ``priority``, and two
skewed numbers (specs/debian_sizes.bolt): ``installed_size`` (KiB unpacked) and ``size`` (bytes of the .deb). None
of them is derived from the section.

The work is skipped when the outputs are newer than the index files and were made with the same parameters,
unless ``--force``.

Usage (from the repository root)::

    python bench/debian/prepare.py [--out bench/data/debian] [--seed 0] [--force]
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from collections import Counter
from dataclasses import astuple, dataclass, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bench"))
from apt_index import (TEST_FRACTION, UPDATE_HINT, find_index_files, first_stanzas, log,  # noqa: E402
                       read_translations, source_name, split_by_source, split_tags)
from common import prepare_arguments, up_to_date_meta, write_atomic  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "bench" / "data" / "debian"
FORMAT_VERSION = 4  # bump when the output for the same index and parameters changes
OUTPUT_NAMES = ("train.csv", "test.csv", "train.ft.txt", "test.ft.txt", "train.graph.ft.txt", "test.graph.ft.txt",
                "train.depends.ft.txt", "test.depends.ft.txt", "meta.json")
PACKAGE_FIELDS = frozenset({"Source", "Section", "Description", "Description-md5", "Tag", "Depends", "Pre-Depends",
                            "Recommends",
                            "Architecture", "Multi-Arch", "Priority", "Installed-Size", "Size"})

# boltc's text() words: runs of ASCII letters, digits and '_' and of any non-ASCII character, ASCII lowercased.
WORD = re.compile(r"[0-9A-Za-z_\u0080-\U0010ffff]+")
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class PackageRow:
    """One CSV row; the field names are the CSV header."""

    package: str
    source: str
    section: str
    short_description: str
    long_description: str
    tags: str
    depends: str
    relations: str
    architecture: str
    multi_arch: str
    priority: str
    installed_size: str  # KiB unpacked (Installed-Size), empty where the index has none
    size: str  # bytes of the .deb (Size)


HEADER = [f.name for f in fields(PackageRow)]


def without_area(section: str) -> str:
    """``contrib/utils`` -> ``utils``: the area is a license, not a kind of package (see the module docstring)."""
    return section.rsplit("/", 1)[-1]


def dependency_names(stanza: dict[str, str], fields=("Pre-Depends", "Depends")) -> str:
    """The package names of the relation ``fields``, blank-separated, each once, in their order:
    ``libc6 (>= 2.34), python3:any | pypy`` -> ``libc6 python3 pypy``."""
    names: dict[str, None] = {}
    for field in fields:
        for alternative in re.split(r"[,|]", stanza.get(field, "")):
            name = alternative.split("(", 1)[0].split("[", 1)[0].split(":", 1)[0].strip()
            if name:
                names.setdefault(name)
    return " ".join(names)


def package_rows(stanzas: dict[str, dict[str, str]], translations) -> tuple[list[PackageRow], dict[str, int]]:
    """A row per package with a Section, sorted by name; and counts of what was left out or changed."""
    rows, counts = [], Counter()
    for name, stanza in sorted(stanzas.items()):
        if not stanza.get("Section"):
            counts["without_section"] += 1
            continue
        counts["area_prefix_stripped"] += "/" in stanza["Section"]
        text, translated = translations.text_of(stanza)
        counts["without_translation"] += not translated
        short, _, long = text.partition("\n")
        rows.append(PackageRow(
            package=name, source=source_name(stanza), section=without_area(stanza["Section"]),
            short_description=short.strip(), long_description=long.strip(),
            tags=", ".join(split_tags(stanza.get("Tag", ""))), depends=dependency_names(stanza),
            relations=dependency_names(stanza, ("Pre-Depends", "Depends", "Recommends")),
            architecture=stanza.get("Architecture", ""), multi_arch=stanza.get("Multi-Arch", ""),
            priority=stanza.get("Priority", ""), installed_size=stanza.get("Installed-Size", "").strip(),
            size=stanza.get("Size", "").strip()))
    return rows, dict(counts)


def csv_text(rows: list[PackageRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(astuple(row) for row in rows)
    return buffer.getvalue()


def words(text: str) -> list[str]:
    return [word.translate(ASCII_LOWER) for word in WORD.findall(text)]


def fasttext_line(row: PackageRow) -> str:
    """``__label__SECTION`` and the row's other columns as fastText tokens (see the module docstring)."""
    marked = [*(f"tag:{tag}" for tag in split_tags(row.tags)), *(f"dep:{name}" for name in row.depends.split()),
              f"arch:{row.architecture}", f"ma:{row.multi_arch or 'no'}", f"prio:{row.priority or 'none'}"]
    text = words(" ".join([row.package, row.source, row.short_description, row.long_description]))
    return " ".join([f"__label__{row.section}", *text, *marked]) + "\n"


def graph_fasttext_lines(rows: list[PackageRow], known: list[PackageRow]) -> str:
    """fastText lines of the graph workload: ``__label__SECTION``, the package's own description words, and the
    short-description words of its neighbours marked ``n:`` (each word once): the packages it depends on or
    recommends and those that depend on or recommend it, among ``rows`` and ``known`` (what specs/debian_graph.bolt
    sees: training rows see the training packages; test rows the test and training packages)."""
    short_words = {row.package: words(row.short_description) for row in known}
    short_words.update((row.package, words(row.short_description)) for row in rows)
    edges: dict[str, set[str]] = {}
    for row in [*known, *rows]:
        for target in row.relations.split():
            if target in short_words and target != row.package:
                edges.setdefault(row.package, set()).add(target)
                edges.setdefault(target, set()).add(row.package)
    lines = []
    for row in rows:
        around = sorted({word for near in edges.get(row.package, ()) for word in short_words[near]})
        own = words(" ".join([row.short_description, row.long_description]))
        lines.append(" ".join([f"__label__{row.section}", *own, *(f"n:{word}" for word in around)]) + "\n")
    return "".join(lines)


def depends_fasttext_lines(rows: list[PackageRow], known: set[str] | None) -> str:
    """fastText lines of the recommendation workload: a ``__label__`` per package the row depends on or recommends
    (in ``known`` only, when given: what specs/debian_depends.bolt can predict), then the words of the package's
    name and descriptions."""
    lines = []
    for row in rows:
        labels = [f"__label__{name}" for name in row.relations.split() if known is None or name in known]
        text = words(" ".join([row.package, row.short_description, row.long_description]))
        lines.append(" ".join([*labels, *text]) + "\n")
    return "".join(lines)


def prepare(out_dir: Path = DEFAULT_OUT, seed: int = 0, force: bool = False) -> dict:
    """Writes the workload into ``out_dir`` (skipped when up to date unless ``force``) and returns its meta."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    files = find_index_files()
    if not any(f.kind == "Packages" for f in files):
        raise SystemExit(f"prepare: error: apt has no Packages index on disk; {UPDATE_HINT}")
    parameters = {"format_version": FORMAT_VERSION, "seed": seed}
    if not force and (meta := up_to_date_meta(out_dir, OUTPUT_NAMES, [f.path for f in files], parameters)):
        log(f"up to date: {out_dir} ({meta['train_rows']} train, {meta['test_rows']} test rows, "
            f"{meta['sections_train']} sections); --force rebuilds")
        return meta
    if not any(f.kind == "Translations" for f in files):
        log("warning: no Translation-en index: only short descriptions are available; " + UPDATE_HINT)

    stanzas, stanzas_read = first_stanzas(files, PACKAGE_FIELDS)
    rows, counts = package_rows(stanzas, read_translations(files))
    train, test = split_by_source(rows, seed)
    train_sections = Counter(row.section for row in train)
    unseen = Counter(row.section for row in test if row.section not in train_sections)
    log(f"{len(stanzas)} packages, {len(rows)} with a section; split by source: {len(train)} train, {len(test)} "
        f"test rows; {len(train_sections)} sections in training"
        + (f" ({sum(unseen.values())} test rows of sections training lacks: {dict(unseen)})" if unseen else ""))

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        write_atomic(out_dir / f"{name}.csv", csv_text(part))
        write_atomic(out_dir / f"{name}.ft.txt", "".join(map(fasttext_line, part)))
    write_atomic(out_dir / "train.graph.ft.txt", graph_fasttext_lines(train, []))
    write_atomic(out_dir / "test.graph.ft.txt", graph_fasttext_lines(test, train))
    write_atomic(out_dir / "train.depends.ft.txt", depends_fasttext_lines(train, None))
    write_atomic(out_dir / "test.depends.ft.txt",
                 depends_fasttext_lines(test, {name for row in train for name in row.relations.split()}))
    meta = {
        **parameters,
        "test_fraction_of_sources": TEST_FRACTION,
        "packages_stanzas_read": stanzas_read,
        "packages_unique": len(stanzas),
        "packages_without_section": counts.get("without_section", 0),
        "packages_without_translation": counts.get("without_translation", 0),
        "sections_with_area_prefix_stripped": counts.get("area_prefix_stripped", 0),
        "sources_train": len({row.source for row in train}),
        "sources_test": len({row.source for row in test}),
        "train_rows": len(train),
        "test_rows": len(test),
        "sections_train": len(train_sections),
        "test_rows_of_sections_unseen_in_training": sum(unseen.values()),
        "rows_with_tags": {"train": sum(bool(r.tags) for r in train), "test": sum(bool(r.tags) for r in test)},
        "section_frequencies_train": dict(train_sections.most_common()),
        "index_files": [{"kind": f.kind, "origin": f.origin, "path": str(f.path)} for f in files],
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_atomic(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")  # last: it marks a complete output
    log(f"wrote {out_dir} in {meta['seconds']} s: {meta['train_rows']} train / {meta['test_rows']} test rows, "
        f"{meta['sections_train']} sections in training")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = prepare_arguments(__doc__.split("\n\n")[0], DEFAULT_OUT, REPO_ROOT)
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split (default: 0)")
    args = parser.parse_args(argv)
    prepare(args.out, args.seed, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
