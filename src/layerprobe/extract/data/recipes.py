"""Dataset recipes for the study's three datasets, read as their public archives unpack.

A recipe knows a dataset's folder layout, its class order, the paper's instruction (appendix A) and
its candidate answers, with candidate ``i`` answering class ``i`` (the store contract). It turns a
local folder into a :class:`~layerprobe.extract.data.manifest.Manifest`; nothing is downloaded.

Choices:
- BUSI has no official split: splits are left empty and the probe engine draws a stratified split.
  Its ``*_mask.png`` / ``*_mask_N.png`` files are segmentation masks, not samples. Another folder
  beside ``normal/benign/malignant`` is not read, and a one-line warning names it: the recipe's
  classes are the paper's, so an extra folder cannot be one of them, but it must not vanish unsaid
  (an error would refuse archives that carry a stray folder, such as a readme or a copy). The
  warning goes through :mod:`logging`, so with no logging set up it is one line on stderr.
- COVID19-CT: classes are found as the folders ``CT_COVID`` and ``CT_NonCOVID`` (any depth up to 3,
  as in ``Images-processed/``); class 0 is COVID so that candidate ``Yes`` answers it. When the
  release's ``Data-split/`` folder is there (any depth up to 3), every image takes its split from
  its lists (``{train,val,test}CT_COVID.txt`` etc.: the official split, test = the paper's 203
  images); the rules for names the lists and folders disagree on are in :mod:`.splits`. Without
  it, splits are left empty, as for BUSI.
- Chest-Xray keeps its official ``train``/``val``/``test`` split. The Kaggle archive nests a full
  copy (``chest_xray/chest_xray/``); the shallowest complete tree is used, so no image is counted twice.
  Class 0 is PNEUMONIA (candidate ``Yes``).
- Hidden files, ``__MACOSX`` and other archive metadata folders, and non-image files are ignored.
- A path that is a file, not a folder, is refused as such (every recipe).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from layerprobe import vocab
from layerprobe.errors import ExtractError
from layerprobe.extract.data.candidates import match_candidates
from layerprobe.extract.data.files import folder_problem, is_metadata, iter_images, mask_base, subfolders
from layerprobe.extract.data.manifest import Manifest, Row
from layerprobe.extract.data.splits import official_list_splits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetRecipe:
    name: str
    """Recipe name used on the command line (``--dataset NAME:FOLDER``)."""
    class_names: tuple[str, ...]
    """Class order; index ``i`` is label ``i`` in the store."""
    candidates: Mapping[str, str]
    """Class name -> candidate answer (paper appendix A); matched to the manifest's classes by
    ``data/candidates.match_candidates``, never by position."""
    instruction: str
    """The paper's instruction; the image goes before it through the model's chat template."""
    expected: str
    """The layout this recipe expects, quoted in the error when a folder does not match."""
    scan: Callable[[Path], list[Row]]
    """Lists the samples under a dataset root."""

    def manifest(self, root: str | Path) -> Manifest:
        """Scan ``root`` and return a Manifest; a folder that does not match is an ExtractError."""
        root_path = Path(root).expanduser()
        problem = folder_problem(root_path)
        if problem is not None:
            raise ExtractError(f"{self.name}: dataset folder {root_path} {problem}; expected {self.expected}")
        rows = sorted(self.scan(root_path))
        if not rows:
            raise ExtractError(f"{self.name}: found no images in {root_path}; expected {self.expected}")
        found = {label for _, label, _ in rows}
        missing = [self.class_names[i] for i in range(len(self.class_names)) if i not in found]
        if missing:
            raise ExtractError(f"{self.name}: no images of class {', '.join(missing)} under {root_path}; expected {self.expected}")
        return Manifest.from_rows(
            name=self.name,
            root=root_path,
            rows=rows,
            class_names=self.class_names,
            instruction=self.instruction,
            candidates=match_candidates(self.class_names, self.candidates),
        )


def _child_dirs(folder: Path, max_depth: int) -> Iterator[Path]:
    """Folders under ``folder`` up to ``max_depth`` levels, shallowest first, metadata skipped."""
    level = [folder]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for d in level:
            yield d
            for child in sorted(d.iterdir()):
                if child.is_dir() and not is_metadata(child.name):
                    nxt.append(child)
        level = nxt


def _find_class_dirs(root: Path, names: tuple[str, ...], max_depth: int = 3) -> dict[str, Path] | None:
    """The shallowest folder holding a sub-folder for every name (case-insensitive)."""
    for d in _child_dirs(root, max_depth):
        subs = {c.name.lower(): c for c in d.iterdir() if c.is_dir()}
        if all(n.lower() in subs for n in names):
            return {n: subs[n.lower()] for n in names}
    return None


def _scan_busi(root: Path) -> list[Row]:
    names = ("normal", "benign", "malignant")
    dirs = _find_class_dirs(root, names)
    if dirs is None:
        return []
    parent = dirs[names[0]].parent
    for other in subfolders(parent):
        if other.name.lower() not in names:
            log.warning("busi: folder %s is not one of the classes %s; its images are not used", other, ", ".join(names))
    rows: list[Row] = []
    for label, name in enumerate(names):
        for path in iter_images(dirs[name]):
            if mask_base(path) is not None:
                continue
            rows.append((path.relative_to(root).as_posix(), label, vocab.UNASSIGNED))
    return rows


_COVID_FOLDERS = ("CT_COVID", "CT_NonCOVID")
"""The release's class folders, class 0 first."""
_COVID_LISTS = ("COVID", "NonCOVID")
"""``Data-split/<this>/`` holds the lists of the class of the same index."""


def _scan_covid_ct(root: Path) -> list[Row]:
    dirs = _find_class_dirs(root, _COVID_FOLDERS)
    if dirs is None:
        return []
    images = {label: [p.relative_to(root).as_posix() for p in iter_images(dirs[name])] for label, name in enumerate(_COVID_FOLDERS)}
    lists = _covid_lists(root)
    if lists is None:
        return [(i, label, vocab.UNASSIGNED) for label, ids in images.items() for i in ids]
    split_of = official_list_splits(lists, images, f"covid-ct ({root})")
    counts = {s: sum(1 for v in split_of.values() if v == s) for s in vocab.SPLITS}
    log.info("covid-ct: official split from %s: %s", lists[(0, vocab.TEST)].parent.parent,
             ", ".join(f"{s} {n}" for s, n in counts.items()))
    return [(i, label, split_of.get((label, i), vocab.UNASSIGNED)) for label, ids in images.items() for i in ids]


def _covid_lists(root: Path) -> dict[tuple[int, str], Path] | None:
    """(label, split) -> list file of the release's ``Data-split/`` (shallowest, depth <= 3); None if absent."""
    found = next((d for d in _child_dirs(root, 3) if d.name.lower() == "data-split"), None)
    if found is None:
        return None
    lists = {}
    for label, (folder, images) in enumerate(zip(_COVID_LISTS, _COVID_FOLDERS)):
        for split in vocab.SPLITS:
            path = found / folder / f"{split}{images}.txt"
            if not path.is_file():
                raise ExtractError(f"covid-ct: {found} has no split list {path.relative_to(found).as_posix()}; restore it from the "
                                   "release, or remove the Data-split folder to leave the splits to the probe")
            lists[(label, split)] = path
    return lists


def _scan_chest_xray(root: Path) -> list[Row]:
    for d in _child_dirs(root, 3):
        splits = {c.name.lower(): c for c in d.iterdir() if c.is_dir()}
        if vocab.TRAIN not in splits or vocab.TEST not in splits:
            continue
        rows: list[Row] = []
        for split in vocab.SPLITS:
            if split not in splits:
                continue
            classes = {c.name.upper(): c for c in splits[split].iterdir() if c.is_dir()}
            for label, name in enumerate(("PNEUMONIA", "NORMAL")):
                if name in classes:
                    rows += [(p.relative_to(root).as_posix(), label, split) for p in iter_images(classes[name])]
        if rows:
            return rows
    return []


RECIPES: dict[str, DatasetRecipe] = {
    r.name: r
    for r in (
        DatasetRecipe(
            name="busi",
            class_names=("normal", "benign", "malignant"),
            candidates={"normal": "Normal", "benign": "Benign", "malignant": "Malignant"},
            instruction="Carefully examine the image to determine the diagnostic result for breast cancer. "
            "Please answer 'Normal', 'Benign', or 'Malignant'.",
            expected="Dataset_BUSI_with_GT/{normal,benign,malignant}/*.png (mask files are skipped)",
            scan=_scan_busi,
        ),
        DatasetRecipe(
            name="covid-ct",
            class_names=("covid", "non-covid"),
            candidates={"covid": "Yes", "non-covid": "No"},
            instruction="Carefully examine the image to determine if there is COVID present. Please answer 'Yes' or 'No'.",
            expected="folders CT_COVID/ and CT_NonCOVID/ of images (e.g. Images-processed/CT_COVID), optionally the release's Data-split/ lists",
            scan=_scan_covid_ct,
        ),
        DatasetRecipe(
            name="chest-xray",
            class_names=("pneumonia", "normal"),
            candidates={"pneumonia": "Yes", "normal": "No"},
            instruction="Carefully examine the image to determine if there is pneumonia present. Please answer 'Yes' or 'No'.",
            expected="chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg",
            scan=_scan_chest_xray,
        ),
    )
}


def get_recipe(name: str) -> DatasetRecipe:
    """The recipe called ``name``; an unknown name is an ExtractError listing the known ones."""
    key = name.lower().replace("_", "-")
    aliases = {"covid19-ct": "covid-ct", "chestxray": "chest-xray", "chest-x-ray": "chest-xray"}
    key = aliases.get(key, key)
    if key not in RECIPES:
        raise ExtractError(f"unknown dataset recipe {name!r}; known recipes: {', '.join(RECIPES)} (or pass a folder or a manifest file)")
    return RECIPES[key]
