"""Extraction: load an MLLM, capture every site in one forward per batch, stream into a store.

Names are re-exported lazily (PEP 562), so ``import layerprobe.extract`` does not import torch or
transformers; each name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_model": "loading",
    "load_processor": "loading",
    "LoadedModel": "loading",
    "get_adapter": "adapters",
    "supported_families": "adapters",
    "load_site_spec": "adapters",
    "Adapter": "adapters",
    "SitePaths": "adapters",
    "Capturer": "capture",
    "CaptureResult": "capture",
    "build_tiny": "tiny",
    "TINY_FAMILIES": "tiny",
    "render_prompt": "prompt",
    "candidate_token_ids": "prompt",
    "encode_batch": "prompt",
    "ExtractConfig": "config",
    "run_extract": "runner",
    "Manifest": "datasets",
    "resolve_dataset": "datasets",
    "get_recipe": "recipes",
}
"""Public name -> module under ``layerprobe.extract`` that defines it."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'layerprobe.extract' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"layerprobe.extract.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
