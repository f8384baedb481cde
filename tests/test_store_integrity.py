"""Integrity on every read: a flipped bit in a committed chunk stops the read (and the sweep) with a
one-line error instead of handing a probe the wrong number."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from layerprobe.errors import StoreError
from layerprobe.store import open_store
from layerprobe.testing.stores import synthetic_run, write_synthetic_store

N, CS = 40, 16  # 3 blocks, the last one short (its chunk is padded)


@pytest.fixture(scope="module", params=["none", "zstd"])
def clean(request, tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp(request.param) / "run.zarr", synthetic_run(N), chunk_samples=CS, codec=request.param)


def _copy(clean, tmp_path):
    return shutil.copytree(clean, tmp_path / "run.zarr")


def _flip_bit(store, site: str, layer: int, block: int, byte_in_chunk: int) -> None:
    """Flip one bit of the stored bytes of chunk (layer, block) of ``site``."""
    a = store.plan.arrays[site] if site == "answer_logits" else store.plan.site(site)
    path = store.path / a.chunk_key(layer, block)
    offset = (a.chunk_offset(block) if a.sharded else 0) + byte_in_chunk
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def _one_line(fn) -> str:
    with pytest.raises(StoreError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and "commit record" in message and "verify" in message, message
    return message


def test_a_clean_store_reads_the_same_checked_or_not(clean) -> None:
    store = open_store(clean)
    for site in store.sites:
        assert np.array_equal(store.read_bits(site), store.read_bits(site, check=False))
    assert np.array_equal(store.answer_logits_numpy(), store.answer_logits_numpy(check=False))


@pytest.mark.parametrize("block", [0, 2])
def test_a_flipped_bit_in_a_site_chunk_stops_the_read(clean, tmp_path, block) -> None:
    path = _copy(clean, tmp_path)
    store = open_store(path)
    _flip_bit(store, "llm/final_token", 1, block, 7)
    message = _one_line(lambda: store.read_slab("llm/final_token", 1))
    assert f"samples [{block * CS}," in message
    _one_line(lambda: store.read_slabs("llm/final_token"))
    if store.codec == "none":  # unchecked, the damage is read as data: the check is what catches it
        assert not np.array_equal(store.read_bits("llm/final_token", check=False), open_store(clean).read_bits("llm/final_token"))
    # layers that were not touched still read
    store.read_slab("llm/final_token", 0)


def test_a_flipped_bit_in_the_padding_of_the_last_chunk_is_caught(clean, tmp_path) -> None:
    path = _copy(clean, tmp_path)
    store = open_store(path)
    if store.codec != "none":
        pytest.skip("padding is inside the compressed stream")
    a = store.plan.site("llm/image_mean")
    rows_in_last = N - 2 * CS
    _flip_bit(store, "llm/image_mean", 0, 2, rows_in_last * a.shape[2] * 2 + 3)
    _one_line(lambda: store.read_slab("llm/image_mean", 0))


def test_a_flipped_bit_in_the_answer_logits_stops_the_read(clean, tmp_path) -> None:
    path = _copy(clean, tmp_path)
    store = open_store(path)
    _flip_bit(store, "answer_logits", 0, 1, 5)
    _one_line(store.answer_logits)


def test_probe_stops_with_one_line_on_a_damaged_chunk(clean, tmp_path, capsys) -> None:
    from layerprobe.cli import main

    path = _copy(clean, tmp_path)
    _flip_bit(open_store(path), "vision/mean", 0, 0, 11)
    with pytest.raises(SystemExit) as exc:
        main(["probe", str(path), "--out", str(tmp_path / "r.parquet"), "--preset", "fast", "--kinds", "linear", "--no-progress"])
    assert exc.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "commit record" in lines[0], lines
    assert not (tmp_path / "r.parquet").exists()


# --- per-sample columns and class names: the recorded manifest digest is recomputed on open ---------


def _tamper_label(path) -> None:
    import zarr

    labels = zarr.open_array(path / "samples" / "label", mode="r+")
    labels[0] = (int(labels[0]) + 1) % 2


def _reorder_class_names(path) -> None:
    import json

    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["layerprobe"]["class_names"].reverse()
    (path / "zarr.json").write_text(json.dumps(doc))


def _rename_a_sample(path) -> None:
    import zarr

    ids = zarr.open_array(path / "samples" / "id", mode="r+")
    ids[1] = "someone-else.png"


@pytest.mark.parametrize("tamper", [_tamper_label, _reorder_class_names, _rename_a_sample])
def test_edited_samples_or_class_names_are_refused(clean, tmp_path, tamper, capsys) -> None:
    from layerprobe.cli import main
    from layerprobe.store import verify

    path = _copy(clean, tmp_path)
    tamper(path)
    with pytest.raises(StoreError) as info:
        open_store(path)
    assert "manifest digest" in str(info.value) and "\n" not in str(info.value)
    report = verify(path, progress=False)
    assert not report.ok and any("manifest digest" in p for p in report.problems)
    with pytest.raises(SystemExit) as exc:
        main(["probe", str(path), "--out", str(tmp_path / "r.parquet"), "--preset", "fast", "--kinds", "linear", "--no-progress"])
    assert exc.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "manifest digest" in lines[0]


def test_the_manifest_digest_is_the_documented_one(clean) -> None:
    from test_store_bytes_golden import reference_manifest_digest

    store = open_store(clean)
    from layerprobe.store import SampleInfo

    samples = SampleInfo(store.ids, store.labels, store.splits)
    assert store.meta.manifest_sha256 == reference_manifest_digest(samples, store.class_names) == samples.digest(store.class_names)


def test_a_writer_refuses_a_manifest_digest_that_is_not_of_its_samples(tmp_path) -> None:
    import dataclasses

    from layerprobe.store import StoreWriter

    run = synthetic_run(N)
    wrong = dataclasses.replace(run.meta, manifest_sha256="0" * 64)
    with pytest.raises(StoreError, match="manifest_sha256 is not the digest"):
        StoreWriter.open(tmp_path / "w.zarr", wrong, run.sites, run.samples, CS)
    assert not (tmp_path / "w.zarr").exists()
