"""Checks on a run's images that need their bytes, done before the model loads.

:func:`check_images` hashes every file of the manifest (SHA-256, the digest the store records per
sample) and refuses two samples with identical bytes whose splits may differ: one picture in train
and in test inflates every test score. "May differ" is: different official splits, or any of them
unassigned (the probe engine draws unassigned samples' splits, so it may separate them). Copies
within one official split leak nothing and pass. Real archives do hold such copies, so
``allow_duplicate_images`` lets them through; the groups found are then recorded in the store's
``RunMeta.extra`` (not part of run identity) so the run says what it contains.

When: before the model loads, since the manifest alone (paths) cannot show identical bytes under
two names, and hashing is cheap next to a forward pass. Measured on the 2-core development machine,
files in the page cache: 3,000 synthetic ultrasound PNGs (224 px, 28 kB each, 84 MB) hash in 0.09 s
(about 900 MB/s, opening each file included), while merely decoding them takes about 1.7 s and a
real model's forward pass takes seconds per batch. A cold disk reads each file once here and the
loader then finds it cached. The loader hashes each file again as it decodes it, so the stored
SHA-256 always describes the bytes that were used.

A file that cannot be read is left to the loader, which reports it (or, with ``--skip-bad``,
records it as skipped); this check never fails on it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from layerprobe import vocab
from layerprobe.errors import ExtractError
from layerprobe.extract.data.manifest import Manifest

_RECORDED_GROUPS = 1000
"""At most this many duplicate groups are listed in ``RunMeta.extra`` (all are counted)."""


def _sha256(path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def cross_split_duplicates(manifest: Manifest) -> list[list[int]]:
    """Groups of sample indices with identical bytes whose splits may differ (module docstring)."""
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, path in enumerate(manifest.paths):
        digest = _sha256(path)
        if digest is not None:
            by_digest[digest].append(i)
    groups = []
    for members in by_digest.values():
        splits = {manifest.splits[i] for i in members}
        if len(members) > 1 and (len(splits) > 1 or vocab.UNASSIGNED in splits):
            groups.append(members)
    return groups


def check_images(manifest: Manifest, *, allow_duplicate_images: bool = False) -> dict[str, Any]:
    """Refuse cross-split duplicates unless allowed; return what ``RunMeta.extra`` records.

    The returned entries are empty for a default run: ``allow_duplicate_images`` and the groups
    found (ids) when duplicates are allowed. (The DICOM frame rule is part of the run's identity:
    ``RunMeta.dicom_frame``.)
    """
    groups = cross_split_duplicates(manifest)
    if groups and not allow_duplicate_images:
        a, b = groups[0][:2]
        split = lambda i: manifest.splits[i] or "unassigned"  # noqa: E731
        more = f" (and {len(groups) - 1} more such groups)" if len(groups) > 1 else ""
        raise ExtractError(
            f"dataset {manifest.name!r}: images {manifest.ids[a]!r} ({split(a)}) and {manifest.ids[b]!r} ({split(b)}) have "
            f"identical bytes, so one picture could sit in two splits{more}; remove the copies, or pass "
            "--allow-duplicate-images (allow_duplicate_images=True) to keep them, recorded in the store"
        )
    extra: dict[str, Any] = {}
    if allow_duplicate_images:
        extra["allow_duplicate_images"] = True
        extra["duplicate_image_groups"] = len(groups)
        extra["duplicate_images"] = [[manifest.ids[i] for i in g] for g in groups[:_RECORDED_GROUPS]]
    return extra
