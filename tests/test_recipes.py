"""Dataset recipes on small fake trees that use each archive's real naming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from layerprobe.errors import ExtractError
from layerprobe.extract.data.recipes import RECIPES, get_recipe


def _img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)


def _junk(root: Path) -> None:
    (root / ".DS_Store").write_bytes(b"\x00\x01")
    _img(root / "__MACOSX" / "x" / "._a.png")
    (root / "readme.txt").write_text("not an image")


def test_busi_skips_masks_and_junk(tmp_path: Path) -> None:
    root = tmp_path / "Dataset_BUSI_with_GT"
    for cls, n in (("normal", 2), ("benign", 3), ("malignant", 1)):
        for i in range(1, n + 1):
            _img(root / cls / f"{cls} ({i}).png")
            _img(root / cls / f"{cls} ({i})_mask.png")
        _img(root / cls / f"{cls} (1)_mask_1.png")
    _junk(root)
    (root / "benign" / ".DS_Store").write_bytes(b"x")
    m = get_recipe("busi").manifest(tmp_path)
    assert len(m.ids) == 6
    assert sorted(np.bincount(np.asarray(m.labels)).tolist()) == [1, 2, 3]
    assert np.bincount(np.asarray(m.labels)).tolist() == [2, 3, 1]  # normal, benign, malignant
    assert not any("mask" in i for i in m.ids)
    assert set(m.splits) == {""}
    assert tuple(m.class_names) == ("normal", "benign", "malignant")


def test_covid_ct_folders(tmp_path: Path) -> None:
    root = tmp_path / "COVID-CT-master" / "Images-processed"
    for i in range(3):
        _img(root / "CT_COVID" / f"2020.{i}-p{i}.png")
    for i in range(2):
        _img(root / "CT_NonCOVID" / f"{i}.jpg")
    _junk(tmp_path)
    m = get_recipe("covid19-ct").manifest(tmp_path)
    assert np.bincount(np.asarray(m.labels)).tolist() == [3, 2]
    assert RECIPES["covid-ct"].candidates == {"covid": "Yes", "non-covid": "No"}
    assert m.candidates == ("Yes", "No") and m.class_names == ("covid", "non-covid")


def test_chest_xray_keeps_official_split_and_ignores_nested_copy(tmp_path: Path) -> None:
    root = tmp_path / "chest_xray"
    layout = {("train", "NORMAL"): 2, ("train", "PNEUMONIA"): 3, ("val", "NORMAL"): 1, ("val", "PNEUMONIA"): 1,
              ("test", "NORMAL"): 1, ("test", "PNEUMONIA"): 2}
    for (split, cls), n in layout.items():
        for i in range(n):
            _img(root / split / cls / f"person{i}_{cls.lower()}.jpeg")
            _img(root / "chest_xray" / split / cls / f"person{i}_{cls.lower()}.jpeg")  # Kaggle's nested copy
    _junk(root)
    m = get_recipe("chest-xray").manifest(tmp_path)
    assert len(m.ids) == 10
    splits = list(m.splits)
    assert splits.count("train") == 5 and splits.count("val") == 2 and splits.count("test") == 3
    # class 0 = pneumonia, so candidate "Yes" answers it
    pneu = [i for i, lab in zip(m.ids, m.labels) if lab == 0]
    assert all("PNEUMONIA" in i for i in pneu) and len(pneu) == 6


@pytest.mark.parametrize("name", list(RECIPES))
def test_wrong_folder_is_a_clear_error(tmp_path: Path, name: str) -> None:
    _img(tmp_path / "cats" / "a.png")
    with pytest.raises(ExtractError, match="expected"):
        get_recipe(name).manifest(tmp_path)


def test_missing_folder_and_unknown_recipe(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="does not exist"):
        get_recipe("busi").manifest(tmp_path / "nope")
    with pytest.raises(ExtractError, match="known recipes: busi"):
        get_recipe("mnist")


@pytest.mark.parametrize("name", list(RECIPES))
def test_candidates_align_with_classes(name: str) -> None:
    r = RECIPES[name]
    assert set(r.candidates) == set(r.class_names) and len(r.class_names) >= 2
    for c in r.candidates.values():
        assert f"'{c}'" in r.instruction  # the instruction names every candidate (paper appendix A)
