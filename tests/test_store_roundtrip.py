"""Store round trips: what is written is what is read, bit for bit, however it was batched."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import polars as pl
import pytest
import torch

from layerprobe.cli import commands
from layerprobe.store import StoreWriter, open_store, verify
from layerprobe.testing.stores import synthetic_batch, synthetic_run, write_synthetic_store

N, CS = 50, 16  # 4 blocks, the last one short (2 samples)


@pytest.fixture(scope="module")
def run():
    return synthetic_run(N, n_classes=3)


@pytest.fixture(scope="module")
def expected(run):
    return synthetic_batch(run, 0, N)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, run):
    return write_synthetic_store(tmp_path_factory.mktemp("rt") / "run.zarr", run, batch_size=7, chunk_samples=CS)


def test_every_array_round_trips_exactly(store_path, run, expected):
    store = open_store(store_path)
    assert store.complete and store.committed.all() and store.valid.all()
    for spec in run.sites:
        bits = store.read_bits(spec.name)
        assert bits.dtype == np.uint16 and bits.shape == (spec.n_layers, N, spec.hidden)
        np.testing.assert_array_equal(bits, expected.acts[spec.name])
    np.testing.assert_array_equal(store.answer_logits_numpy(), expected.answer_logits)
    assert store.answer_logits().dtype == torch.float32
    assert store.ids == run.samples.ids and store.splits == run.samples.splits
    np.testing.assert_array_equal(store.labels, run.samples.labels)
    assert store.sha256 == tuple(expected.sha256)
    assert store.class_names == run.meta.class_names and store.meta == run.meta
    assert store.sites == {s.name: s for s in run.sites}


def test_read_slab_dtypes_layers_and_names(store_path, expected):
    store = open_store(store_path)
    want = expected.acts["llm/final_token"]
    bf = store.read_slab("llm/final_token", -1, dtype=torch.bfloat16)
    assert bf.dtype == torch.bfloat16 and bf.shape == (N, 48)
    np.testing.assert_array_equal(bf.view(torch.uint16).numpy(), want[-1])
    fp = store.read_slab("llm/final_token", "embed")  # by layer name; float32 by default
    np.testing.assert_array_equal(fp.numpy(), want[0].view(ml_dtypes.bfloat16).astype(np.float32))
    slabs = store.read_slabs("llm/final_token", "0,-1", dtype="bfloat16")
    np.testing.assert_array_equal(slabs.view(torch.uint16).numpy(), want[[0, 4]])
    assert store.read_slabs("vision/mean").shape == (4, N, 32)
    with pytest.raises(Exception, match="out of range"):
        store.read_slab("llm/final_token", 5)
    with pytest.raises(Exception, match="not in this store"):
        store.read_slab("llm/nope", 0)


def test_batch_size_does_not_change_bytes(tmp_path, run, store_path):
    """Batches of 50, 1 and out of order within blocks all give the same stored arrays."""
    other = tmp_path / "other.zarr"
    with StoreWriter.open(other, run.meta, run.sites, run.samples, CS) as w:
        order = [(s, min(s + 5, N)) for s in range(0, N, 5)]
        for start, stop in order[::-1]:  # last block first, each block filled back to front
            b = synthetic_batch(run, start, stop)
            w.write(start, b.acts, b.answer_logits, b.sha256, b.skipped)
    a, b = open_store(store_path), open_store(other)
    for spec in run.sites:
        np.testing.assert_array_equal(a.read_bits(spec.name), b.read_bits(spec.name))
    for rel in ("sites/llm/final_token/c/3/0/0", "answer_logits/c/0/0", "samples/sha256/c/0/0", "samples/skipped/c/0"):
        assert (store_path / rel).read_bytes() == (other / rel).read_bytes()


def test_bf16_bits_exact_for_every_pattern(tmp_path):
    """All 65,536 bf16 bit patterns (NaN payloads, -0, Inf, subnormals) survive, from torch and from numpy."""
    run = synthetic_run(256, {"llm/final_token": (2, 256)})
    pattern = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).reshape(256, 256)
    with StoreWriter.open(tmp_path / "bits.zarr", run.meta, run.sites, run.samples, 64) as w:
        for start in range(0, 256, 64):
            torch_in = torch.from_numpy(pattern[start:start + 64].copy()).view(torch.bfloat16)
            acts = {"llm/final_token": torch.stack([torch_in, torch_in.flip(1)])}
            b = synthetic_batch(run, start, start + 64)
            w.write(start, acts, b.answer_logits, b.sha256, b.skipped)
    store = open_store(tmp_path / "bits.zarr")
    np.testing.assert_array_equal(store.read_bits("llm/final_token", 0), pattern[None])
    np.testing.assert_array_equal(store.read_slab("llm/final_token", 1, dtype=torch.bfloat16).view(torch.uint16).numpy(), pattern[:, ::-1])
    report = verify(tmp_path / "bits.zarr", progress=False)
    nan = np.sum((pattern & 0x7FFF) > 0x7F80)
    assert {(c.layer, c.n_nan, c.n_inf) for c in report.nonfinite if c.site == "llm/final_token"} == {(0, nan, 2), (1, nan, 2)}
    assert not report.ok and "NaN/Inf" in report.problems[0]


def test_masks_skipped_and_partial_store(tmp_path, run):
    path = tmp_path / "partial.zarr"
    with StoreWriter.open(path, run.meta, run.sites, run.samples, CS) as w:
        for start, stop in [(16, 32), (48, 50), (0, 10)]:  # blocks 1 and 3 complete; block 0 only partly
            b = synthetic_batch(run, start, stop)
            skipped = np.arange(start, stop) % 4 == 0
            w.write(start, b.acts, b.answer_logits, b.sha256, skipped)
    store = open_store(path)
    committed = np.zeros(N, bool)
    committed[16:32] = committed[48:50] = True
    np.testing.assert_array_equal(store.committed, committed)
    np.testing.assert_array_equal(store.skipped, committed & (np.arange(N) % 4 == 0))
    np.testing.assert_array_equal(store.valid, committed & (np.arange(N) % 4 != 0))
    bits = store.read_bits("vision/mean")
    assert not bits[:, ~committed].any()  # rows not committed read as zeros (block 0 was partly written)
    np.testing.assert_array_equal(bits[:, 16:32], synthetic_batch(run, 16, 32).acts["vision/mean"])
    assert store.sha256[0] == "" and store.sha256[16] != ""
    assert not store.complete and not (path / "samples.parquet").exists()
    report = verify(path, progress=False)
    assert report.ok and not report.complete and report.n_committed == 18 and report.n_skipped == 5
    with StoreWriter.open(path, run.meta, run.sites, run.samples) as w:
        assert w.pending_blocks() == [(0, 16), (32, 48)]
        assert w.pending_blocks(shard=(0, 2)) == [(0, 16), (32, 48)] and w.pending_blocks(shard=(1, 2)) == []
        assert w.pending_blocks(shard=(2, 3)) == [(32, 48)]


def test_samples_parquet_of_a_resumed_store_equals_the_store(tmp_path, run):
    """The writer that commits the last block writes samples.parquet from its own state, rows
    committed before it opened included; that must equal what the store holds, unknown digests too."""
    path = tmp_path / "resumed.zarr"

    def write(ranges):
        with StoreWriter.open(path, run.meta, run.sites, run.samples, CS) as w:
            for start, stop in ranges:
                b = synthetic_batch(run, start, stop)
                unknown = np.arange(start, stop) % 5 == 0  # e.g. unreadable images: no digest, skipped
                sha = ["" if u else h for u, h in zip(unknown, b.sha256)]
                w.write(start, b.acts, b.answer_logits, sha, unknown)

    write([(16, 32)])
    assert not (path / "samples.parquet").exists()
    write([(0, 16), (32, 48), (48, N)])
    store = open_store(path)
    assert store.complete and store.sha256[0] == "" and store.sha256[1] == synthetic_batch(run, 1, 2).sha256[0]
    assert pl.read_parquet(path / "samples.parquet").equals(store.samples_frame())
    assert store.samples_frame()["sha256"].to_list().count("") == len(range(0, N, 5))


def test_samples_parquet_when_complete(store_path, run, expected):
    frame = pl.read_parquet(store_path / "samples.parquet")
    assert frame.columns == ["index", "id", "label", "class_name", "split", "sha256", "skipped", "committed"]
    assert frame["id"].to_list() == list(run.samples.ids)
    assert frame["class_name"].to_list() == [run.meta.class_names[i] for i in run.samples.labels]
    assert frame["sha256"].to_list() == expected.sha256 and frame["committed"].all()


def test_cli_info_and_verify(store_path, tmp_path, capsys):
    from layerprobe.cli import main

    def cli(*args):
        try:
            main(list(args))
        except SystemExit as err:
            return err.code, capsys.readouterr()
        return 0, capsys.readouterr()

    code, out = cli("info", str(store_path), "--json")
    info = json.loads(out.out)
    assert code == 0 and info["complete"] and info["n_committed"] == N and info["codec"] == "none"
    assert [s[0] for s in info["sites"]] == ["vision/mean", "connector/mean", "llm/image_mean", "llm/final_token"]
    assert sum(sum(s["n_valid_per_class"]) for s in info["splits"]) == N
    code, out = cli("info", str(store_path))
    assert code == 0 and "llm/final_token" in out.out and "complete" in out.out
    code, out = cli("verify", str(store_path), "--no-progress")
    assert code == 0 and out.out.strip().endswith("ok")
    code, out = cli("verify", str(tmp_path))
    assert code == 1 and out.err.startswith("error: ") and out.err.count("\n") == 1
    names = {c.name for c in commands.all_commands()}
    assert {"info", "verify"} <= names


def test_durable_and_zstd_writers_store_the_same_values(tmp_path, run, expected):
    for kwargs in ({"durable": True}, {"codec": "zstd"}):
        path = tmp_path / f"{'-'.join(kwargs)}.zarr"
        with StoreWriter.open(path, run.meta, run.sites, run.samples, CS, **kwargs) as w:
            for start in range(0, N, 10):
                b = synthetic_batch(run, start, min(start + 10, N))
                w.write(start, b.acts, b.answer_logits, b.sha256, b.skipped)
        store = open_store(path)
        assert store.complete and store.codec == kwargs.get("codec", "none")
        for spec in run.sites:
            np.testing.assert_array_equal(store.read_bits(spec.name), expected.acts[spec.name])
        assert verify(path, progress=False).ok


def test_info_of_an_incomplete_store(tmp_path, run):
    from layerprobe.store.summary import summarize

    path = tmp_path / "run.zarr"
    with StoreWriter.open(path, run.meta, run.sites, run.samples, CS) as w:
        b = synthetic_batch(run, 16, 32)
        w.write(16, b.acts, b.answer_logits, b.sha256, b.skipped)
    summary = summarize(open_store(path))
    assert not summary.complete and summary.n_committed == 16 and summary.n_blocks_committed == 1
    assert sum(sum(s.n_per_class) for s in summary.splits) == N
    assert sum(sum(s.n_valid_per_class) for s in summary.splits) == 16
    text = summary.to_text()
    assert "INCOMPLETE: 3 of 4 blocks pending" in text and "samples.parquet absent" in text
