"""The batched runner on a tiny LLaVA: complete stores, resume, shards, limits, skips, refusals, errors."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from layerprobe.errors import ExtractError, LayerprobeError, StoreError
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.data.datasets import from_image_folder, from_table
from layerprobe.extract.runner import batch_ranges, run_extract
from layerprobe.store import open_store, verify

CLASSES = ("cat", "dog")


def make_images(root: Path, n_per_class: int = 5) -> Path:
    """An ImageFolder tree of seeded RGB images of varied sizes (10 images by default)."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            h, w = 30 + 7 * i, 64 - 5 * i
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name / f"{name}{i}.png")
    return root


def store_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a store, read with plain zarr (the bytes a reader sees)."""
    import zarr

    with warnings.catch_warnings():  # commits/ and samples.parquet are not zarr nodes, by design
        warnings.simplefilter("ignore", UserWarning)
        return {name: np.asarray(array[...]) for name, array in _all_arrays(zarr.open_group(str(path), mode="r"))}


def _all_arrays(group):
    yield from group.arrays()
    for gname, sub in group.groups():
        for name, array in _all_arrays(sub):
            yield f"{gname}/{name}", array


def assert_same_store(a: Path, b: Path) -> None:
    arrays_a, arrays_b = store_arrays(a), store_arrays(b)
    assert sorted(arrays_a) == sorted(arrays_b)
    for name in arrays_a:
        assert arrays_a[name].dtype == arrays_b[name].dtype, name
        assert np.array_equal(arrays_a[name], arrays_b[name]), name
    assert open_store(a).committed.all() and open_store(b).committed.all()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("runner-images") / "pets")


@pytest.fixture(scope="module")
def llava(tiny_checkpoint) -> Path:
    return tiny_checkpoint("llava")


def config(model: Path, dataset, out: Path, **kw) -> ExtractConfig:
    """The runner settings of these tests: blocks of 4 samples, batches of 3 (so some are short)."""
    base = dict(model=str(model), dataset=dataset if not isinstance(dataset, Path) else str(dataset), out=out,
                batch_size=3, chunk_samples=4, num_workers=0, progress=False, prompt="What animal is this?", dtype="bfloat16")
    return ExtractConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def reference(llava, images, tmp_path_factory) -> Path:
    """One uninterrupted run that the resume and shard tests must reproduce byte for byte."""
    return run_extract(config(llava, images, tmp_path_factory.mktemp("ref") / "ref.zarr"))


def test_batches_stay_inside_blocks() -> None:
    assert batch_ranges([(0, 4), (8, 10)], 3) == [(0, 3), (3, 4), (8, 10)]
    assert batch_ranges([], 3) == []


def test_run_writes_a_complete_verified_store(reference, images) -> None:
    manifest = from_image_folder(images)
    store = open_store(reference)
    report = verify(reference)
    assert report.ok, report.problems
    assert store.committed.all() and not store.skipped.any()
    assert tuple(store.ids) == manifest.ids and list(store.labels) == list(manifest.labels)
    assert list(store.sha256) == [hashlib.sha256(p.read_bytes()).hexdigest() for p in manifest.paths]
    meta = store.meta
    assert meta.dataset_name == "pets" and meta.manifest_sha256 == manifest.sha256
    assert tuple(meta.candidates) == CLASSES and tuple(meta.class_names) == CLASSES
    assert "What animal is this?" in meta.prompt_template and meta.model_type == "llava"
    assert {"vision/mean", "connector/mean", "llm/image_mean", "llm/final_token"} <= set(store.sites)
    for site in store.sites:
        slab = store.read_slab(site, -1)
        assert slab.shape[0] == 10 and torch.isfinite(slab).all() and (slab.abs().sum(1) > 0).all(), site
    assert store.answer_logits().shape == (10, 2)


def test_rows_belong_to_their_samples(llava, images, tmp_path) -> None:
    """fp32 run with loader workers: each stored row equals that image's own forward (bf16 storage)."""
    from layerprobe.extract.data.images import read_image
    from layerprobe.extract.model.loading import load_model
    from layerprobe.extract.model.prompt import candidate_token_ids, encode_batch, render_prompt

    store = open_store(run_extract(config(llava, images, tmp_path / "fp32.zarr", dtype="float32", num_workers=2)))
    loaded = load_model(llava, dtype="float32")
    prompt = render_prompt(loaded.processor, "What animal is this?")
    ids = list(candidate_token_ids(loaded.processor, CLASSES))
    final_lnd = store.read_slabs("llm/final_token", list(range(len(store.sites["llm/final_token"].layer_names))))
    logits_nc = store.answer_logits()
    for i, path in enumerate(from_image_folder(images).paths):
        with torch.inference_mode():
            out = loaded.model(**encode_batch(loaded.processor, [read_image(path).image], prompt), output_hidden_states=True)
        expected_ld = torch.stack(out.hidden_states)[:, 0, -1].float()
        torch.testing.assert_close(final_lnd[:, i], expected_ld, rtol=4e-3, atol=1e-5)  # bf16 rounding of the store
        torch.testing.assert_close(logits_nc[i], out.logits[0, -1, ids].float(), rtol=1e-5, atol=1e-5)


def test_rerun_is_a_no_op_and_limit_keeps_the_first_samples(llava, images, reference, tmp_path) -> None:
    before = store_arrays(reference)
    run_extract(config(llava, images, reference))
    after = store_arrays(reference)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    limited = open_store(run_extract(config(llava, images, tmp_path / "lim.zarr", limit=5)))
    assert limited.n_samples == 5 and limited.committed.all()
    assert tuple(limited.ids) == from_image_folder(images).ids[:5]


def test_shards_give_the_same_store(llava, images, reference, tmp_path) -> None:
    out = tmp_path / "sharded.zarr"
    run_extract(config(llava, images, out, shard=(1, 2)))
    committed = open_store(out).committed
    assert committed.tolist() == [False] * 4 + [True] * 4 + [False] * 2  # blocks 1 only
    run_extract(config(llava, images, out, shard=(0, 2), num_workers=1))
    assert_same_store(out, reference)


def _peft_adapter(model_path: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model

    from layerprobe.extract.model.loading import load_model

    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(load_model(model_path).model, lora).save_pretrained(out)
    return out


def test_rerun_with_a_different_run_is_refused(llava, images, reference, tiny_checkpoint, tmp_path) -> None:
    before = store_arrays(reference)
    other_images = make_images(tmp_path / "pets", n_per_class=4)
    changes = {
        "prompt": {"prompt": "Which pet?"},
        "model": {"model": str(tiny_checkpoint("llava", seed=1))},
        "adapter": {"adapter": str(_peft_adapter(llava, tmp_path / "lora"))},
        "manifest_sha256": {"dataset": str(other_images)},
        "candidates": {"candidates": {"cat": "kitty", "dog": "doggy"}},
    }
    for field, change in changes.items():
        with pytest.raises(LayerprobeError) as info:
            run_extract(replace(config(llava, images, reference), **change))
        message = str(info.value)
        assert "\n" not in message and field.split("_")[0] in message, (field, message)
    after = store_arrays(reference)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert verify(reference).ok


def test_a_rerun_of_another_run_is_refused_before_loading_the_model(llava, images, reference, tiny_checkpoint, tmp_path, monkeypatch) -> None:
    import layerprobe.extract.model.loading as loading

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the run was refused")

    monkeypatch.setattr(loading, "load_model", no_loading)
    changes = {
        # a local model is identified by its content hash (issue 15 item 10), hashed before the load
        "model_hash": {"model": str(tiny_checkpoint("llava", seed=1))},
        "adapter": {"adapter": str(tmp_path / "some-lora")},
        "manifest_sha256": {"dataset": str(make_images(tmp_path / "pets", n_per_class=4))},
        "candidates": {"candidates": {"cat": "kitty", "dog": "doggy"}},
        "compute_dtype": {"dtype": "float32"},
    }
    for field, change in changes.items():
        with pytest.raises(LayerprobeError) as info:
            run_extract(replace(config(llava, images, reference), **change))
        assert f"different {field} (" in str(info.value), (field, str(info.value))


def _table_with_bad_images(images: Path, tmp_path: Path) -> Path:
    """Rows: good, good, corrupt, missing (one all-bad batch of 2), then good ones."""
    good = sorted(images.rglob("*.png"))
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    paths = [str(good[0]), str(good[1]), "corrupt.png", "missing.png", *map(str, good[2:6])]
    labels = ["cat", "cat", "dog", "dog", "cat", "cat", "dog", "dog"]
    table = tmp_path / "list.csv"
    pl.DataFrame({"path": paths, "label": labels}).write_csv(table)
    return table


def test_bad_image_fails_naming_the_file_or_is_recorded_with_skip_bad(llava, images, tmp_path) -> None:
    table = _table_with_bad_images(images, tmp_path)
    with pytest.raises(ExtractError, match="corrupt.png") as info:
        run_extract(config(llava, table, tmp_path / "strict.zarr", batch_size=2, num_workers=2))  # errors cross processes as data
    assert "--skip-bad" in str(info.value) and "\n" not in str(info.value)
    out = run_extract(config(llava, table, tmp_path / "skip.zarr", batch_size=2, skip_bad=True))
    store = open_store(out)
    assert store.committed.all()
    assert store.skipped.tolist() == [False, False, True, True, False, False, False, False]
    assert list(store.valid) == [not s for s in store.skipped]
    assert store.sha256[2] == store.sha256[3] == ""  # no usable bytes: nothing to describe
    assert store.sha256[0] == hashlib.sha256(Path(pl.read_csv(table)["path"][0]).read_bytes()).hexdigest()
    report = verify(out)
    assert report.ok and report.n_skipped == 2
    rows = store.read_slab("llm/final_token", -1)
    assert (rows[2:4] == 0).all() and (rows[[0, 1, 4, 5, 6, 7]].abs().sum(1) > 0).all()


def test_writer_error_stops_the_run_without_a_wrong_commit(llava, images, reference, tmp_path, monkeypatch) -> None:
    from layerprobe.store import StoreWriter, chunkio

    out = tmp_path / "diskfull.zarr"
    real_pwritev, real_write = chunkio.pwritev_all, StoreWriter.write
    calls: list[tuple[int, bool]] = []  # (start, raised) of every StoreWriter.write the runner made

    def disk_full_after_first_commit(fd, pieces, offset):
        if list((out / "commits").glob("*.json")):
            raise OSError(28, "No space left on device")
        return real_pwritev(fd, pieces, offset)

    def spy_write(self, start, *args, **kw):
        try:
            real_write(self, start, *args, **kw)
        except BaseException:
            calls.append((start, True))
            raise
        calls.append((start, False))

    monkeypatch.setattr(chunkio, "pwritev_all", disk_full_after_first_commit)
    monkeypatch.setattr(StoreWriter, "write", spy_write)
    with pytest.raises(StoreError, match="No space left on device") as info:
        run_extract(config(llava, images, out))
    monkeypatch.undo()
    assert "\n" not in str(info.value)
    failed = [i for i, (_, raised) in enumerate(calls) if raised]
    assert failed == [len(calls) - 1]  # the write that completed the block raised, and nothing was written after it
    assert open_store(out).committed.tolist() == [True] * 4 + [False] * 6
    run_extract(config(llava, images, out))
    assert_same_store(out, reference)


def test_config_checks(tmp_path) -> None:
    good = dict(model="m", dataset="d", out=tmp_path / "o.zarr")
    for bad, match in (({"shard": (2, 2)}, "shard 2/2"), ({"batch_size": 0}, "batch_size"), ({"dtype": "int8"}, "dtype"),
                       ({"candidates": ("a", "a")}, "distinct"), ({"limit": 0}, "limit"), ({"prompt": " "}, "prompt")):
        with pytest.raises(ExtractError, match=match):
            ExtractConfig(**good, **bad)
    assert ExtractConfig(**good).out == tmp_path / "o.zarr"


def test_candidates_must_match_classes(llava, images, tmp_path) -> None:
    with pytest.raises(ExtractError, match="candidate 'a' names none of the classes"):
        run_extract(config(llava, images, tmp_path / "c.zarr", candidates=("a", "b", "c")))
    with pytest.raises(ExtractError, match="names class .bird., which the dataset does not have"):
        run_extract(config(llava, images, tmp_path / "c.zarr", candidates={"cat": "kitty", "bird": "tweety"}))


def test_candidates_are_paired_with_their_classes_by_name(llava, images, tmp_path, monkeypatch) -> None:
    # a natural order (dog first) against the folder order (cat, dog): matched, not zipped
    out = run_extract(config(llava, images, tmp_path / "n.zarr", candidates=("Dog", "Cat")))
    meta = open_store(out).meta
    assert meta.class_names == ("cat", "dog") and meta.candidates == ("Cat", "Dog")
    out = run_extract(config(llava, images, tmp_path / "m.zarr", candidates={"dog": "Yes", "cat": "No"}))
    assert open_store(out).meta.candidates == ("No", "Yes")

    from layerprobe.extract.model import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model must not load for a wrong mapping"))
    with pytest.raises(ExtractError, match="is given for class 'cat' but names class 'dog'"):
        run_extract(config(llava, images, tmp_path / "w.zarr", candidates={"cat": "Dog", "dog": "Cat"}))


def test_loaded_model_must_match_the_config(llava, images, tmp_path) -> None:
    from layerprobe.extract.model.loading import load_model

    loaded = load_model(llava, dtype="float32")
    with pytest.raises(ExtractError, match="compute_dtype"):
        run_extract(config(llava, images, tmp_path / "l.zarr"), loaded=loaded)
    out = run_extract(replace(config(llava, images, tmp_path / "l.zarr"), dtype="float32"), loaded=loaded)
    assert open_store(out).meta.compute_dtype == "float32"


def test_config_parses_device_and_dtype_once_and_the_runner_passes_values(llava, images, tmp_path, monkeypatch) -> None:
    import layerprobe.extract.model.loading as loading

    cfg = ExtractConfig(model=str(llava), dataset=str(images), out=tmp_path / "v.zarr", device="cpu", dtype="float32")
    assert cfg.device == torch.device("cpu") and cfg.torch_dtype == torch.float32 and cfg.dtype == "float32"
    assert replace(cfg, dtype="bfloat16").torch_dtype == torch.bfloat16  # a replaced config is parsed again
    assert replace(cfg).device is cfg.device
    with pytest.raises(ExtractError, match="not a torch device"):
        ExtractConfig(model="m", dataset="d", out=tmp_path / "x.zarr", device="tpu:0")
    seen = {}

    def record(model, **kwargs):
        seen.update(kwargs)
        raise ExtractError("stop here")

    monkeypatch.setattr(loading, "load_model", record)
    with pytest.raises(ExtractError, match="stop here"):
        run_extract(cfg)
    assert seen["dtype"] is torch.float32 and seen["device"] == torch.device("cpu") and isinstance(seen["device"], torch.device)
