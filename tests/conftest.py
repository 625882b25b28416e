"""Shared fixtures: a private compile cache per test session, and helpers to write specs."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Compile into a cache of this session's own, so tests never depend on (or pollute) the user's cache."""
    if "BOLTC_TEST_KEEP_CACHE" not in os.environ:
        os.environ["BOLTC_CACHE_DIR"] = str(tmp_path_factory.mktemp("boltc-cache"))
    # tests assert on the formulas' plans and stay fast; the tuner's own tests ask for it
    os.environ["BOLTC_TUNE"] = "off"
    yield


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(text, name="model.bolt") -> path of a spec file holding the dedented text."""

    def write(text: str, name: str = "model.bolt") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write
