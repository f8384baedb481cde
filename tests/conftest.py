"""Shared fixtures: tiny random-weight checkpoints of every family, built once per session.

``tiny_checkpoint(family, **size)`` returns the folder of a checkpoint saved with
``save_pretrained`` (model + processor), ready for ``load_model`` like a user's checkpoint. Each
(family, size) is built at most once per session (``build_tiny`` reuses a finished folder); the
default test size is ``TINY_TEST_SIZE``. ``tiny_images`` gives a few RGB images of different
aspect ratios, so crop counts and Qwen patch grids differ between samples of one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

TINY_TEST_SIZE = {"hidden": 64, "n_layers": 2, "vision_layers": 2, "image_size": 56}
"""Smallest sizes every family accepts: 64-wide, 2 LLM layers, 2 vision blocks, 56-px crops."""


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: ``tiny_checkpoint(family, **size) -> Path`` (built once per session and size)."""
    from layerprobe.testing import build_tiny

    root = tmp_path_factory.mktemp("tiny-models")

    def make(family: str, **size: int) -> Path:
        return build_tiny(family, root, **{**TINY_TEST_SIZE, **size})

    return make


@pytest.fixture(scope="session")
def tiny_images() -> list:
    """Three seeded RGB images: wide, square, tall (so per-image crop counts differ)."""
    from PIL import Image

    shapes = [(40, 120), (100, 100), (130, 40)]
    return [Image.fromarray(np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)) for i, (h, w) in enumerate(shapes)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.gpu`` tests when CUDA is not available (torch imported only if any exist)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in gpu_items:
        item.add_marker(skip)
