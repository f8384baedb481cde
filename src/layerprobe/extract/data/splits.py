"""Splits that come from beside the images: a split file (any dataset) and the COVID19-CT release's lists.

A split file (``extract --split-file FILE``, ``FinetuneConfig.split_file``) is a CSV with the
header ``id,split`` (other columns are ignored; ``.tsv`` is read tab-separated). Choices:
- It replaces the dataset's own splits entirely: a sample it does not list is unassigned (``""``),
  which the probe's split then leaves out (``probe/splits.py``: a split column, once used, is
  used as it is). Listing only some samples is allowed, so a file can pick a subset to study.
- ids are the manifest's ids: paths relative to the dataset's root as the manifest holds them,
  normalised as a table's are (``./a/x.png`` and ``a//x.png`` are ``a/x.png``; an absolute path
  inside the root becomes relative to it). ``extract --limit`` applies after the split file, so
  one file serves every limit.
- Split cells are spelled as in a table (``train``, ``val``/``valid``/``validation``/``dev``,
  ``test``, empty = unassigned). An id the manifest lacks, an id listed twice, a bad split name,
  a missing column or a file that lists nothing: a one-line error naming the file and row.
- Splits are part of the manifest digest, so a store or adapter resumed with a changed split file
  is refused as another dataset; nothing else records the file.

The COVID19-CT release (UCSD-AI4H/COVID-CT) ships its official split as name lists,
``Data-split/COVID/{train,val,test}CT_COVID.txt`` and ``Data-split/NonCOVID/{...}CT_NonCOVID.txt``
(one image file name a line; its test split is the 203 images behind the paper's COVID numbers).
:func:`official_list_splits` reads them for the ``covid-ct`` recipe. Choices:
- A list file missing, a listed name with no image of that class, or an image in two lists: a
  one-line error naming the image and the list(s); the fix is to correct the lists or to remove
  ``Data-split/`` (the recipe then leaves splits unassigned, as without it).
- An image of the class that no list names is kept unassigned with one warning (count and first
  name): extra files must not vanish unsaid, but they must not block the official split either.
- Names are matched exactly (case included) on the file name; blank lines, surrounding spaces and
  Windows line ends are ignored.
"""

from __future__ import annotations

import csv
import logging
import os
import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from layerprobe import vocab
from layerprobe.errors import ExtractError
from layerprobe.extract.data.manifest import Manifest

log = logging.getLogger(__name__)

SPLIT_ALIASES = {
    vocab.TRAIN: vocab.TRAIN, "training": vocab.TRAIN,
    vocab.VAL: vocab.VAL, "valid": vocab.VAL, "validation": vocab.VAL, "dev": vocab.VAL,
    vocab.TEST: vocab.TEST, "testing": vocab.TEST,
    vocab.UNASSIGNED: vocab.UNASSIGNED,
}
"""Split spellings (lower case) of folders, table cells and split files -> the stored split."""
_ID, _SPLIT = "id", "split"


def normal_id(text: str, folder: str) -> str:
    """``text`` as a sample id relative to ``folder`` (an absolute path), normalised (module docstring)."""
    # normpath keeps a leading "//" (POSIX leaves it implementation-defined); one "/" is meant.
    sample_id = posixpath.normpath("/" + text.lstrip("/") if text.startswith("//") else text)
    if posixpath.isabs(sample_id) and (sample_id + "/").startswith(folder.rstrip("/") + "/"):
        sample_id = posixpath.relpath(sample_id, folder)
    return sample_id


def apply_split_file(manifest: Manifest, path: str | os.PathLike) -> Manifest:
    """``manifest`` with its splits replaced by those of the split file ``path`` (module docstring)."""
    path = Path(path).expanduser()
    rows = _read_split_rows(path)
    index = {sample_id: i for i, sample_id in enumerate(manifest.ids)}
    folder = os.path.abspath(manifest.root)
    splits = [vocab.UNASSIGNED] * manifest.n_samples
    first_row: dict[str, int] = {}
    for row, (given, cell) in enumerate(rows, start=2):  # row 1 is the header
        sample_id = normal_id(given, folder)
        if sample_id not in index:
            raise ExtractError(f"split file {path}: row {row} names {given!r}, which is not a sample of dataset {manifest.name!r}; "
                               f"use the manifest's ids (paths relative to {manifest.root}, e.g. {manifest.ids[0]!r})")
        first = first_row.setdefault(sample_id, row)
        if first != row:
            raise ExtractError(f"split file {path}: row {row} lists {given!r} again, first on row {first}; list each sample once")
        key = cell.strip().lower()
        if key not in SPLIT_ALIASES:
            raise ExtractError(f"split file {path}: row {row} has split {cell!r}; use train, val, test or leave it empty")
        splits[index[sample_id]] = SPLIT_ALIASES[key]
    counts = Counter(splits)
    log.info("split file %s: %s", path, ", ".join(f"{s or 'unassigned'} {counts[s]}" for s in vocab.STORED_SPLITS if counts[s]))
    return replace(manifest, splits=tuple(splits))


def _read_split_rows(path: Path) -> list[tuple[str, str]]:
    """(id cell, split cell) of each data row of a split file; a file that cannot be one is an ExtractError."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ExtractError(f"split file {path} {what}; pass a CSV file with the header id,split")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            table = list(csv.reader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ExtractError(f"split file {path} cannot be read ({str(err).splitlines()[0]}); pass a UTF-8 CSV file with the header id,split") from None
    header = [c.strip().lower() for c in table[0]] if table else []
    if _ID not in header or _SPLIT not in header:
        raise ExtractError(f"split file {path} has the header {','.join(header) or '(none)'}; its first line must be id,split")
    at_id, at_split = header.index(_ID), header.index(_SPLIT)
    rows = []
    for row, cells in enumerate(table[1:], start=2):
        if not any(c.strip() for c in cells):
            continue  # a blank line (an editor's trailing newline) is no row
        if len(cells) <= max(at_id, at_split) or not cells[at_id].strip():
            raise ExtractError(f"split file {path}: row {row} has no id or no split cell; write id,split on every row")
        rows.append((cells[at_id].strip(), cells[at_split]))
    if not rows:
        raise ExtractError(f"split file {path} lists no samples; add one id,split row per sample")
    return rows


def official_list_splits(lists: Mapping[tuple[int, str], Path], images: Mapping[int, Sequence[str]], where: str) -> dict[tuple[int, str], str]:
    """Split of every image from name lists (the COVID19-CT release; module docstring).

    ``lists`` maps (label, split) to its list file; ``images`` maps a label to its images' ids
    (paths relative to the dataset root). Returns (label, id) -> split; an image no list names
    is unassigned, with a warning.
    """
    split_of: dict[tuple[int, str], str] = {}
    for label, ids in images.items():
        by_name: dict[str, str] = {}
        for sample_id in ids:
            twin = by_name.setdefault(posixpath.basename(sample_id), sample_id)
            if twin != sample_id:
                raise ExtractError(f"{where}: images {twin!r} and {sample_id!r} share a file name, so the split lists cannot tell them apart; remove one")
        listed_in: dict[str, Path] = {}
        for (list_label, split), list_path in sorted(lists.items()):
            if list_label != label:
                continue
            for name in _list_names(list_path):
                if name not in by_name:
                    raise ExtractError(f"{where}: {list_path} lists {name!r}, but there is no such image; correct the list, "
                                       "or remove Data-split/ to leave the splits to the probe")
                if name in listed_in:
                    raise ExtractError(f"{where}: image {by_name[name]!r} is listed in both {listed_in[name]} and {list_path}; "
                                       "correct the lists, or remove Data-split/ to leave the splits to the probe")
                listed_in[name] = list_path
                split_of[(label, by_name[name])] = split
        extra = [i for i in ids if (label, i) not in split_of]
        if extra:
            log.warning("%s: %d image(s) such as %r are in no Data-split list; they stay unassigned and are not probed",
                        where, len(extra), extra[0])
    return split_of


def _list_names(path: Path) -> list[str]:
    """The file names a list holds (one a line; blanks and surrounding spaces dropped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ExtractError(f"split list {path} cannot be read ({str(err).splitlines()[0]}); restore it from the release") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
