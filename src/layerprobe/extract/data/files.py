"""Which files of a dataset folder are images: image suffixes only, hidden files and archive metadata skipped.

Folders (ImageFolder trees) and recipes scan with these same rules, so a ``.DS_Store``, a
``._x.png`` AppleDouble file or a ``__MACOSX`` folder is never a sample, whichever way the
dataset is given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
"""File suffixes (lower case) of DICOM files (decoded by ``data/dicom.py``)."""
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm"}) | DICOM_SUFFIXES
"""File suffixes (lower case) treated as images when scanning a folder."""
METADATA_NAMES = frozenset({"__macosx", "@eadir", "thumbs.db", "desktop.ini"})
"""Archive and OS metadata names (lower case) skipped wherever they appear in a path."""
_MASK_STEM = re.compile(r"(?P<base>.+)_mask(_\d+)?", re.IGNORECASE)
"""BUSI's segmentation masks: ``benign (4)_mask.png``, ``benign (4)_mask_1.png`` (a second lesion)."""


def is_metadata(name: str) -> bool:
    return name.startswith(".") or name.lower() in METADATA_NAMES


def mask_base(path: Path) -> str | None:
    """The image name a BUSI-style mask file belongs to (``x_mask_1.png`` -> ``x``), or None."""
    found = _MASK_STEM.fullmatch(path.stem)
    return found["base"] if found else None


def iter_images(folder: Path) -> Iterator[Path]:
    """Image files under ``folder``, depth first (each folder sorted), skipping hidden files and archive metadata."""
    for dirpath, dirnames, filenames in os.walk(folder):
        # Pruning in place keeps os.walk out of metadata folders entirely.
        dirnames[:] = sorted(d for d in dirnames if not is_metadata(d))
        for name in sorted(filenames):
            if not is_metadata(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(dirpath) / name


def folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a dataset folder, as words that follow its name in an error; None if it can."""
    if path.is_dir():
        return None
    if path.exists():
        return "is a file, not a folder; pass the folder that holds the dataset"
    return "does not exist"


def subfolders(folder: Path) -> list[Path]:
    """Sub-folders of ``folder``, sorted, metadata skipped."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and not is_metadata(d.name))
