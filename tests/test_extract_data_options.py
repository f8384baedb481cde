"""Issue 15 (data side) through run_extract and the CLI: the dataset checks run before the model
loads, --allow-duplicate-images and --dicom-frame reach the loader and are recorded in the store."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from layerprobe.errors import ExtractError
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.runner import run_extract
from layerprobe.store import open_store
from test_extract_runner import config, make_images
from test_extract_runner_cli import _run


@pytest.fixture(scope="module")
def llava(tiny_checkpoint) -> Path:
    return tiny_checkpoint("llava")


@pytest.fixture
def no_model_loading(monkeypatch):
    import layerprobe.extract.model.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the dataset was refused")

    monkeypatch.setattr(loading, "load_model", refuse)


def test_a_one_class_dataset_is_refused_before_the_model_loads(llava, tmp_path, no_model_loading) -> None:
    root = make_images(tmp_path / "pets", n_per_class=2)
    shutil.rmtree(root / "dog")
    with pytest.raises(ExtractError, match=r"dataset 'pets' has 1 class\(es\) \('cat'\)"):
        run_extract(config(llava, root, tmp_path / "s.zarr"))


def test_cross_split_copies_are_refused_before_the_model_loads(llava, tmp_path, no_model_loading) -> None:
    root = make_images(tmp_path / "pets", n_per_class=2)
    shutil.copy(root / "cat" / "cat0.png", root / "dog" / "dog9.png")
    with pytest.raises(ExtractError, match="'cat/cat0.png' \\(unassigned\\) and 'dog/dog9.png' \\(unassigned\\) have identical bytes"):
        run_extract(config(llava, root, tmp_path / "s.zarr"))


def test_allowed_copies_are_recorded_in_the_store(llava, tmp_path) -> None:
    root = make_images(tmp_path / "pets", n_per_class=2)
    shutil.copy(root / "cat" / "cat0.png", root / "dog" / "dog9.png")
    extra = open_store(run_extract(config(llava, root, tmp_path / "s.zarr", allow_duplicate_images=True))).meta.extra
    assert extra["allow_duplicate_images"] is True and extra["duplicate_images"] == [["cat/cat0.png", "dog/dog9.png"]]


def test_config_parses_the_dicom_frame_rule_once() -> None:
    base = dict(model="m", dataset="d", out="o")
    assert ExtractConfig(**base, dicom_frame="3").dicom_frame == 3
    assert ExtractConfig(**base, dicom_frame="middle").dicom_frame == "middle"
    assert ExtractConfig(**base).dicom_frame is None
    with pytest.raises(ExtractError, match="frame rule 'mid'"):
        ExtractConfig(**base, dicom_frame="mid")


def _dicom_table(tmp_path: Path) -> Path:
    from pydicom.data import get_testdata_file

    for name in ("rtdose.dcm", "CT_small.dcm"):  # 15 frames, 1 frame; both ship inside the pydicom wheel
        shutil.copy(get_testdata_file(name, download=False), tmp_path / name)
    table = tmp_path / "scans.csv"
    pl.DataFrame({"path": ["rtdose.dcm", "CT_small.dcm"], "label": ["dose", "ct"]}).write_csv(table)
    return table


def test_dicom_frame_reaches_the_loader_and_is_recorded(llava, tmp_path, capsys) -> None:
    pytest.importorskip("pydicom")
    table = _dicom_table(tmp_path)
    args = ["extract", "--model", str(llava), "--dataset", str(table), "--workers", "0", "--no-progress", "--prompt", "Which scan?"]
    code, _, err = _run([*args, "--out", str(tmp_path / "none.zarr")], capsys)
    err = err.strip().splitlines()[-1]  # (above it: transformers' loading bars, another item of issue 15)
    assert code == 1 and err.startswith("error: image ")
    assert "rtdose.dcm is a multi-frame DICOM (15 frames)" in err and "--dicom-frame" in err
    code, out, err = _run([*args, "--out", str(tmp_path / "mid.zarr"), "--dicom-frame", "middle", "--json"], capsys)
    assert code == 0, err
    store = open_store(tmp_path / "mid.zarr")
    assert store.committed.all() and not store.skipped.any() and store.meta.dicom_frame == "middle"
    # the frame rule decides the pixels: resuming with another rule would mix frames in one store
    code, _, err = _run([*args, "--out", str(tmp_path / "mid.zarr"), "--dicom-frame", "first"], capsys)
    assert code == 1 and "dicom_frame" in err.strip().splitlines()[-1], err
    code, _, err = _run([*args, "--out", str(tmp_path / "bad.zarr"), "--dicom-frame", "mid"], capsys)
    assert code == 1 and err.strip() == "error: frame rule 'mid' is not 'first', 'middle' or a frame index (0-based, negative from the end)"
