"""Registries that fill themselves: every module of a package that defines a given name contributes its value, so
that adding a hash family or a layer op is adding its module, with no list to edit beside it."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Iterable


def members(package: str, path: Iterable[str], attribute: str) -> list[Any]:
    """The `attribute` of every module of `package` (at `path`) that defines it, in the order of module names."""
    found = []
    for module in sorted(pkgutil.iter_modules(path), key=lambda info: info.name):
        value = getattr(importlib.import_module(f"{package}.{module.name}"), attribute, None)
        if value is not None:
            found.append(value)
    return found
