"""A plainly separable two-class image set: the fixture on which a tiny model must learn to answer.

:func:`make_dataset` (in :mod:`.images`) is realistic on purpose: a lesion's shape and texture,
small, anywhere in the fan. A tiny random-weight model fine-tuned for seconds on CPU cannot be
expected to read that (measured: val accuracy 0.5-0.75 on normal vs malignant, see docs/LOG.md),
so a test that asks "does fine-tuning learn at all?" needs a set whose classes a random vision tower
already tells apart: here ``normal`` is a dark speckled field and ``tumor`` a bright disk filling
most of the image. Mean brightness alone separates them, so every pooled feature of a random tower
does, and what is left to learn is mapping the image to the answer token: fine-tuning's job.

The same ``seed`` always gives the same bytes; the tree is ``root/<class>/<id>.png`` (8-bit
grayscale), reused when complete, like :func:`~layerprobe.testing.images.make_dataset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EASY_CLASS_NAMES = ("normal", "tumor")
EASY_CANDIDATES = ("Normal", "Tumor")
EASY_INSTRUCTION = "Is there a tumor in this image? Please answer 'Normal' or 'Tumor'."


def make_easy_image(label: int, rng: np.random.Generator, size: int = 56) -> np.ndarray:
    """One ``size x size`` uint8 image: class 0 dark speckle, class 1 a bright disk on it."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    img = rng.uniform(0.05, 0.25) + 0.08 * rng.random((size, size))
    if label == 1:
        cy, cx = rng.uniform(0.4, 0.6, 2)
        disk = np.hypot(yy - cy, xx - cx) < rng.uniform(0.35, 0.45)
        img = np.where(disk, rng.uniform(0.75, 0.95) + 0.05 * rng.random((size, size)), img)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_easy_dataset(root: str | Path, n_per_class: int = 20, size: int = 56, seed: int = 0) -> Path:
    """Write ``n_per_class`` images per class under ``root``; reuses a complete existing tree."""
    from PIL import Image

    root = Path(root)
    done = root / ".complete"
    stamp = f"easy {n_per_class} {size} {seed}"
    if done.exists() and done.read_text() == stamp:
        return root
    rng = np.random.default_rng(seed)
    for label, name in enumerate(EASY_CLASS_NAMES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(make_easy_image(label, rng, size), mode="L").save(folder / f"{name}_{i:04d}.png")
    done.write_text(stamp)
    return root
