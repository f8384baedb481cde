"""Labelled image sets as a :class:`Manifest`: which files, in which order, with which labels.

A manifest is the dataset half of a run's identity: the store records its name and a SHA-256
over its ids, labels, splits and class names, and refuses to resume with a different one.

Sources:
- an ImageFolder tree: ``root/<class>/<image>`` (any depth below the class folder), or with an
  official split ``root/<split>/<class>/<image>`` when every top-level folder is a split name
  (``train``, ``val``/``valid``/``validation``, ``test``);
- a table (``.csv``, ``.tsv`` or ``.parquet``) with columns ``path,label[,split]``;
- ``recipe:folder`` (e.g. ``busi:/data/BUSI``) through :mod:`layerprobe.extract.recipes`, which
  also supplies the dataset's instruction and candidate answers.
:func:`resolve_dataset` is the one place that turns a ``--dataset`` value into a manifest.

Choices:
- Sample order is fixed by the source alone: sorted relative paths (code-point order) for a
  folder, row order for a table. Resume, shards and ``--limit`` all rely on it.
- Class names of a folder are its class folders' names, sorted. A table's string labels are
  class names (sorted); integer labels index ``class_names`` (default ``"0".."k-1"``).
- Hidden files and folders (``.DS_Store``, ``._x.png``), ``__MACOSX`` and other archive metadata,
  and files without an image suffix are ignored. A class folder without images is an error, not a
  silently missing class.
- Files are not opened here: a missing or corrupt image is found when it is decoded, so
  ``--skip-bad`` can record it instead of failing the whole manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path, PurePosixPath

from layerprobe.errors import ExtractError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm", ".pbm", ".dcm", ".dicom"})
"""File suffixes (lower case) treated as images when scanning a folder."""
METADATA_NAMES = frozenset({"__macosx", "@eadir", "thumbs.db", "desktop.ini"})
"""Archive and OS metadata names (lower case) skipped wherever they appear in a path."""
SPLITS = ("train", "val", "test", "")
"""Split values stored per sample; ``""`` means "no official split"."""
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
    "": "",
}
_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
_INT_RE = re.compile(r"[+-]?\d+")
_RECIPE_RE = re.compile(r"[A-Za-z][\w.-]+")

# (id = path relative to the root, label index, split)
Row = tuple[str, int, str]


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
    """Class ``i``'s name; candidate answer ``i`` of a run answers class ``i``."""
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
        if not self.class_names or len(set(self.class_names)) != len(self.class_names):
            raise ExtractError(f"dataset {self.name!r} needs distinct class names, got {list(self.class_names)}")
        bad = next((lab for lab in self.labels if not 0 <= lab < len(self.class_names)), None)
        if bad is not None:
            raise ExtractError(f"dataset {self.name!r} has label {bad}, outside 0..{len(self.class_names) - 1} ({len(self.class_names)} classes)")
        bad_split = next((s for s in self.splits if s not in SPLITS), None)
        if bad_split is not None:
            raise ExtractError(f"dataset {self.name!r} has split {bad_split!r}; use one of train, val, test or empty")
        if len(set(self.ids)) != n:
            dup = next(i for i, count in Counter(self.ids).items() if count > 1)
            raise ExtractError(f"dataset {self.name!r} lists {dup!r} twice; each image may appear once")
        if self.candidates is not None and len(self.candidates) != len(self.class_names):
            raise ExtractError(f"dataset {self.name!r} has {len(self.candidates)} candidates for {len(self.class_names)} classes")

    @property
    def n_samples(self) -> int:
        return len(self.ids)

    @cached_property
    def sha256(self) -> str:
        """SHA-256 (hex) of the UTF-8 JSON ``{"class_names", "ids", "labels", "splits"}``, keys
        sorted, no spaces: what the samples are, independent of where the files lie."""
        doc = {"class_names": list(self.class_names), "ids": list(self.ids), "labels": list(self.labels), "splits": list(self.splits)}
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

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


def resolve_dataset(text: str | os.PathLike) -> Manifest:
    """Turn a ``--dataset`` value into a manifest.

    ``text`` is a folder (ImageFolder tree), a table file (``.csv``/``.tsv``/``.parquet``) or
    ``recipe:folder`` (e.g. ``busi:/data/BUSI``; see :mod:`layerprobe.extract.recipes`). New
    forms are added here, so the CLI and the Python API accept the same values.
    """
    path = Path(text).expanduser()
    if path.is_dir():
        return from_image_folder(path)
    if path.is_file():
        return from_table(path)
    recipe, sep, rest = str(text).partition(":")
    # One letter before ':' is a Windows drive, not a recipe.
    if sep and _RECIPE_RE.fullmatch(recipe):
        from layerprobe.extract.recipes import get_recipe

        found = get_recipe(recipe)
        return replace(found.manifest(rest), instruction=found.instruction, candidates=found.candidates)
    raise ExtractError(
        f"dataset {str(text)!r} does not exist; pass a folder with one sub-folder per class, "
        "a .csv/.parquet table with columns path,label[,split], or recipe:folder (e.g. busi:/data/BUSI)"
    )


def iter_images(folder: Path) -> Iterator[Path]:
    """Image files under ``folder``, depth first (each folder sorted), skipping hidden files and archive metadata."""
    for dirpath, dirnames, filenames in os.walk(folder):
        # Pruning in place keeps os.walk out of metadata folders entirely.
        dirnames[:] = sorted(d for d in dirnames if not is_metadata(d))
        for name in sorted(filenames):
            if not is_metadata(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(dirpath) / name


def from_image_folder(root: str | Path, name: str | None = None) -> Manifest:
    """An ImageFolder tree ``root/<class>/...`` or ``root/<split>/<class>/...`` as a manifest."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ExtractError(f"dataset folder {root} does not exist; pass a folder with one sub-folder per class")
    top = _subfolders(root)
    split_layout = bool(top) and all(d.name.lower() in _SPLIT_ALIASES for d in top)
    groups = [(_SPLIT_ALIASES[d.name.lower()], _subfolders(d)) for d in top] if split_layout else [("", top)]
    class_names = tuple(sorted({c.name for _, classes in groups for c in classes}))
    if not class_names:
        raise ExtractError(f"dataset folder {root} has no class folders; expected {root}/<class>/<image> (one sub-folder per class)")
    index = {c: i for i, c in enumerate(class_names)}
    rows: list[Row] = []
    for split, classes in groups:
        for class_dir in classes:
            rows += [(p.relative_to(root).as_posix(), index[class_dir.name], split) for p in iter_images(class_dir)]
    found = {label for _, label, _ in rows}
    empty = [c for c in class_names if index[c] not in found]
    if empty:
        raise ExtractError(f"class folder {empty[0]!r} in {root} holds no images; add images or remove the folder")
    rows.sort()
    return Manifest.from_rows(name or root.resolve().name, root, rows, class_names)


def from_table(path: str | Path, class_names: Sequence[str] | None = None, name: str | None = None) -> Manifest:
    """A ``.csv``/``.tsv``/``.parquet`` table with columns ``path,label[,split]`` as a manifest.

    Relative paths are resolved against the table's folder. ``label`` holds class names or
    integer indices; ``class_names`` fixes the class order (an unknown label is then an error).
    """
    path = Path(path).expanduser()
    columns = _read_table(path)
    for required in ("path", "label"):
        if required not in columns:
            raise ExtractError(f"manifest {path} has no {required!r} column (it has {list(columns)}); expected columns path,label[,split]")
    raw_paths, raw_labels = columns["path"], columns["label"]
    raw_splits = columns.get("split", [""] * len(raw_paths))
    if not raw_paths:
        raise ExtractError(f"manifest {path} has no rows; list one image per row (columns path,label[,split])")
    for col, values in (("path", raw_paths), ("label", raw_labels)):
        missing = next((i for i, v in enumerate(values) if v is None or str(v).strip() == ""), None)
        if missing is not None:
            raise ExtractError(f"manifest {path}: row {missing + 1} has no {col}; fill it in or remove the row")
    labels, names = _parse_labels(raw_labels, class_names, path)
    splits = []
    for row, value in enumerate(raw_splits):
        key = "" if value is None else str(value).strip().lower()
        if key not in _SPLIT_ALIASES:
            raise ExtractError(f"manifest {path}: row {row + 1} has split {value!r}; use train, val, test or leave it empty")
        splits.append(_SPLIT_ALIASES[key])
    ids = [str(p).strip() for p in raw_paths]
    first_row: dict[str, int] = {}
    for row, sample_id in enumerate(ids):
        if first_row.setdefault(sample_id, row) != row:
            raise ExtractError(f"manifest {path}: row {row + 1} lists {sample_id!r} again (first on row {first_row[sample_id] + 1}); each image may appear once")
    rows = [(i, lab, s) for i, lab, s in zip(ids, labels, splits)]
    # Path join keeps absolute ids absolute, so Manifest.from_rows resolves both kinds.
    return Manifest.from_rows(name or path.stem, path.parent, rows, names)


def is_metadata(name: str) -> bool:
    return name.startswith(".") or name.lower() in METADATA_NAMES


def _subfolders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not is_metadata(d.name))


def _read_table(path: Path) -> dict[str, list]:
    """Columns of a table file, lower-cased names, values as Python objects."""
    suffix = path.suffix.lower()
    if suffix not in _TABLE_SUFFIXES:
        raise ExtractError(f"manifest {path} is not a .csv, .tsv or .parquet file; convert it or pass an image folder")
    if not path.is_file():
        raise ExtractError(f"manifest {path} does not exist; check the path")
    import polars as pl

    try:
        if suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        else:
            # infer_schema=False keeps every cell a string: ids like "007.png" stay as written.
            frame = pl.read_csv(path, infer_schema=False, separator="\t" if suffix == ".tsv" else ",")
    except (pl.exceptions.PolarsError, OSError) as err:
        raise ExtractError(f"manifest {path} cannot be read ({str(err).splitlines()[0]}); check that it is a valid {suffix[1:]} file") from None
    return {col.strip().lower(): frame[col].to_list() for col in frame.columns}


def _parse_labels(values: list, class_names: Sequence[str] | None, path: Path) -> tuple[list[int], tuple[str, ...]]:
    """Label cells -> (class indices, class names); see :func:`from_table`."""
    texts = [str(v).strip() for v in values]
    all_ints = all(isinstance(v, int) or _INT_RE.fullmatch(t) for v, t in zip(values, texts))
    if class_names is None:
        if all_ints:
            ints = [int(t) for t in texts]
            if min(ints) < 0:
                raise ExtractError(f"manifest {path}: label {min(ints)} is negative; integer labels index classes from 0")
            class_names = tuple(str(i) for i in range(max(ints) + 1))
            return ints, class_names
        class_names = tuple(sorted(set(texts)))
    names = tuple(class_names)
    index = {c: i for i, c in enumerate(names)}
    labels = []
    for row, text in enumerate(texts):
        if text in index:
            labels.append(index[text])
        elif _INT_RE.fullmatch(text) and 0 <= int(text) < len(names):
            labels.append(int(text))
        else:
            raise ExtractError(f"manifest {path}: row {row + 1} has unknown label {text!r}; known classes: {', '.join(names)}")
    return labels, names
