"""Bad input: each case is one StoreError line that names the problem, and the store stays consistent."""

from __future__ import annotations

import dataclasses
import errno
import json
import os

import numpy as np
import pytest
import torch
import zarr

from layerprobe.errors import StoreError
from layerprobe.store import SCHEMA_VERSION, SampleInfo, SiteSpec, StoreWriter, chunkio, open_store, verify
from layerprobe.testing.stores import synthetic_batch, synthetic_run, write_synthetic_store

N, CS = 48, 16  # 3 blocks


def _one_line_error(fn, *match: str) -> str:
    with pytest.raises(StoreError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message and message
    for m in match:
        assert m in message, message
    return message


@pytest.fixture(scope="module")
def run():
    return synthetic_run(N)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, run):
    return write_synthetic_store(tmp_path_factory.mktemp("ref") / "run.zarr", run, chunk_samples=CS)


def _write(w, run, start, stop, **override):
    b = synthetic_batch(run, start, stop)
    args = {"acts": b.acts, "answer_logits": b.answer_logits, "sha256": b.sha256, "skipped": b.skipped, **override}
    w.write(start, **args)


def _same_arrays(a, b, run):
    sa, sb = open_store(a), open_store(b)
    np.testing.assert_array_equal(sa.committed, sb.committed)
    for spec in run.sites:
        np.testing.assert_array_equal(sa.read_bits(spec.name), sb.read_bits(spec.name))


def test_not_a_store(tmp_path):
    _one_line_error(lambda: open_store(tmp_path / "missing"), "is not a layerprobe store")
    (tmp_path / "file.txt").write_text("hello")
    _one_line_error(lambda: open_store(tmp_path / "file.txt"), "is not a layerprobe store")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    _one_line_error(lambda: open_store(tmp_path / "plain.zarr"), "is not a layerprobe store")
    _one_line_error(lambda: verify(tmp_path / "plain.zarr"), "is not a layerprobe store")


def test_writer_refuses_a_directory_that_is_not_a_store(tmp_path, run):
    target = tmp_path / "data"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    _one_line_error(lambda: StoreWriter.open(target, run.meta, run.sites, run.samples), "exists and is not a layerprobe store")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


def test_unknown_schema_version(tmp_path, run):
    path = write_synthetic_store(tmp_path / "run.zarr", run, chunk_samples=CS)
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["layerprobe"]["schema_version"] = SCHEMA_VERSION + 1
    (path / "zarr.json").write_text(json.dumps(doc))
    _one_line_error(lambda: open_store(path), f"schema version {SCHEMA_VERSION + 1}", "upgrade layerprobe")
    _one_line_error(lambda: StoreWriter.open(path, run.meta, run.sites, run.samples), f"schema version {SCHEMA_VERSION + 1}")
    doc["attributes"]["layerprobe"]["schema_version"] = 1  # schema 2 is still read (XXH3-64 checksums); 1 is not
    (path / "zarr.json").write_text(json.dumps(doc))
    _one_line_error(lambda: open_store(path), "older layerprobe", "extract it again")
    doc["attributes"]["layerprobe"]["schema_version"] = "one"
    (path / "zarr.json").write_text(json.dumps(doc))
    _one_line_error(lambda: open_store(path), "schema version 'one'")


def test_bad_batches_are_refused_and_the_writer_stays_usable(tmp_path, run, reference):
    path = tmp_path / "run.zarr"
    b = synthetic_batch(run, 0, 4)
    acts = b.acts
    cases = [
        ({"acts": {**acts, "llm/final_token": acts["llm/final_token"][:, :, :-1]}}, "shape (5, 4, 47)"),
        ({"acts": {**acts, "llm/final_token": acts["llm/final_token"][:-1]}}, "expected (layers, batch, hidden)"),
        ({"acts": {**acts, "vision/mean": torch.zeros(4, 4, 32)}}, "dtype torch.float32"),
        ({"acts": {**acts, "vision/mean": acts["vision/mean"].astype(np.int16)}}, "dtype int16"),
        ({"acts": {k: v for k, v in acts.items() if k != "connector/mean"}}, "misses site(s) ['connector/mean']"),
        ({"acts": {**acts, "llm/extra": acts["vision/mean"]}}, "unknown site(s) ['llm/extra']"),
        ({"answer_logits": b.answer_logits.astype(np.float64)}, "answer_logits must be float32"),
        ({"answer_logits": b.answer_logits[:, :1]}, "answer_logits must be float32 of shape (4, 2)"),
        ({"skipped": np.zeros(4, dtype=np.int64)}, "skipped must be a bool array"),
        ({"sha256": ["xyz"] * 4}, "is not a 64-digit hex SHA-256"),
    ]
    with StoreWriter.open(path, run.meta, run.sites, run.samples, CS) as w:
        for override, match in cases:
            _one_line_error(lambda: _write(w, run, 0, 4, **override), match)
        _one_line_error(lambda: _write(w, run, N - 2, N, sha256=[""] * 3), "batch [46, 46+3) is outside")
        for start in range(0, N, 4):  # nothing of the refused batches was kept
            _write(w, run, start, start + 4)
    _same_arrays(path, reference, run)
    assert verify(path, progress=False).ok


def test_rewriting_samples_is_refused(tmp_path, run):
    path = tmp_path / "run.zarr"
    with StoreWriter.open(path, run.meta, run.sites, run.samples, CS) as w:
        _write(w, run, 0, 16)
        _write(w, run, 16, 20)
        w.close()  # block 0 is now committed; block 1 is partial and dropped
    before = (path / "sites/llm/final_token/c/0/0/0").read_bytes()
    with StoreWriter.open(path, run.meta, run.sites, run.samples) as w:
        _one_line_error(lambda: _write(w, run, 10, 18), "already committed", "pending_blocks()")
        _write(w, run, 16, 20)
        _one_line_error(lambda: _write(w, run, 18, 22), "overlap samples already written")
    assert (path / "sites/llm/final_token/c/0/0/0").read_bytes() == before
    assert sorted(open_store(path).commits) == [0]


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda r: {"meta": dataclasses.replace(r.meta, model_hash="f" * 64)}, "model_hash"),
        (lambda r: {"meta": dataclasses.replace(r.meta, prompt_template="Another\nprompt")}, "prompt_template"),
        (lambda r: {"meta": dataclasses.replace(r.meta, adapter="lora-v2")}, "adapter"),
        (lambda r: {"sites": r.sites[:-1]}, "sites"),
        (lambda r: {"sites": r.sites[:-1] + (SiteSpec("llm/final_token", r.sites[-1].layer_names, 64),)}, "sites"),
        (lambda r: {"chunk_samples": 8}, "chunk_samples"),
        (lambda r: {"codec": "zstd"}, "codec"),
        (lambda r: {"samples": SampleInfo(r.samples.ids, np.roll(r.samples.labels, 1), r.samples.splits)}, "samples.labels[0]"),
        (lambda r: {"samples": SampleInfo(r.samples.ids[:-1], r.samples.labels[:-1], r.samples.splits[:-1])}, "n_samples"),
    ],
)
def test_resume_with_different_metadata_names_the_field(tmp_path, run, change, field):
    path = write_synthetic_store(tmp_path / "run.zarr", run, chunk_samples=CS)
    before = (path / "zarr.json").read_bytes()
    args = {"meta": run.meta, "sites": run.sites, "samples": run.samples, **change(run)}
    message = _one_line_error(lambda: StoreWriter.open(path, **args), f"different {field} (")
    assert "new output path" in message
    assert (path / "zarr.json").read_bytes() == before and verify(path, progress=False).ok


def test_resume_accepts_new_extra_and_library_versions(tmp_path, run):
    path = write_synthetic_store(tmp_path / "run.zarr", run, chunk_samples=CS)
    meta = dataclasses.replace(run.meta, extra={"note": "second session"})
    with StoreWriter.open(path, meta, run.sites, run.samples) as w:
        assert w.pending_blocks() == []


def _fail_in_block(monkeypatch, block_index: int, target: str, err: OSError) -> None:
    """Make chunk writes (or putting the commit record in place) fail from block `block_index` on."""
    real_block = StoreWriter._write_block
    state = {"armed": False}

    def write_block(self, block):
        state["armed"] = block.index >= block_index
        return real_block(self, block)

    def fail(real):
        def wrapped(*args, **kwargs):
            if state["armed"]:
                raise err
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(StoreWriter, "_write_block", write_block)
    if target == "chunk":
        monkeypatch.setattr(chunkio, "pwritev_all", fail(chunkio.pwritev_all))
    else:  # the commit record's temp file is written, then renaming it into place fails (a full directory block)
        monkeypatch.setattr(os, "replace", fail(os.replace))


@pytest.mark.parametrize("target", ["chunk", "commit"])
def test_out_of_space_then_resume(tmp_path, run, reference, monkeypatch, target):
    path = tmp_path / "run.zarr"
    full = OSError(errno.ENOSPC, "No space left on device", str(path / "somewhere"))
    _fail_in_block(monkeypatch, 2, target, full)
    with pytest.raises(StoreError) as info:
        with StoreWriter.open(path, run.meta, run.sites, run.samples, CS) as w:
            for start in range(0, N, 8):
                _write(w, run, start, start + 8)
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message and "block [32, 48)" in message
    assert "rerun to resume" in message
    _one_line_error(lambda: _write(w, run, 0, 8), "closed")
    monkeypatch.undo()

    store = open_store(path)
    assert sorted(store.commits) == [0, 1] and not [p for p in (path / "commits").iterdir() if p.name.startswith(".")]
    assert verify(path, progress=False).ok
    write_synthetic_store(path, run)
    _same_arrays(path, reference, run)
    assert verify(path, progress=False).ok


def test_damage_is_found(tmp_path, run):
    path = write_synthetic_store(tmp_path / "run.zarr", run, chunk_samples=CS)
    shard = path / "sites/llm/image_mean/c/1/0/0"
    data = bytearray(shard.read_bytes())
    data[CS * 48 * 2 + 10] ^= 0xFF  # one byte of block 1's chunk of layer 1
    shard.write_bytes(bytes(data))
    (path / "commits" / "32-48.json").write_text("{not json")
    report = verify(path, progress=False)
    assert not report.ok and report.n_blocks_committed == 2
    assert any("commits/32-48.json cannot be read" in p for p in report.problems)
    assert any("sites/llm/image_mean/c/1/0/0 (block 1) does not match the checksum" in p for p in report.problems)
    assert sorted(open_store(path).commits) == [0, 1]  # the damaged record makes block 2 pending again
    with open(shard, "r+b") as f:
        f.truncate(100)
    _one_line_error(lambda: open_store(path), "is damaged", "c/1/0/0 has 100 bytes")


def test_bad_metadata_arguments(run):
    _one_line_error(lambda: SiteSpec("LLM final", ("0",), 4), "site name 'LLM final' is not valid")
    _one_line_error(lambda: SiteSpec("llm/x", ("0", "0"), 4), "repeats a layer name")
    _one_line_error(lambda: SiteSpec("llm/x", ("0",), 0), "hidden=0")
    _one_line_error(lambda: dataclasses.replace(run.meta, candidates=("a",)), "one candidate answer and one token id per class")
    _one_line_error(lambda: SampleInfo(("a", "a"), np.array([0, 1]), ("", "")), "not unique")
    _one_line_error(lambda: SampleInfo(("a", "b"), np.array([0, 1]), ("train", "dev")), "unknown split value(s) ['dev']")
    bad = SampleInfo(run.samples.ids, np.full(N, 7), run.samples.splits)
    _one_line_error(lambda: StoreWriter.open("/nonexistent/never", run.meta, run.sites, bad), "labels range over [7, 7]")
    _one_line_error(lambda: StoreWriter.open("/nonexistent/never", run.meta, run.sites, run.samples, 0), "chunk_samples=0")


def test_a_damaged_commit_record_is_rewritten_on_resume(tmp_path, run):
    path = write_synthetic_store(tmp_path / "run.zarr", run, chunk_samples=CS)
    (path / "commits" / "16-32.json").write_text("{not json")
    (path / "commits" / "016-032.json").write_text("{}")  # not a name the writer makes: reported, never trusted
    with StoreWriter.open(path, run.meta, run.sites, run.samples) as w:
        assert w.pending_blocks() == [(16, 32)]
        b = synthetic_batch(run, 16, 32)
        w.write(b.start, b.acts, b.answer_logits, b.sha256, b.skipped)
    store = open_store(path)
    assert store.complete and any("016-032.json" in p for p in store.commit_problems)
    (path / "commits" / "016-032.json").unlink()
    assert verify(path, progress=False).ok

