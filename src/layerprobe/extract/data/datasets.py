"""``--dataset`` values as a :class:`~layerprobe.extract.data.manifest.Manifest`.

Sources:
- an ImageFolder tree: ``root/<class>/<image>`` (any depth below the class folder), or with an
  official split ``root/<split>/<class>/<image>`` when every top-level folder is a split name
  (``train``, ``val``/``valid``/``validation``, ``test``);
- a table (``.csv``, ``.tsv`` or ``.parquet``) with columns ``path,label[,split]``;
- ``recipe:folder`` (e.g. ``busi:/data/BUSI``) through :mod:`layerprobe.extract.data.recipes`, which
  also supplies the dataset's instruction and candidate answers.
:func:`resolve_dataset` is the one place that turns a ``--dataset`` value into a manifest.

Choices:
- Sample order is fixed by the source alone: sorted relative paths (code-point order) for a
  folder, row order for a table. Resume, shards and ``--limit`` all rely on it.
- Class names of a folder are its class folders' names, sorted. A table's string labels are
  class names (sorted); integer labels index ``class_names`` (default ``"0".."k-1"``).
- Hidden files and folders (``.DS_Store``, ``._x.png``), ``__MACOSX`` and other archive metadata,
  and files without an image suffix are ignored (:mod:`.files`). A class folder without images
  is an error, not a silently missing class.
- Files are not opened here: a missing or corrupt image is found when it is decoded, so
  ``--skip-bad`` can record it instead of failing the whole manifest. (Images with identical bytes
  in two splits are found by :mod:`.preflight`, which reads them, before the model loads.)
- A table's ids are normalised as :func:`posixpath.normpath` does (``./img/x.png`` and
  ``img//x.png`` are ``img/x.png``); an absolute path inside the table's folder becomes relative to
  it, so both spellings of one file are one id. Symlinks are not resolved in ids (they stay as
  written, portable across machines), but two rows whose paths resolve to the same file
  (``os.path.realpath``: symlinks, ``..``) are refused as one image listed twice.
- Labels (table cells or class folders) that differ only by case (``Benign``/``benign``) are an
  error naming both spellings: they would silently become two classes.
- A plain folder holding BUSI-style segmentation masks (``x_mask.png`` or ``x_mask_1.png`` beside
  ``x.png``) is refused, suggesting the ``busi:`` recipe (which skips them); a table that lists
  the files is the way to use such files as samples on purpose.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from pathlib import Path

from layerprobe import vocab
from layerprobe.errors import ExtractError
from layerprobe.extract.data.files import folder_problem, iter_images, mask_base, subfolders
from layerprobe.extract.data.manifest import Manifest, Row
from layerprobe.extract.data.recipes import get_recipe
from layerprobe.extract.data.splits import SPLIT_ALIASES, apply_split_file, normal_id

_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
_RECIPE_RE = re.compile(r"[A-Za-z][\w.-]+")
_INT_RE = re.compile(r"[+-]?\d+")


def resolve_dataset(text: str | os.PathLike | Manifest, split_file: str | os.PathLike | None = None) -> Manifest:
    """Turn a ``--dataset`` value into a manifest.

    ``text`` is a folder (ImageFolder tree), a table file (``.csv``/``.tsv``/``.parquet``) or
    ``recipe:folder`` (e.g. ``busi:/data/BUSI``; see :mod:`layerprobe.extract.data.recipes`), or a
    manifest already made. New forms are added here, so the CLI and the Python API accept the same
    values. ``split_file`` (``--split-file``) replaces the splits (:mod:`.splits`).
    """
    manifest = text if isinstance(text, Manifest) else _resolve(text)
    return manifest if split_file is None else apply_split_file(manifest, split_file)


def _resolve(text: str | os.PathLike) -> Manifest:
    path = Path(text).expanduser()
    if path.is_dir():
        return from_image_folder(path)
    if path.is_file():
        return from_table(path)
    recipe, sep, rest = str(text).partition(":")
    # One letter before ':' is a Windows drive, not a recipe.
    if sep and _RECIPE_RE.fullmatch(recipe):
        found = get_recipe(recipe)
        return found.manifest(rest)
    raise ExtractError(
        f"dataset {str(text)!r} does not exist; pass a folder with one sub-folder per class, "
        "a .csv/.parquet table with columns path,label[,split], or recipe:folder (e.g. busi:/data/BUSI)"
    )


def from_image_folder(root: str | Path, name: str | None = None) -> Manifest:
    """An ImageFolder tree ``root/<class>/...`` or ``root/<split>/<class>/...`` as a manifest."""
    root = Path(root).expanduser()
    problem = folder_problem(root)
    if problem is not None:
        raise ExtractError(f"dataset folder {root} {problem}; pass a folder with one sub-folder per class")
    top = subfolders(root)
    split_layout = bool(top) and all(d.name.lower() in SPLIT_ALIASES for d in top)
    groups = [(SPLIT_ALIASES[d.name.lower()], subfolders(d)) for d in top] if split_layout else [(vocab.UNASSIGNED, top)]
    class_names = tuple(sorted({c.name for _, classes in groups for c in classes}))
    if not class_names:
        raise ExtractError(f"dataset folder {root} has no class folders; expected {root}/<class>/<image> (one sub-folder per class)")
    _refuse_case_twins(class_names, f"dataset folder {root}: class folders", "rename one folder")
    index = {c: i for i, c in enumerate(class_names)}
    rows: list[Row] = []
    for split, classes in groups:
        for class_dir in classes:
            rows += [(p.relative_to(root).as_posix(), index[class_dir.name], split) for p in iter_images(class_dir)]
    found = {label for _, label, _ in rows}
    empty = [c for c in class_names if index[c] not in found]
    if empty:
        raise ExtractError(f"class folder {empty[0]!r} in {root} holds no images; add images or remove the folder")
    _refuse_masks(root, [r[0] for r in rows])
    rows.sort()
    return Manifest.from_rows(name or root.resolve().name, root, rows, class_names)


def _refuse_case_twins(names: Sequence[str], where: str, fix: str) -> None:
    """An error when two of ``names`` differ only by case (they would be two classes)."""
    seen: dict[str, str] = {}
    for name in names:
        twin = seen.setdefault(name.casefold(), name)
        if twin != name:
            raise ExtractError(f"{where} {twin!r} and {name!r} differ only by case, so they would be two classes; {fix}")


def _refuse_masks(root: Path, ids: Sequence[str]) -> None:
    """An error when a plain folder holds BUSI-style masks beside their images (see the module docstring)."""
    stems = {posixpath.splitext(i)[0].casefold() for i in ids}
    for sample_id in ids:
        base = mask_base(Path(sample_id))
        if base is not None and posixpath.join(posixpath.dirname(sample_id), base).casefold() in stems:
            raise ExtractError(
                f"dataset folder {root} holds segmentation masks such as {sample_id!r} beside their images; "
                f"read BUSI with --dataset busi:{root} (it skips masks), or list the files to use in a .csv table"
            )


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
    raw_splits = columns.get("split", [vocab.UNASSIGNED] * len(raw_paths))
    if not raw_paths:
        raise ExtractError(f"manifest {path} has no rows; list one image per row (columns path,label[,split])")
    for col, values in (("path", raw_paths), ("label", raw_labels)):
        missing = next((i for i, v in enumerate(values) if v is None or str(v).strip() == ""), None)
        if missing is not None:
            raise ExtractError(f"manifest {path}: row {missing + 1} has no {col}; fill it in or remove the row")
    labels, names = _parse_labels(raw_labels, class_names, path)
    splits = []
    for row, value in enumerate(raw_splits):
        key = vocab.UNASSIGNED if value is None else str(value).strip().lower()
        if key not in SPLIT_ALIASES:
            raise ExtractError(f"manifest {path}: row {row + 1} has split {value!r}; use train, val, test or leave it empty")
        splits.append(SPLIT_ALIASES[key])
    given = [str(p).strip() for p in raw_paths]
    ids = _normal_ids(given, path)
    rows = [(i, lab, s) for i, lab, s in zip(ids, labels, splits)]
    # Path join keeps absolute ids absolute, so Manifest.from_rows resolves both kinds.
    return Manifest.from_rows(name or path.stem, path.parent, rows, names)


def _normal_ids(given: Sequence[str], path: Path) -> list[str]:
    """A table's path cells as normalised ids; one file listed twice is an error (module docstring)."""
    folder = os.path.abspath(path.parent)
    ids: list[str] = []
    first_row: dict[str, int] = {}
    for row, text in enumerate(given):
        sample_id = normal_id(text, folder)
        where = os.path.realpath(os.path.join(folder, text))
        first = first_row.setdefault(where, row)
        if first != row:
            same = "again" if given[first] == text else f"(same file as {given[first]!r})"
            raise ExtractError(f"manifest {path}: row {row + 1} lists {text!r} {same}, first on row {first + 1}; each image may appear once")
        ids.append(sample_id)
    return ids


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
        _refuse_case_twins(class_names, f"manifest {path}: labels", "spell each class one way")
    names = tuple(class_names)
    index = {c: i for i, c in enumerate(names)}
    folded = {c.casefold(): c for c in names}
    labels = []
    for row, text in enumerate(texts):
        if text in index:
            labels.append(index[text])
        elif _INT_RE.fullmatch(text) and 0 <= int(text) < len(names):
            labels.append(int(text))
        elif text.casefold() in folded:
            raise ExtractError(f"manifest {path}: row {row + 1} has label {text!r}, which differs from class {folded[text.casefold()]!r} only by case; spell it as the class")
        else:
            raise ExtractError(f"manifest {path}: row {row + 1} has unknown label {text!r}; known classes: {', '.join(names)}")
    return labels, names
