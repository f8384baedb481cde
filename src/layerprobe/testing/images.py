"""A small labelled image set with a real visual signal, made offline: synthetic breast ultrasound.

A fixture of the demo, the tests and the extraction benchmark (it is no dataset of the study).

Three classes mimic BUSI: ``normal`` (speckled tissue only), ``benign`` (an oval, smooth-edged,
dark lesion) and ``malignant`` (an irregular, spiculated dark lesion with a shadow beneath it).
Size, position, contrast and speckle vary per image, so a probe has to read shape and texture, not
a pixel. Images are 8-bit grayscale PNGs in an ImageFolder tree (``root/<class>/<id>.png``), and
the same ``seed`` always gives the same bytes.

A tree is written beside ``root`` (``.<name>.partial``) and renamed into place when complete, so an
interrupted build never leaves a folder that looks usable; a tree made with other settings is
replaced whole (no stale images from a larger run stay behind).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from layerprobe.errors import LayerprobeError

CLASS_NAMES = ("normal", "benign", "malignant")
CANDIDATES = ("Normal", "Benign", "Malignant")
INSTRUCTION = (
    "Carefully examine the image to determine the diagnostic result for breast cancer. "
    "Please answer 'Normal', 'Benign', or 'Malignant'."
)


def _blur(img_hw: np.ndarray, passes: int) -> np.ndarray:
    # A separable box blur repeated: cheap, dependency-free approximation of a Gaussian.
    out = img_hw
    for _ in range(passes):
        out = (np.roll(out, 1, 0) + out + np.roll(out, -1, 0)) / 3.0
        out = (np.roll(out, 1, 1) + out + np.roll(out, -1, 1)) / 3.0
    return out


def make_image(label: int, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """One ``size x size`` uint8 ultrasound-like image of class ``label`` (0, 1 or 2)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    speckle = rng.rayleigh(1.0, (size, size))
    tissue = 0.35 + 0.25 * _blur(rng.normal(0, 1, (size, size)), 6) + 0.15 * np.sin(10 * yy + rng.uniform(0, 6))
    img = tissue * _blur(speckle, 1)
    if label > 0:
        cy, cx = rng.uniform(0.35, 0.65, 2)
        r = rng.uniform(0.10, 0.18)
        dy, dx = yy - cy, xx - cx
        theta = np.arctan2(dy, dx)
        if label == 1:
            aspect = rng.uniform(1.2, 1.7)  # benign: wider than tall, smooth margin
            rho = np.sqrt((dx / aspect) ** 2 + dy**2) / r
            edge = 0.08
        else:
            spikes = rng.integers(6, 11)
            wobble = 1 + 0.35 * np.sin(spikes * theta + rng.uniform(0, 6)) + 0.15 * np.sin(3 * theta)
            rho = np.sqrt(dx**2 + (dy * rng.uniform(0.8, 1.1)) ** 2) / (r * wobble)
            edge = 0.02
        with np.errstate(over="ignore"):  # far outside the lesion exp overflows to inf: inside is exactly 0 there
            inside = 1.0 / (1.0 + np.exp((rho - 1.0) / edge))
        img = img * (1 - 0.75 * inside) + 0.05 * inside * rng.rayleigh(1.0, (size, size))
        if label == 2:  # posterior acoustic shadow: darker column below the lesion
            below = (yy > cy) * np.exp(-((xx - cx) / (r * 0.8)) ** 2)
            img = img * (1 - 0.45 * below)
    # Ultrasound sector: outside the fan is black.
    fan = (np.abs(np.arctan2(xx - 0.5, yy + 0.15)) < 0.62) & (np.hypot(xx - 0.5, yy + 0.15) < 1.12)
    img = np.clip(img * fan * rng.uniform(0.85, 1.15), 0, 1)
    return (img * 255).astype(np.uint8)


_STAMP = ".complete"
"""File in a finished tree holding its settings (``n_per_class size seed``)."""


def make_dataset(root: str | Path, n_per_class: int = 40, size: int = 224, seed: int = 0) -> Path:
    """Write ``n_per_class`` images per class under ``root``; reuses a complete tree of these settings.

    A tree of other settings, or an empty folder, is replaced (see the module docstring); any other
    existing folder is refused rather than deleted.
    """
    from PIL import Image

    root = Path(root)
    settings = f"{n_per_class} {size} {seed}"
    stamp = root / _STAMP
    if stamp.is_file() and stamp.read_text() == settings:
        return root
    if root.exists() and not (stamp.is_file() or (root.is_dir() and not any(root.iterdir()))):
        raise LayerprobeError(f"{root} exists and is not a synthetic dataset made here; remove it or choose another folder")
    # One partial folder per target (no pid): a rerun after a crash clears the leftover of the last one.
    partial = root.with_name(f".{root.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    rng = np.random.default_rng(seed)
    try:
        for label, name in enumerate(CLASS_NAMES):
            folder = partial / name
            folder.mkdir(parents=True)
            for i in range(n_per_class):
                Image.fromarray(make_image(label, rng, size), mode="L").save(folder / f"{name}_{i:04d}.png")
        (partial / _STAMP).write_text(settings)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if root.exists():
        old = root.with_name(f".{root.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(root, old)
        os.replace(partial, root)
        shutil.rmtree(old)
    else:
        root.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, root)
    return root
