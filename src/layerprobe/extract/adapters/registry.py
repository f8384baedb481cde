"""The adapter registry: HF ``model_type`` -> adapter, filled by the :func:`register` decorator.

Family modules are imported on the first lookup (not when ``layerprobe.extract`` is imported), so
importing the package stays light and registration has no import-time side effect elsewhere.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from layerprobe.extract.adapters.base import Adapter

_FAMILY_MODULES = ("llava", "llava_next", "qwen2_vl", "qwen3_vl", "gemma3", "idefics3", "paligemma")
"""Modules under ``layerprobe.extract.adapters`` that register families."""

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
    """All registered adapters (imports the family modules on first use)."""
    for name in _FAMILY_MODULES:
        importlib.import_module(f"layerprobe.extract.adapters.{name}")
    return dict(_REGISTRY)
