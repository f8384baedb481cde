"""The tiny-builder registry: family name -> builder, filled by the :func:`register` decorator.

Like the adapters, builders live one family per module in this package and are found on disk:
the first lookup imports every module here, so a new family is one new file. Each registration
names the ``model_type`` its checkpoint has, i.e. the adapter that reads it; a variant such as
``llava_siglip`` (LLaVA with a SigLIP tower) is its own builder of the ``llava`` family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from layerprobe.discovery import import_submodules
from layerprobe.errors import ExtractError

Build = Callable[["TinySize"], tuple[Any, Any]]
"""``build(size) -> (model, processor)``: the transformers model (random weights) and its processor."""


@dataclass(frozen=True)
class TinySize:
    """Sizes of a tiny checkpoint."""

    hidden: int = 256
    """LLM width; the vision tower has the same width unless ``vision_hidden`` is given."""
    n_layers: int = 4
    """LLM decoder layers."""
    vision_layers: int = 4
    """Vision-tower blocks."""
    image_size: int = 224
    """Nominal input side in pixels (rounded to the family's patch grid)."""
    seed: int = 0
    """Seed of the random weights."""
    vision_hidden: int | None = None
    """Vision-tower width; ``None`` means ``hidden``."""

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layers", "vision_layers", "image_size"):
            if getattr(self, name) < 1:
                raise ExtractError(f"tiny model {name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % 32 or (self.vision_hidden is not None and self.vision_hidden % 32):
            raise ExtractError(f"tiny model widths must be multiples of 32, got hidden={self.hidden}, vision_hidden={self.vision_hidden}")

    @property
    def v_hidden(self) -> int:
        return self.vision_hidden or self.hidden


@dataclass(frozen=True)
class TinyBuilder:
    """One registered tiny family."""

    family: str
    """Name ``build_tiny`` takes, e.g. ``llava_siglip``."""
    model_type: str
    """``config.model_type`` of the checkpoint it builds: the adapter family that reads it."""
    build: Build
    """Makes the model and processor; called with torch's default dtype set to the target dtype."""


_REGISTRY: dict[str, TinyBuilder] = {}


def register(family: str, *, model_type: str | None = None) -> Callable[[Build], Build]:
    """Register ``build`` as the tiny builder of ``family``; ``model_type`` defaults to ``family``."""

    def decorate(build: Build) -> Build:
        if family in _REGISTRY:
            raise ValueError(f"tiny builder for family {family!r} registered twice")
        _REGISTRY[family] = TinyBuilder(family, model_type or family, build)
        return build

    return decorate


def tiny_builders() -> dict[str, TinyBuilder]:
    """Every registered builder by family (imports every module of this package on first use)."""
    import_submodules(__package__)
    return dict(_REGISTRY)


def tiny_families() -> tuple[str, ...]:
    """Families ``build_tiny`` can make, sorted."""
    return tuple(sorted(tiny_builders()))
