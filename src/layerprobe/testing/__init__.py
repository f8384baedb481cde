"""Fixtures for tests, the demo and the benchmarks; no library module but the demo imports this.

- :mod:`.tiny`: tiny random-weight checkpoints of every family (:func:`build_tiny`), one builder
  module per family, registered by decorator and found on disk like the adapters;
- :mod:`.images`: a synthetic, labelled ultrasound-like image set with a real visual signal;
- :mod:`.stores`: synthetic activation stores (written through the real ``StoreWriter``, or held in
  memory as an ``InMemoryStore``), with the vocab's layer names.

Importing this package loads numpy and the standard library only; torch and transformers are
imported when a checkpoint is built.
"""

from __future__ import annotations

from typing import Any

from layerprobe.testing.images import make_dataset, make_image
from layerprobe.testing.tiny.build import build_tiny
from layerprobe.testing.tiny.registry import TinyBuilder, TinySize, tiny_builders, tiny_families

__all__ = ["TINY_FAMILIES", "TinyBuilder", "TinySize", "build_tiny", "make_dataset", "make_image", "tiny_builders", "tiny_families"]


def __getattr__(name: str) -> Any:
    # The registry fills itself by discovery on first use, so the family list is read from it then.
    if name == "TINY_FAMILIES":
        return tiny_families()
    raise AttributeError(f"module 'layerprobe.testing' has no attribute {name!r}")
