"""Issue 12 item 4: the COVID19-CT release's official split, and a split file for any dataset."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from layerprobe.errors import ExtractError, StoreError
from layerprobe.extract.data.datasets import from_image_folder, resolve_dataset
from layerprobe.extract.data.recipes import get_recipe
from layerprobe.extract.data.splits import apply_split_file

# A release-shaped COVID19-CT tree: (class folder, list folder, list suffix) -> split -> image names.
# Proportions as in the release (test = 98 COVID + 105 NonCOVID there), sizes tiny.
_LISTS = {
    ("CT_COVID", "COVID", "CT_COVID"): {"train": ["2020.01.24.919183-p27-132.png", "2020.02.10.20021584-p6-52%0.png"],
                                        "val": ["2020.03.16.20036145-p19-128-4.png"],
                                        "test": ["2020.03.12.20034686-p17-91-1.png", "2020.03.12.20034686-p17-91-2.png"]},
    ("CT_NonCOVID", "NonCOVID", "CT_NonCOVID"): {"train": ["0.jpg", "1%1.png"], "val": ["10.jpg", "11.jpg"],
                                                 "test": ["100.jpg", "101.png", "102.jpg"]},
}


def _img(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def _release(tmp_path: Path, lists: bool = True) -> Path:
    """``tmp_path/COVID-CT-master/{Images-processed/CT_*,Data-split/*/*.txt}`` as the repository unpacks."""
    repo = tmp_path / "COVID-CT-master"
    value = 0
    for (images, folder, suffix), splits in _LISTS.items():
        for split, names in splits.items():
            for name in names:
                value += 1
                _img(repo / "Images-processed" / images / name, value)
            if lists:
                path = repo / "Data-split" / folder / f"{split}{suffix}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                # Windows line ends and a trailing blank line, as text files from the release may have.
                path.write_bytes(("\r\n".join(names) + "\r\n\r\n").encode())
    return tmp_path


def _list(root: Path, folder: str, name: str) -> Path:
    return root / "COVID-CT-master" / "Data-split" / folder / name


def test_covid_ct_takes_every_split_from_the_release_lists(tmp_path: Path, caplog) -> None:
    root = _release(tmp_path)
    with caplog.at_level(logging.INFO):
        m = get_recipe("covid-ct").manifest(root)
    got = Counter((m.class_names[label], split) for label, split in zip(m.labels, m.splits))
    want = Counter({(cls, split): len(names) for (images, _, _), splits in _LISTS.items()
                    for split, names in splits.items() for cls in [("covid", "non-covid")[images == "CT_NonCOVID"]]})
    assert got == want
    assert Counter(m.splits)["test"] == 5 and "" not in m.splits
    by_name = {os.path.basename(i): s for i, s in zip(m.ids, m.splits)}
    assert by_name["2020.03.16.20036145-p19-128-4.png"] == "val" and by_name["101.png"] == "test"
    assert "official split from" in caplog.text and "train 4, val 3, test 5" in caplog.text


def test_covid_ct_without_the_lists_leaves_splits_unassigned(tmp_path: Path) -> None:
    m = get_recipe("covid-ct").manifest(_release(tmp_path, lists=False))
    assert set(m.splits) == {""} and m.n_samples == 12


def _one_line_error(root: Path) -> str:
    with pytest.raises(ExtractError) as err:
        get_recipe("covid-ct").manifest(root)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_listed_name_without_its_image_names_the_list(tmp_path: Path) -> None:
    root = _release(tmp_path)
    next((root / "COVID-CT-master" / "Images-processed" / "CT_COVID").glob("2020.03.16*")).unlink()
    message = _one_line_error(root)
    assert "valCT_COVID.txt" in message and "2020.03.16.20036145-p19-128-4.png" in message and "no such image" in message


def test_a_name_listed_under_the_other_class_is_refused(tmp_path: Path) -> None:
    root = _release(tmp_path)
    path = _list(root, "NonCOVID", "trainCT_NonCOVID.txt")
    path.write_text(path.read_text() + "2020.01.24.919183-p27-132.png\n")  # a COVID image in a NonCOVID list
    message = _one_line_error(root)
    assert "trainCT_NonCOVID.txt" in message and "2020.01.24.919183-p27-132.png" in message


def test_an_image_in_two_lists_names_both(tmp_path: Path) -> None:
    root = _release(tmp_path)
    path = _list(root, "NonCOVID", "testCT_NonCOVID.txt")
    path.write_text(path.read_text() + "0.jpg\n")  # also in trainCT_NonCOVID.txt
    message = _one_line_error(root)
    assert "'COVID-CT-master/Images-processed/CT_NonCOVID/0.jpg'" in message and "testCT_NonCOVID.txt" in message and "trainCT_NonCOVID.txt" in message


def test_a_missing_list_file_is_named(tmp_path: Path) -> None:
    root = _release(tmp_path)
    _list(root, "COVID", "testCT_COVID.txt").unlink()
    message = _one_line_error(root)
    assert "COVID/testCT_COVID.txt" in message and "remove the Data-split folder" in message


def test_an_image_in_no_list_is_kept_unassigned_with_a_warning(tmp_path: Path, caplog) -> None:
    root = _release(tmp_path)
    _img(root / "COVID-CT-master" / "Images-processed" / "CT_NonCOVID" / "extra.png", 200)
    with caplog.at_level(logging.WARNING):
        m = get_recipe("covid-ct").manifest(root)
    assert dict(zip(m.ids, m.splits))["COVID-CT-master/Images-processed/CT_NonCOVID/extra.png"] == ""
    assert Counter(m.splits) == Counter({"train": 4, "val": 3, "test": 5, "": 1})
    assert "1 image(s) such as 'COVID-CT-master/Images-processed/CT_NonCOVID/extra.png' are in no Data-split list" in caplog.text


# ---- split files (any dataset) ----


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    for cls in ("cat", "dog"):
        for i in range(3):
            _img(root / cls / f"{i}.png", 10 * i + (cls == "dog"))
    return root


def _split_file(tmp_path: Path, text: str, name: str = "splits.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_split_file_replaces_the_splits_and_leaves_the_unlisted_unassigned(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    text = f"id,split\ncat/0.png,train\n./cat/1.png,Validation\ncat//2.png,test\n{root.resolve()}/dog/0.png,train\ndog/1.png,\n\n"
    m = resolve_dataset(str(root), split_file=_split_file(tmp_path, text))
    assert dict(zip(m.ids, m.splits)) == {"cat/0.png": "train", "cat/1.png": "val", "cat/2.png": "test",
                                          "dog/0.png": "train", "dog/1.png": "", "dog/2.png": ""}
    assert m.sha256 != from_image_folder(root).sha256  # the splits are in the digest
    assert resolve_dataset(from_image_folder(root), split_file=tmp_path / "splits.csv") == m  # a Manifest is accepted too


def test_a_split_file_overrides_an_official_split_and_ignores_other_columns(tmp_path: Path) -> None:
    root = tmp_path / "xray"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            _img(root / split / cls / "x.png", hash((split, cls)) % 200)
    path = _split_file(tmp_path, "label,id,split,note\na,train/a/x.png,test,moved\nb,test/b/x.png,train,\n")
    m = resolve_dataset(str(root), split_file=path)
    assert dict(zip(m.ids, m.splits)) == {"test/a/x.png": "", "test/b/x.png": "train", "train/a/x.png": "test", "train/b/x.png": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id,split\ncat/0.png,train\ncat/9.png,test\n", "row 3 names 'cat/9.png', which is not a sample of dataset 'pets'"),
        ("id,split\ncat/0.png,train\n./cat/0.png,test\n", "row 3 lists './cat/0.png' again, first on row 2"),
        ("id,split\ncat/0.png,holdout\n", "row 2 has split 'holdout'; use train, val, test"),
        ("path,split\ncat/0.png,train\n", "has the header path,split; its first line must be id,split"),
        ("", "has the header (none)"),
        ("id,split\n\n", "lists no samples"),
        ("id,split\ncat/0.png\n", "row 2 has no id or no split cell"),
    ],
)
def test_split_file_errors_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    root = _folder(tmp_path)
    with pytest.raises(ExtractError) as err:
        resolve_dataset(str(root), split_file=_split_file(tmp_path, text))
    assert expected in str(err.value) and "\n" not in str(err.value) and "splits.csv" in str(err.value)


def test_a_missing_or_unreadable_split_file(tmp_path: Path) -> None:
    m = from_image_folder(_folder(tmp_path))
    with pytest.raises(ExtractError, match="split file .*nothing.csv does not exist"):
        apply_split_file(m, tmp_path / "nothing.csv")
    with pytest.raises(ExtractError, match="is a folder"):
        apply_split_file(m, tmp_path)
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"id,split\ncat/\xe9.png,train\n")
    with pytest.raises(ExtractError, match="cannot be read .*UTF-8"):
        apply_split_file(m, bad)


def test_a_tsv_split_file(tmp_path: Path) -> None:
    m = resolve_dataset(str(_folder(tmp_path)), split_file=_split_file(tmp_path, "id\tsplit\ndog/2.png\ttest\n", "s.tsv"))
    assert m.splits[m.ids.index("dog/2.png")] == "test" and m.splits.count("") == 5


def test_extract_resume_refuses_a_changed_split_file(tiny_checkpoint, tmp_path: Path) -> None:
    from test_extract_runner import config

    from layerprobe.extract.runner import run_extract
    from layerprobe.store import open_store

    root = _folder(tmp_path)
    first = _split_file(tmp_path, "id,split\ncat/0.png,train\ndog/0.png,test\n", "a.csv")
    out = tmp_path / "run.zarr"
    model = tiny_checkpoint("llava")
    run_extract(config(model, root, out, split_file=first, limit=4))  # the limit applies after the split file
    store = open_store(out)
    assert list(store.splits) == ["train", "", "", "test"]
    run_extract(config(model, root, out, split_file=first, limit=4))  # the same file: resumes (nothing to do)
    second = _split_file(tmp_path, "id,split\ncat/0.png,test\ndog/0.png,train\n", "b.csv")
    with pytest.raises(StoreError, match="manifest"):
        run_extract(config(model, root, out, split_file=second, limit=4))


def test_the_cli_flags_reach_the_configs(tmp_path: Path) -> None:
    from layerprobe.cli.extract_cmd import extract
    from layerprobe.cli.finetune_cmd import finetune

    assert "--split-file" in CliRunner().invoke(extract, ["--help"]).output
    assert "--split-file" in CliRunner().invoke(finetune, ["--help"]).output
    root = _folder(tmp_path)
    res = CliRunner().invoke(extract, ["--model", "x", "--dataset", str(root), "--out", str(tmp_path / "o.zarr"),
                                       "--split-file", str(_split_file(tmp_path, "id,split\ncat/7.png,train\n"))])
    assert res.exit_code != 0 and "row 2 names 'cat/7.png'" in str(res.exception) + res.output


def test_finetune_and_vision_ce_use_the_split_file(tmp_path: Path) -> None:
    from layerprobe.finetune.config import FinetuneConfig
    from layerprobe.finetune.run import resolve_task
    from layerprobe.finetune.vision_ce_config import VisionCEConfig

    root = _folder(tmp_path)
    path = _split_file(tmp_path, "id,split\ncat/0.png,train\ndog/0.png,train\ncat/1.png,val\ndog/1.png,val\ncat/2.png,test\ndog/2.png,test\n")
    for cfg in (FinetuneConfig(model="x", dataset=str(root), out=tmp_path / "lora", split_file=path),
                VisionCEConfig(model="x", dataset=str(root), out=tmp_path / "ce.parquet", split_file=path)):
        task = resolve_task(cfg)
        assert task.split_source == "dataset"
        ids = np.asarray(task.manifest.ids)
        assert list(ids[task.train]) == ["cat/0.png", "dog/0.png"] and list(ids[task.test]) == ["cat/2.png", "dog/2.png"]


def test_a_study_dataset_entry_takes_a_split_file(tmp_path: Path) -> None:
    from test_study_plan import build_tiny_study, variant

    from layerprobe import vocab
    from layerprobe.study import load_study, plan_study

    study = build_tiny_study(tmp_path)
    manifest = from_image_folder(tmp_path / "tiny-study" / "data" / "synthetic-ultrasound")
    rows = "".join(f"{i},{('train', 'val', 'test')[n % 3]}\n" for n, i in enumerate(manifest.ids))
    _split_file(tmp_path / "tiny-study", "id,split\n" + rows)
    with_file = variant(study, "split.toml", out="split-out", replace={'name = "synthetic"\n': 'name = "synthetic"\nsplit_file = "tiny-study/splits.csv"\n'})
    loaded = load_study(with_file)
    assert loaded.datasets[0].split_file == tmp_path / "tiny-study" / "splits.csv"
    extract = next(s for s in plan_study(loaded).steps if s.kind == vocab.STEP_EXTRACT)
    assert extract.config().split_file == tmp_path / "tiny-study" / "splits.csv"
    plain = next(s for s in plan_study(load_study(variant(study, "plain.toml", out="split-out"))).steps if s.kind == vocab.STEP_EXTRACT)
    assert plain.out != extract.out  # other splits: another manifest digest, so other outputs
