"""The adapter registry: HF ``model_type`` -> adapter, filled by the :func:`register` decorator.

Family modules are found on disk and imported on the first lookup (not when
``layerprobe.extract`` is imported), so importing the package stays light and a new family is one
new module in this package, with no list to update.
"""

from __future__ import annotations

from collections.abc import Callable

from layerprobe.discovery import import_submodules
from layerprobe.extract.model.adapters.base import Adapter

_REGISTRY: dict[str, Adapter] = {}


def register(*model_types: str) -> Callable[[Callable[[str], Adapter]], Callable[[str], Adapter]]:
    """Register ``make(model_type) -> Adapter`` under each of ``model_types``."""

    def decorate(make: Callable[[str], Adapter]) -> Callable[[str], Adapter]:
        for model_type in model_types:
            if model_type in _REGISTRY:
                raise ValueError(f"adapter for model_type {model_type!r} registered twice")
            _REGISTRY[model_type] = make(model_type)
        return make

    return decorate


def registry() -> dict[str, Adapter]:
    """All registered adapters (imports every module of this package on first use)."""
    import_submodules(__package__)
    return dict(_REGISTRY)
