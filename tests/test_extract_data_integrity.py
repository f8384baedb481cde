"""Issue 15 #4, #5, #14 (data side): path aliases, identical images across splits, labels that differ
only by case, BUSI's extra folders and masks, files given for folders, one-class datasets."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from layerprobe.errors import ExtractError
from layerprobe.extract.data.datasets import from_image_folder, from_table, resolve_dataset
from layerprobe.extract.data.preflight import check_images, cross_split_duplicates
from layerprobe.extract.data.recipes import RECIPES, get_recipe


def _img(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def _csv(tmp_path: Path, paths: list[str], labels: list[str], splits: list[str] | None = None) -> Path:
    columns = {"path": paths, "label": labels} | ({"split": splits} if splits else {})
    table = tmp_path / "list.csv"
    pl.DataFrame(columns).write_csv(table)
    return table


def _one_line(call) -> str:
    with pytest.raises(ExtractError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


# --- 4. path aliases and identical images ---------------------------------------------------------


@pytest.mark.parametrize("alias", ["./img/x.png", "img//x.png", "img/../img/x.png", "{root}/img/x.png", "{root}//img/./x.png"])
def test_spellings_of_one_file_are_one_image_listed_twice(tmp_path: Path, alias: str) -> None:
    _img(tmp_path / "img" / "x.png")
    _img(tmp_path / "img" / "y.png", 1)
    table = _csv(tmp_path, ["img/x.png", "img/y.png", alias.format(root=tmp_path)], ["a", "b", "a"], ["train", "train", "test"])
    message = _one_line(lambda: from_table(table))
    assert "row 3" in message and "first on row 1" in message and "each image may appear once" in message


def test_table_ids_are_normalised(tmp_path: Path) -> None:
    _img(tmp_path / "img" / "x.png")
    outside = _img(tmp_path.parent / f"{tmp_path.name}-elsewhere" / "z.png")
    table = _csv(tmp_path, ["./img/x.png", f"{tmp_path}/img/../img/y.png", str(outside)], ["a", "b", "b"])
    m = from_table(table)
    assert m.ids == ("img/x.png", "img/y.png", str(outside))  # inside the table's folder: relative; outside: absolute
    assert m.paths[0] == tmp_path / "img" / "x.png" and m.paths[2] == outside


def test_a_symlink_to_a_listed_file_is_the_same_image(tmp_path: Path) -> None:
    _img(tmp_path / "img" / "x.png")
    _img(tmp_path / "img" / "y.png", 1)
    os.symlink(tmp_path / "img", tmp_path / "link")
    table = _csv(tmp_path, ["img/x.png", "img/y.png", "link/x.png"], ["a", "b", "a"])
    assert "same file as 'img/x.png'" in _one_line(lambda: from_table(table))


def test_identical_bytes_in_two_splits_are_refused_naming_both(tmp_path: Path) -> None:
    _img(tmp_path / "a" / "1.png", 10)
    _img(tmp_path / "b" / "2.png", 20)
    shutil.copy(tmp_path / "a" / "1.png", tmp_path / "b" / "copy.png")  # a real copy under another name
    m = from_table(_csv(tmp_path, ["a/1.png", "b/2.png", "b/copy.png"], ["a", "b", "b"], ["train", "train", "test"]))
    message = _one_line(lambda: check_images(m))
    assert "'a/1.png' (train)" in message and "'b/copy.png' (test)" in message and "--allow-duplicate-images" in message
    extra = check_images(m, allow_duplicate_images=True)
    assert extra == {"allow_duplicate_images": True, "duplicate_image_groups": 1, "duplicate_images": [["a/1.png", "b/copy.png"]]}


def test_copies_within_one_official_split_pass_but_unassigned_copies_do_not(tmp_path: Path) -> None:
    _img(tmp_path / "a" / "1.png", 10)
    _img(tmp_path / "b" / "2.png", 20)
    shutil.copy(tmp_path / "a" / "1.png", tmp_path / "a" / "copy.png")
    same = from_table(_csv(tmp_path, ["a/1.png", "a/copy.png", "b/2.png"], ["a", "a", "b"], ["train", "train", "test"]))
    assert cross_split_duplicates(same) == [] and check_images(same) == {}  # a default run records nothing
    # no official split: the probe engine draws one, and may put the two copies on both sides
    unassigned = from_image_folder(tmp_path)
    assert "(unassigned)" in _one_line(lambda: check_images(unassigned))


def test_unreadable_files_are_left_to_the_loader(tmp_path: Path) -> None:
    _img(tmp_path / "a" / "1.png")
    m = from_table(_csv(tmp_path, ["a/1.png", "missing.png"], ["a", "b"]))
    assert check_images(m) == {}


def test_hashing_a_few_thousand_small_files_is_cheap(tmp_path: Path) -> None:
    """Hashing 3,000 small files (preflight's docstring quotes 0.09 s for 84 MB), with a loose bound."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "c"
    folder.mkdir()
    for i in range(3000):
        (folder / f"{i}.png").write_bytes(rng.bytes(12_000))
    (tmp_path / "d").mkdir()
    shutil.copy(folder / "0.png", tmp_path / "d" / "0.png")
    m = from_image_folder(tmp_path)
    started = time.perf_counter()
    groups = cross_split_duplicates(m)
    assert time.perf_counter() - started < 5.0
    assert [[m.ids[i] for i in g] for g in groups] == [["c/0.png", "d/0.png"]]


# --- 5. case twins, BUSI folders and masks -------------------------------------------------------


def test_table_labels_that_differ_only_by_case_are_refused(tmp_path: Path) -> None:
    for name in ("1", "2", "3"):
        _img(tmp_path / f"{name}.png")
    message = _one_line(lambda: from_table(_csv(tmp_path, ["1.png", "2.png", "3.png"], ["benign", "Benign", "malignant"])))
    assert "'Benign' and 'benign' differ only by case" in message
    named = _one_line(lambda: from_table(_csv(tmp_path, ["1.png", "2.png"], ["benign", "Malignant"]), class_names=("benign", "malignant")))
    assert "row 2 has label 'Malignant', which differs from class 'malignant' only by case" in named


def test_class_folders_that_differ_only_by_case_are_refused(tmp_path: Path) -> None:
    _img(tmp_path / "train" / "Benign" / "a.png")
    _img(tmp_path / "test" / "benign" / "b.png")
    _img(tmp_path / "test" / "malignant" / "c.png")
    assert "'Benign' and 'benign' differ only by case" in _one_line(lambda: from_image_folder(tmp_path))


def _busi(root: Path) -> Path:
    for cls in ("normal", "benign", "malignant"):
        _img(root / cls / f"{cls} (1).png")
        _img(root / cls / f"{cls} (1)_mask.png", 255)
    _img(root / "benign" / "benign (1)_mask_1.png", 255)
    return root


def test_busi_warns_about_a_folder_that_is_no_class(tmp_path: Path, caplog) -> None:
    root = _busi(tmp_path / "Dataset_BUSI_with_GT")
    _img(root / "Malignant_extra" / "x.png")
    with caplog.at_level(logging.WARNING):
        m = get_recipe("busi").manifest(tmp_path)
    assert m.n_samples == 3
    [record] = [r for r in caplog.records if "Malignant_extra" in r.getMessage()]
    assert "not one of the classes" in record.getMessage() and "\n" not in record.getMessage()
    caplog.clear()
    shutil.rmtree(root / "Malignant_extra")
    with caplog.at_level(logging.WARNING):
        get_recipe("busi").manifest(tmp_path)
    assert not caplog.records


def test_a_plain_folder_with_busi_masks_is_refused_suggesting_the_recipe(tmp_path: Path) -> None:
    root = _busi(tmp_path / "BUSI")
    message = _one_line(lambda: resolve_dataset(str(root)))
    assert "segmentation masks" in message and f"busi:{root}" in message
    assert resolve_dataset(f"busi:{root}").n_samples == 3
    # a name that merely ends in _mask, with no image it belongs to, is an ordinary sample
    other = tmp_path / "other"
    _img(other / "a" / "face_mask.png")
    _img(other / "b" / "x.png", 1)
    assert from_image_folder(other).ids == ("a/face_mask.png", "b/x.png")


# --- 14. files given for folders, one-class datasets ----------------------------------------------


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_a_recipe_given_a_file_says_a_folder_is_expected(tmp_path: Path, recipe: str) -> None:
    afile = tmp_path / "chest_xray.zip"
    afile.write_bytes(b"PK")
    message = _one_line(lambda: resolve_dataset(f"{recipe}:{afile}"))
    assert "is a file, not a folder" in message and "does not exist" not in message


def test_a_folder_source_given_a_file_says_a_folder_is_expected(tmp_path: Path) -> None:
    afile = tmp_path / "x.png"
    afile.write_bytes(b"x")
    assert "is a file, not a folder" in _one_line(lambda: from_image_folder(afile))


def test_one_class_datasets_are_refused_naming_the_dataset_and_class(tmp_path: Path) -> None:
    _img(tmp_path / "only" / "benign" / "a.png")
    message = _one_line(lambda: resolve_dataset(str(tmp_path / "only")))
    assert message.startswith("dataset 'only' has 1 class(es) ('benign')")
    _img(tmp_path / "t" / "a.png")
    table = _csv(tmp_path / "t", ["a.png"], ["0"])
    assert "dataset 'list' has 1 class(es) ('0')" in _one_line(lambda: resolve_dataset(str(table)))
