"""``boltc demo``: the main job on an embedded default.

The CLI compiles specs/demo.bolt (shipped in the package) and trains it on synthetic documents generated here:
each topic owns a set of characteristic words, and a document mixes words of its topic with common noise
words, so the task is learnable but not trivial. The data go through the same file reader as real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from boltc.resources import specs_dir

VOCABULARY = 5000
TOPICS = 50
WORDS_PER_TOPIC = 60
WORDS_PER_DOCUMENT = 30
TOPICAL_FRACTION = 0.2


def synthetic_documents(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(word ids [rows, WORDS_PER_DOCUMENT], topic [rows]) with fixed topic vocabularies."""
    topic_words = np.random.default_rng(12345).integers(0, VOCABULARY, size=(TOPICS, WORDS_PER_TOPIC))
    rng = np.random.default_rng(seed)
    topics = rng.integers(0, TOPICS, size=rows)
    topical = rng.random((rows, WORDS_PER_DOCUMENT)) < TOPICAL_FRACTION
    from_topic = topic_words[topics[:, None], rng.integers(0, WORDS_PER_TOPIC, size=(rows, WORDS_PER_DOCUMENT))]
    noise = rng.integers(0, VOCABULARY, size=(rows, WORDS_PER_DOCUMENT))
    return np.where(topical, from_topic, noise), topics


def write_xmc(path: Path, words: np.ndarray, topics: np.ndarray) -> None:
    """The extreme-classification text format: header, then `label f:v ...` with each distinct word once."""
    lines = [f"{len(topics)} {VOCABULARY} {TOPICS}"]
    for topic, row in zip(topics.tolist(), words):
        unique, counts = np.unique(row, return_counts=True)
        lines.append(f"{topic} " + " ".join(f"{w}:{c}" for w, c in zip(unique.tolist(), counts.tolist())))
    path.write_text("\n".join(lines) + "\n")


def write_demo_files(directory: Path) -> tuple[Path, Path, Path]:
    """The bundled demo spec and synthetic training and test files written into `directory`: (spec, train, test)."""
    train_path, test_path = directory / "train.txt", directory / "test.txt"
    write_xmc(train_path, *synthetic_documents(20000, seed=1))
    write_xmc(test_path, *synthetic_documents(4000, seed=2))
    return specs_dir() / "demo.bolt", train_path, test_path
