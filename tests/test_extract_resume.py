"""Issue 15: a local model resumes by its content hash (10); skipped samples keep their reasons and
are extracted again once their image decodes (14)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from layerprobe.errors import StoreError
from layerprobe.extract.runner import run_extract
from layerprobe.store import open_store, verify
from layerprobe.store.summary import summarize
from test_extract_runner import _table_with_bad_images, assert_same_store, config, make_images


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("resume-images") / "pets", n_per_class=4)


def test_a_local_model_resumes_by_its_hash_whatever_its_path(tiny_checkpoint, images, tmp_path, monkeypatch):
    folder = shutil.copytree(tiny_checkpoint("llava"), tmp_path / "models" / "llava")
    reference = run_extract(config(folder, images, tmp_path / "ref.zarr"))
    out = tmp_path / "run.zarr"
    monkeypatch.chdir(tmp_path)
    run_extract(config("models/llava", images, out, shard=(0, 2)))  # a relative path
    assert open_store(out).meta.model_id == str(folder)  # recorded as the absolute path, for information
    run_extract(config(str(folder), images, out, shard=(1, 2), limit=None))  # the absolute path: accepted
    moved = shutil.move(str(folder), tmp_path / "elsewhere")
    run_extract(config(moved, images, out))  # the folder moved: accepted (nothing left to do)
    assert_same_store(out, reference)
    other = tiny_checkpoint("llava", seed=1)
    with pytest.raises(StoreError, match="different model_hash"):
        run_extract(config(other, images, out))


def test_the_same_weights_under_another_config_are_another_run(tiny_checkpoint, images, tmp_path):
    folder = shutil.copytree(tiny_checkpoint("llava"), tmp_path / "models" / "llava")
    out = tmp_path / "run.zarr"
    run_extract(config(folder, images, out, shard=(0, 2)))
    recorded = open_store(out).meta.model_config_hash
    assert recorded is not None and len(recorded) == 64
    doc = json.loads((folder / "config.json").read_text())
    doc["vision_feature_layer"] = -1  # same weights; the projector now reads another vision layer
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="different model_config_hash .*config, processor or tokenizer files") as err:
        run_extract(config(folder, images, out, shard=(1, 2)))  # would have mixed the two configs' activations
    assert "\n" not in str(err.value)


def test_a_store_from_before_the_config_hash_still_resumes():
    from layerprobe.store.fields import recorded_or_equal

    assert recorded_or_equal(None, "ab" * 32) and recorded_or_equal("ab" * 32, "ab" * 32)
    assert not recorded_or_equal("ab" * 32, "cd" * 32) and not recorded_or_equal("ab" * 32, None)


def test_a_hub_id_is_still_compared_as_an_id():
    from layerprobe.store.schema import same_source

    assert same_source("org/a", "org/a") and not same_source("org/a", "org/b")
    assert same_source("ckpt", "/abs/ckpt") and same_source("/a/x", "/b/y")  # local folders: the hash decides
    assert not same_source(None, "/abs/lora") and not same_source("/abs/lora", None)


def _fix(table: Path, *names: str) -> None:
    for name in names:  # a different picture per name: identical bytes would be a duplicate image (refused)
        Image.fromarray(np.full((33, 47, 3), 40 + sum(map(ord, name)) % 200, dtype=np.uint8)).save(table.parent / name, format="PNG")


def test_skip_reasons_are_listed_and_fixed_images_are_extracted_again(tiny_checkpoint, images, tmp_path, capsys):
    from layerprobe.cli import main

    llava = tiny_checkpoint("llava")
    table = _table_with_bad_images(images, tmp_path)
    out = run_extract(config(llava, table, tmp_path / "skip.zarr", batch_size=2, skip_bad=True))
    store = open_store(out)
    assert store.skip_reasons.keys() == {2, 3}
    assert "corrupt.png" in store.skip_reasons[2] and "missing.png" in store.skip_reasons[3]
    listed = dict(summarize(store).skipped_samples)
    assert set(listed) == {"corrupt.png", "missing.png"} and dict(verify(out).skipped_samples) == listed
    main(["info", str(out)])
    text = capsys.readouterr().out
    assert "skipped    corrupt.png: " in text and "skipped    missing.png: " in text
    main(["verify", str(out), "--no-progress"])  # skips are no problem: exit 0
    text = capsys.readouterr().out
    assert "skipped: corrupt.png: " in text and text.strip().endswith("ok")
    # one image fixed, one still missing: a run without --skip-bad leaves the block alone
    _fix(table, "corrupt.png")
    run_extract(config(llava, table, out, batch_size=2))
    assert open_store(out).skipped.tolist()[2:4] == [True, True]
    # with --skip-bad the block is extracted again: the fixed image is in, the missing one still skipped
    run_extract(config(llava, table, out, batch_size=2, skip_bad=True))
    again = open_store(out)
    assert again.complete and again.skipped.tolist()[2:4] == [False, True] and set(again.skip_reasons) == {3}
    fresh = run_extract(config(llava, table, tmp_path / "fresh.zarr", batch_size=2, skip_bad=True))
    assert_same_store(out, fresh)
    assert (out / "samples.parquet").exists()
    assert pl.read_parquet(out / "samples.parquet")["skipped"].to_list() == pl.read_parquet(fresh / "samples.parquet")["skipped"].to_list()
    # all fixed: even a run without --skip-bad extracts the block again
    _fix(table, "missing.png")
    run_extract(config(llava, table, out, batch_size=2))
    assert not open_store(out).skipped.any() and verify(out).ok


def test_stores_without_skip_reasons_keep_their_commit_records(tiny_checkpoint, images, tmp_path):
    out = run_extract(config(tiny_checkpoint("llava"), images, tmp_path / "clean.zarr"))
    for record in (out / "commits").glob("*.json"):
        assert "skipped" not in json.loads(record.read_text())
