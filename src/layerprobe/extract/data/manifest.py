"""A :class:`Manifest`: which image files, in which order, with which labels and splits.

A manifest is the dataset half of a run's identity: the store records its name and a SHA-256
over its ids, labels, splits and class names, and refuses to resume with a different one.
Per-sample rules (ids unique, labels in range, splits known) are the store's
:class:`~layerprobe.store.SampleInfo`'s; a manifest yields one (:meth:`Manifest.sample_info`) and
is checked through it, so the rules live in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from layerprobe.errors import ExtractError, StoreError
from layerprobe.store.schema import SampleInfo, manifest_digest

Row = tuple[str, int, str]
"""(id = path relative to the root, label index, split) of one sample."""


@dataclass(frozen=True)
class Manifest:
    """An ordered, labelled list of image files (see the module docstring)."""

    name: str
    """Dataset name recorded in the store, e.g. the folder's or table's name."""
    root: Path
    """Folder that ``ids`` are relative to (the ImageFolder root or the table's folder)."""
    paths: tuple[Path, ...]
    """Image file of each sample, in sample order."""
    ids: tuple[str, ...]
    """Stable id of each sample (the path as given, relative to ``root`` where it is); unique."""
    labels: tuple[int, ...]
    """Class index of each sample, into ``class_names``."""
    splits: tuple[str, ...]
    """Official split of each sample: ``train``, ``val``, ``test`` or ``""`` (none)."""
    class_names: tuple[str, ...]
    """Class ``i``'s name; candidate answer ``i`` of a run answers class ``i``. At least two."""
    instruction: str | None = None
    """The dataset's own question (set by recipes); a run's ``prompt`` overrides it."""
    candidates: tuple[str, ...] | None = None
    """The dataset's own candidate answers (set by recipes); a run's ``candidates`` override them."""

    def __post_init__(self) -> None:
        n = len(self.ids)
        if n == 0:
            raise ExtractError(f"dataset {self.name!r} has no samples; point --dataset at a folder or table that lists images")
        for field_name in ("paths", "labels", "splits"):
            if len(getattr(self, field_name)) != n:
                raise ValueError(f"Manifest.{field_name} has {len(getattr(self, field_name))} entries for {n} ids")
        if len(set(self.class_names)) != len(self.class_names):
            raise ExtractError(f"dataset {self.name!r} needs distinct class names, got {list(self.class_names)}")
        # Checked here, on every source, so a one-class dataset fails before a model is loaded.
        if len(self.class_names) < 2:
            raise ExtractError(
                f"dataset {self.name!r} has {len(self.class_names)} class(es) ({', '.join(map(repr, self.class_names)) or 'none'}); "
                "probing needs at least two, so add the other classes' images"
            )
        try:
            self.sample_info()
        except StoreError as err:
            raise ExtractError(f"dataset {self.name!r}: {err}") from None
        if self.candidates is not None and len(self.candidates) != len(self.class_names):
            raise ExtractError(f"dataset {self.name!r} has {len(self.candidates)} candidates for {len(self.class_names)} classes")

    @property
    def n_samples(self) -> int:
        return len(self.ids)

    def sample_info(self) -> SampleInfo:
        """The store's per-sample columns of this manifest (checked there: ids, labels, splits)."""
        return SampleInfo(self.ids, np.asarray(self.labels, dtype=np.int64), self.splits, n_classes=len(self.class_names))

    @cached_property
    def sha256(self) -> str:
        """SHA-256 (hex) of the UTF-8 JSON ``{"class_names", "ids", "labels", "splits"}``, keys
        sorted, no spaces: what the samples are, independent of where the files lie."""
        return manifest_digest(self.ids, self.labels, self.splits, self.class_names)

    def head(self, n: int) -> Manifest:
        """The first ``n`` samples in order (``--limit``); the whole manifest when ``n >= n_samples``."""
        if n < 1:
            raise ExtractError(f"limit must be at least 1, got {n}")
        if n >= self.n_samples:
            return self
        return replace(self, paths=self.paths[:n], ids=self.ids[:n], labels=self.labels[:n], splits=self.splits[:n])

    @classmethod
    def from_rows(cls, name: str, root: str | Path, rows: Iterable[Row], class_names: Sequence[str], **extra) -> Manifest:
        """A manifest from ``(id, label, split)`` rows, ids relative to ``root`` (or absolute)."""
        root = Path(root)
        rows = list(rows)
        return cls(
            name=name,
            root=root,
            paths=tuple(root / r[0] for r in rows),
            ids=tuple(r[0] for r in rows),
            labels=tuple(int(r[1]) for r in rows),
            splits=tuple(r[2] for r in rows),
            class_names=tuple(class_names),
            **extra,
        )
