"""Where the files that ship beside the Python code live: grammar/, templates/, runtime/ and specs/.

In the repository they sit at the top level; an installed package carries them as ``boltc/<name>/``
(pyproject.toml maps them), and an editable install still reads them from the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"boltc is installed without its {name}/ folder (looked in {_PACKAGE_DIR})")


def grammar_path() -> Path:
    return resource_dir("grammar") / "bolt.lark"


def templates_dir() -> Path:
    return resource_dir("templates")


def runtime_dir() -> Path:
    return resource_dir("runtime")


def specs_dir() -> Path:
    return resource_dir("specs")
