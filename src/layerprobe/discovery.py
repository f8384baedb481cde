"""Find a package's modules on disk, so registries fill themselves from the files that exist.

Adapters and tiny-model builders register by decorator in one module per family; importing every
module of their package is what registers them. Adding a family is then one new file, with no
hand-kept module list to update (and forget).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any


def import_submodules(package: str) -> tuple[str, ...]:
    """Import every public module directly inside ``package``, in name order; return their names.

    Names starting with ``_`` are left alone (private helpers import what they need themselves).
    """
    path = importlib.import_module(package).__path__
    names = tuple(sorted(info.name for info in pkgutil.iter_modules(path) if not info.name.startswith("_")))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose public names load their module on first use
    (PEP 562), so importing the package stays light. ``exports``: name -> sub-module (relative to
    ``package``); ``namespace``: the package's ``globals()``, where a loaded name is kept."""

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return getattr_, dir_
