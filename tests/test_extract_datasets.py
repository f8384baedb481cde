"""Manifests from ImageFolder trees and tables: order, labels, splits, junk, and one-line errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from layerprobe.errors import ExtractError
from layerprobe.extract.data.datasets import from_image_folder, from_table, resolve_dataset
from layerprobe.extract.data.manifest import Manifest


def _img(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(path)
    return path


def _tree(root: Path) -> Path:
    for name in ("b2.png", "b1.jpg", "deeper/b0.png"):
        _img(root / "benign" / name)
    _img(root / "Malignant" / "m.png")
    _img(root / "normal" / "n.bmp")
    # Junk that must be ignored.
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "benign" / ".DS_Store").write_bytes(b"\0")
    _img(root / "benign" / "._b1.jpg")
    _img(root / "__MACOSX" / "benign" / "x.png")
    _img(root / ".hidden" / "y.png")
    (root / "benign" / "notes.txt").write_text("x")
    (root / "README.md").write_text("x")
    return root


def test_image_folder_order_labels_and_junk(tmp_path: Path) -> None:
    m = from_image_folder(_tree(tmp_path / "ds"))
    assert m.name == "ds"
    assert m.class_names == ("Malignant", "benign", "normal")  # sorted, code-point order
    assert m.ids == ("Malignant/m.png", "benign/b1.jpg", "benign/b2.png", "benign/deeper/b0.png", "normal/n.bmp")
    assert m.labels == (0, 1, 1, 1, 2)
    assert m.splits == ("",) * 5
    assert all(p.is_file() for p in m.paths)
    assert m.paths[1] == tmp_path / "ds" / "benign" / "b1.jpg"


def test_image_folder_with_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _img(root / "train" / "cat" / "1.png")
    _img(root / "train" / "dog" / "2.png")
    _img(root / "Validation" / "dog" / "3.png")
    _img(root / "test" / "cat" / "4.png")
    m = from_image_folder(root)
    assert m.class_names == ("cat", "dog")
    assert dict(zip(m.ids, zip(m.labels, m.splits))) == {
        "Validation/dog/3.png": (1, "val"), "test/cat/4.png": (0, "test"),
        "train/cat/1.png": (0, "train"), "train/dog/2.png": (1, "train"),
    }


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="does not exist"):
        from_image_folder(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    _img(tmp_path / "flat" / "a.png")
    with pytest.raises(ExtractError, match="no class folders"):
        from_image_folder(tmp_path / "flat")
    _img(tmp_path / "ds" / "a" / "1.png")
    (tmp_path / "ds" / "b").mkdir()
    (tmp_path / "ds" / "b" / ".DS_Store").write_bytes(b"\0")
    with pytest.raises(ExtractError, match="'b'.*holds no images"):
        from_image_folder(tmp_path / "ds")


def test_sha256_covers_what_the_samples_are(tmp_path: Path) -> None:
    m = from_image_folder(_tree(tmp_path / "ds"))
    assert m.sha256 == from_image_folder(tmp_path / "ds").sha256
    assert len(m.sha256) == 64
    moved = replace(m, root=tmp_path, paths=tuple(tmp_path / i for i in m.ids), name="other")
    assert moved.sha256 == m.sha256  # where the files lie is not part of it
    for change in ({"labels": (1,) + m.labels[1:]}, {"splits": ("test",) + m.splits[1:]},
                   {"ids": ("x.png",) + m.ids[1:]}, {"class_names": ("a", "b", "c")}):
        assert replace(m, **change).sha256 != m.sha256


def test_head_takes_the_first_samples(tmp_path: Path) -> None:
    m = from_image_folder(_tree(tmp_path / "ds"))
    h = m.head(2)
    assert h.ids == m.ids[:2] and h.labels == m.labels[:2] and h.paths == m.paths[:2]
    assert h.class_names == m.class_names and h.sha256 != m.sha256
    assert m.head(99) is m
    with pytest.raises(ExtractError):
        m.head(0)


def _write(frame: pl.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_csv(path, separator="\t" if path.suffix == ".tsv" else ",")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_table_with_class_names_splits_and_paths(tmp_path: Path, suffix: str) -> None:
    a = _img(tmp_path / "imgs" / "007.png")
    elsewhere = _img(tmp_path / "other" / "z.png")
    frame = pl.DataFrame({
        "path": ["imgs/007.png", str(elsewhere), "imgs/b.png"],
        "label": ["malignant", "benign", "benign"],
        "split": ["Train", "valid", None],
    })
    m = from_table(_write(frame, tmp_path / f"list{suffix}"))
    assert m.name == "list" and m.root == tmp_path
    # "007" kept as written; an absolute path inside the table's folder is its relative id (issue 15 #4)
    assert m.ids == ("imgs/007.png", "other/z.png", "imgs/b.png")
    assert m.paths[:2] == (a, elsewhere)
    assert m.class_names == ("benign", "malignant") and m.labels == (1, 0, 0)
    assert m.splits == ("train", "val", "")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_with_integer_labels(tmp_path: Path, suffix: str) -> None:
    frame = pl.DataFrame({"path": ["a.png", "b.png", "c.png"], "label": [2, 0, 2]})
    m = from_table(_write(frame, tmp_path / f"t{suffix}"))
    assert m.labels == (2, 0, 2) and m.class_names == ("0", "1", "2")
    named = from_table(tmp_path / f"t{suffix}", class_names=("cat", "dog", "eel"))
    assert named.labels == (2, 0, 2) and named.class_names == ("cat", "dog", "eel")


def test_csv_and_parquet_give_the_same_manifest(tmp_path: Path) -> None:
    frame = pl.DataFrame({"path": ["x/1.png", "x/2.png"], "label": ["no", "yes"], "split": ["test", "train"]})
    assert from_table(_write(frame, tmp_path / "t.csv")).sha256 == from_table(_write(frame, tmp_path / "t.parquet")).sha256


@pytest.mark.parametrize(
    ("frame", "kw", "match"),
    [
        ({"path": ["a.png"], "lbl": ["x"]}, {}, "no 'label' column"),
        ({"file": ["a.png"], "label": ["x"]}, {}, "no 'path' column"),
        ({"path": ["a.png", "b.png"], "label": ["cat", "emu"]}, {"class_names": ("cat", "dog")}, "row 2 has unknown label 'emu'"),
        ({"path": ["a.png"], "label": ["5"]}, {"class_names": ("cat", "dog")}, "unknown label '5'"),
        ({"path": ["a.png"], "label": ["-1"]}, {}, "negative"),
        ({"path": ["a.png", "b.png"], "label": ["x", "y"], "split": ["train", "holdout"]}, {}, "row 2 has split 'holdout'"),
        ({"path": ["a.png", "a.png"], "label": ["x", "y"]}, {}, "row 2 lists 'a.png' again"),
        ({"path": ["a.png", None], "label": ["x", "y"]}, {}, "row 2 has no path"),
        ({"path": ["a.png", "b.png"], "label": ["x", None]}, {}, "row 2 has no label"),
        ({"path": [], "label": []}, {}, "no rows"),
    ],
)
def test_table_errors(tmp_path: Path, frame: dict, kw: dict, match: str) -> None:
    path = _write(pl.DataFrame(frame, schema={k: pl.String for k in frame}), tmp_path / "t.csv")
    with pytest.raises(ExtractError, match=match) as info:
        from_table(path, **kw)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_table_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ExtractError, match="does not exist"):
        from_table(tmp_path / "missing.csv")
    (tmp_path / "t.xlsx").write_bytes(b"x")
    with pytest.raises(ExtractError, match="not a .csv"):
        from_table(tmp_path / "t.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(ExtractError, match="cannot be read"):
        from_table(tmp_path / "bad.parquet")


def test_resolve_dataset_forms(tmp_path: Path) -> None:
    root = _tree(tmp_path / "ds")
    assert resolve_dataset(str(root)) == from_image_folder(root)
    table = _write(pl.DataFrame({"path": ["a.png", "b.png"], "label": ["x", "y"]}), tmp_path / "t.csv")  # two classes (issue 15 #14)
    assert resolve_dataset(table).ids == ("a.png", "b.png")
    busi = tmp_path / "busi"
    for cls in ("normal", "benign", "malignant"):
        _img(busi / cls / f"{cls} (1).png")
    m = resolve_dataset(f"busi:{busi}")
    assert m.class_names == ("normal", "benign", "malignant") and m.n_samples == 3
    assert m.candidates == ("Normal", "Benign", "Malignant") and "breast" in m.instruction
    with pytest.raises(ExtractError, match="known recipes"):
        resolve_dataset(f"mnist:{busi}")
    with pytest.raises(ExtractError, match="does not exist; pass a folder"):
        resolve_dataset(str(tmp_path / "nothing"))


def test_manifest_checks() -> None:
    # two classes: a one-class manifest is refused (issue 15 #14, test_one_class_datasets_are_refused)
    ok = dict(name="d", root=Path("/"), paths=(Path("/a"),), ids=("a",), labels=(0,), splits=("",), class_names=("x", "y"))
    Manifest(**ok)
    with pytest.raises(ExtractError, match="label 2"):
        Manifest(**{**ok, "labels": (2,)})
    with pytest.raises(ExtractError, match="no samples"):
        Manifest(**{**ok, "paths": (), "ids": (), "labels": (), "splits": ()})
    with pytest.raises(ExtractError, match="candidates"):
        Manifest(**ok, candidates=("a", "b", "c"))


def test_a_manifest_yields_the_stores_sample_info(tmp_path: Path) -> None:
    from layerprobe.store import SampleInfo

    m = from_image_folder(_tree(tmp_path / "ds"))
    info = m.sample_info()
    assert isinstance(info, SampleInfo) and info.n_classes == len(m.class_names) == 3
    assert info.ids == m.ids and info.splits == m.splits
    assert info.labels.dtype == np.int64 and info.labels.tolist() == list(m.labels)


def test_per_sample_rules_are_the_sample_infos(tmp_path: Path) -> None:
    """Duplicate ids, unknown splits and labels out of range fail in SampleInfo, named by the dataset."""
    from layerprobe.errors import StoreError
    from layerprobe.store import SampleInfo

    ok = dict(name="d", root=Path("/"), paths=(Path("/a"), Path("/b")), ids=("a", "b"), labels=(0, 1), splits=("", "test"), class_names=("x", "y"))
    for change, message in (({"ids": ("a", "a")}, "'a' appears twice"), ({"splits": ("", "dev")}, r"unknown split value\(s\) \['dev'\]"),
                            ({"labels": (0, 2)}, "label 2 is outside 0..1")):
        with pytest.raises(ExtractError, match=message) as info:
            Manifest(**{**ok, **change})
        assert str(info.value).startswith("dataset 'd': ") and "\n" not in str(info.value)
        with pytest.raises(StoreError, match=message):
            SampleInfo(change.get("ids", ok["ids"]), np.asarray(change.get("labels", ok["labels"])), change.get("splits", ok["splits"]), n_classes=2)
    assert SampleInfo(("a",), np.array([7]), ("",)).labels.tolist() == [7]  # no n_classes: the range is the writer's to check
