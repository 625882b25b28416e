"""The local apt index as the Debian workloads read it (bench/debtags/prepare.py, bench/debian/prepare.py): which
Packages and Translation-en files apt has, their deb822 stanzas, each package's English description and the
80/20 split by source package. Scripts import it after putting bench/ on sys.path."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence, TypeVar

import numpy as np

APT_HELPER = "/usr/lib/apt/apt-helper"
UPDATE_HINT = "run `apt-get update -o Acquire::Languages=en` (as root) to fetch the package lists with their tags"
TEST_FRACTION = 0.2


def log(message: str) -> None:
    print(f"prepare: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class IndexFile:
    kind: str  # "Packages" or "Translations"
    path: Path
    origin: str  # site, release and component, e.g. "http://deb.debian.org/debian bookworm/main"


def find_index_files() -> list[IndexFile]:
    """The Packages and Translation-en files apt knows and has on disk, in apt's order (sources.list order)."""
    fields = "$(CREATED_BY)\t$(FILENAME)\t$(SITE) $(RELEASE)/$(COMPONENT)"
    try:
        # Acquire::Languages=en: the lists exist, but apt lists Translation targets only for configured languages.
        listing = subprocess.run(["apt-get", "indextargets", "-o", "Acquire::Languages=en", "--format", fields],
                                 capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"prepare: error: cannot list apt's index files ({exc}); {UPDATE_HINT}") from None
    files = []
    for line in listing.splitlines():
        kind, path, origin = line.split("\t")
        if kind in ("Packages", "Translations") and Path(path).is_file():
            files.append(IndexFile(kind, Path(path), origin))
    return files


def read_index_text(path: Path) -> str:
    """The file's text, decompressed by apt (the lists are lz4 or another format Python may lack)."""
    try:
        return subprocess.run([APT_HELPER, "cat-file", str(path)], capture_output=True, text=True, check=True,
                              encoding="utf-8", errors="replace").stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"prepare: error: cannot read {path} with {APT_HELPER}: {exc}") from None


def parse_deb822(text: str, wanted: frozenset[str]) -> Iterator[dict[str, str]]:
    """The stanzas of a deb822 file, each as {field: value} for the ``wanted`` fields.

    A value is its first line, then its continuation lines as they stand (leading blank included), joined by
    newlines.
    """
    stanza: dict[str, str] = {}
    field = None
    for line in text.splitlines():
        if not line.strip():
            if stanza:
                yield stanza
            stanza, field = {}, None
        elif line[0] in " \t":
            if field is not None:
                stanza[field] += "\n" + line
        else:
            name, _, value = line.partition(":")
            field = name if name in wanted else None
            if field is not None:
                stanza[field] = value.strip()
    if stanza:
        yield stanza


def split_tags(value: str) -> list[str]:
    return [tag.strip() for tag in value.replace("\n", " ").split(",") if tag.strip()]


def description_text(value: str) -> str:
    """Short description, then the long one's lines; a " ." line (a paragraph break) becomes an empty line."""
    short, *long_lines = value.split("\n")
    body = ["" if line.strip() == "." else line.strip() for line in long_lines]
    return "\n".join([short.strip(), *body]).strip()


def source_name(stanza: dict[str, str]) -> str:
    """The source package a binary stanza was built from: "Source: foo (1.2-3)" is foo; no Source field, itself."""
    return stanza.get("Source", stanza["Package"]).split(" (", 1)[0].strip()


@dataclass
class Translations:
    """The English descriptions of Translation-en, by (Package, Description-md5) and, as a fallback, by name."""

    by_md5: dict[tuple[str, str], str]
    by_name: dict[str, str]

    def text_of(self, stanza: dict[str, str]) -> tuple[str, bool]:
        """(description, whether Translation-en had it) of a Packages stanza: matched on (Package,
        Description-md5), else on Package alone, else the stanza's own Description field (often the short one
        only: bookworm's Packages files leave the long descriptions to Translation-en)."""
        name = stanza["Package"]
        found = self.by_md5.get((name, stanza.get("Description-md5", ""))) or self.by_name.get(name)
        if found is not None:
            return found, True
        return description_text(stanza.get("Description", "")), False


def read_translations(files: Sequence[IndexFile]) -> Translations:
    translations = Translations({}, {})
    for index in (f for f in files if f.kind == "Translations"):
        log(f"reading {index.path.name}")
        for stanza in parse_deb822(read_index_text(index.path),
                                   frozenset({"Package", "Description-md5", "Description-en"})):
            if "Package" in stanza and "Description-en" in stanza:
                text = description_text(stanza["Description-en"])
                translations.by_md5[stanza["Package"], stanza.get("Description-md5", "")] = text
                translations.by_name.setdefault(stanza["Package"], text)
    return translations


def first_stanzas(files: Sequence[IndexFile], fields: frozenset[str]) -> tuple[dict[str, dict[str, str]], int]:
    """({package name: its first Packages stanza, the ``fields`` of it}, stanzas read, duplicates included).

    A package listed by several suites (release, updates, security) usually has the same fields in all; the first
    occurrence, the release in the default sources order, is kept."""
    chosen: dict[str, dict[str, str]] = {}
    stanzas = 0
    for index in (f for f in files if f.kind == "Packages"):
        log(f"reading {index.path.name}")
        for stanza in parse_deb822(read_index_text(index.path), fields | {"Package"}):
            if "Package" in stanza:
                stanzas += 1
                chosen.setdefault(stanza["Package"], stanza)
    return chosen, stanzas


HasSource = TypeVar("HasSource")  # anything with a ``source`` attribute


def split_by_source(packages: list[HasSource], seed: int) -> tuple[list[HasSource], list[HasSource]]:
    """(train, test): a seeded permutation of the sorted source names puts TEST_FRACTION of them in test, so all
    binary packages built from one source land on the same side (they share most of their description)."""
    sources = sorted({p.source for p in packages})
    order = np.random.default_rng(seed).permutation(len(sources))
    test_sources = {sources[i] for i in order[:round(TEST_FRACTION * len(sources))]}
    train = [p for p in packages if p.source not in test_sources]
    test = [p for p in packages if p.source in test_sources]
    return train, test
