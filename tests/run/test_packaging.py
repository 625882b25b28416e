"""The installed package holds every module of the source tree: setuptools ships only the packages pyproject.toml
lists, so a new subpackage (a hash family's or a layer op's folder) missing from the list works in an editable
install and fails to import in a real one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11's")
def test_every_python_package_of_the_source_tree_is_listed_for_installation():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "boltc").rglob("__init__.py")}
    assert found <= listed, f"not listed in pyproject.toml's packages: {sorted(found - listed)}"
