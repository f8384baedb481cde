"""Find a package's modules on disk, so registries fill themselves from the files that exist.

Adapters and tiny-model builders register by decorator in one module per family; importing every
module of their package is what registers them. Adding a family is then one new file, with no
hand-kept module list to update (and forget).
"""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package: str) -> tuple[str, ...]:
    """Import every public module directly inside ``package``, in name order; return their names.

    Names starting with ``_`` are left alone (private helpers import what they need themselves).
    """
    path = importlib.import_module(package).__path__
    names = tuple(sorted(info.name for info in pkgutil.iter_modules(path) if not info.name.startswith("_")))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
