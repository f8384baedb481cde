"""Which files of a dataset folder are images: image suffixes only, hidden files and archive metadata skipped.

Folders (ImageFolder trees) and recipes scan with these same rules, so a ``.DS_Store``, a
``._x.png`` AppleDouble file or a ``__MACOSX`` folder is never a sample, whichever way the
dataset is given.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
"""File suffixes (lower case) of DICOM files (decoded by ``data/dicom.py``)."""
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm"}) | DICOM_SUFFIXES
"""File suffixes (lower case) treated as images when scanning a folder."""
METADATA_NAMES = frozenset({"__macosx", "@eadir", "thumbs.db", "desktop.ini"})
"""Archive and OS metadata names (lower case) skipped wherever they appear in a path."""


def is_metadata(name: str) -> bool:
    return name.startswith(".") or name.lower() in METADATA_NAMES


def iter_images(folder: Path) -> Iterator[Path]:
    """Image files under ``folder``, depth first (each folder sorted), skipping hidden files and archive metadata."""
    for dirpath, dirnames, filenames in os.walk(folder):
        # Pruning in place keeps os.walk out of metadata folders entirely.
        dirnames[:] = sorted(d for d in dirnames if not is_metadata(d))
        for name in sorted(filenames):
            if not is_metadata(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(dirpath) / name


def subfolders(folder: Path) -> list[Path]:
    """Sub-folders of ``folder``, sorted, metadata skipped."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and not is_metadata(d.name))
