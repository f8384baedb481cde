"""Generated answers in the store: ``RunMeta.answer_tokens`` and the ``samples/answer_text`` column.

A store extracted with ``answer_tokens > 0`` holds one generated answer per sample, written with its
block and covered by the block's commit record; a store without generation has neither the key nor
the array (tests/test_store_bytes_golden.py keeps its bytes), and one written before the field
existed opens with ``answer_tokens`` 0.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from layerprobe.errors import StoreError
from layerprobe.store import StoreWriter, open_store
from layerprobe.store.layout import ANSWER_TEXT
from layerprobe.store.schema import RunMeta, header_to_attrs, identity_fields
from layerprobe.store.verify import verify
from test_store_bytes_golden import CS, N, SITES, SKIPPED, _batches, batch_rows, run_meta, sample_info, store_digest

TOKENS = 8


def answers(start: int, stop: int) -> list[str]:
    """Each sample's answer depends on its index only; some are empty, some non-ASCII."""
    words = ("cat", "The answer is: dog", "", "owl.", "chat ü 猫", "Normal or benign")
    return ["" if i in SKIPPED else f"{words[i % len(words)]}" for i in range(start, stop)]


def gen_meta() -> RunMeta:
    return dataclasses.replace(run_meta(), answer_tokens=TOKENS)


def write(path: Path, spans: list[tuple[int, int]], meta: RunMeta | None = None, shard: tuple[int, int] | None = None) -> None:
    with StoreWriter.open(path, meta or gen_meta(), SITES, sample_info(), CS) as w:
        todo = spans if shard is None else _batches(w.pending_blocks(shard=shard), 3)
        for start, stop in todo:
            acts, logits, sha, skipped = batch_rows(start, stop)
            w.write(start, acts, logits, sha, skipped, answer_text=answers(start, stop))


def test_round_trip_and_header(tmp_path: Path) -> None:
    write(tmp_path / "s", _batches([(0, N)], 7))
    store = open_store(tmp_path / "s")
    assert store.meta.answer_tokens == TOKENS and store.has_answer_text
    assert store.answer_text() == tuple(answers(0, N))
    attrs = json.loads((tmp_path / "s" / "zarr.json").read_bytes())["attributes"]["layerprobe"]
    assert attrs["answer_tokens"] == TOKENS
    record = json.loads(next((tmp_path / "s" / "commits").iterdir()).read_bytes())
    assert ANSWER_TEXT in record["chunks"]
    problems = verify(tmp_path / "s", progress=False).problems
    assert all("NaN/Inf" in p for p in problems)  # the golden rows are random bf16 bits; nothing else is wrong


def test_zarr_reads_the_answers(tmp_path: Path) -> None:
    import zarr

    write(tmp_path / "s", _batches([(0, N)], 7))
    assert list(zarr.open_group(tmp_path / "s", mode="r")[ANSWER_TEXT][:]) == answers(0, N)


def test_uncommitted_rows_read_empty_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "s"
    write(path, [(0, 8), (16, 20)])  # block 2 stays partly filled: dropped
    partial = open_store(path).answer_text()
    assert partial[:8] == tuple(answers(0, 8)) and set(partial[8:]) == {""}
    with StoreWriter.open(path, gen_meta(), SITES, sample_info()) as w:
        for start, stop in _batches(w.pending_blocks(), 5):
            acts, logits, sha, skipped = batch_rows(start, stop)
            w.write(start, acts, logits, sha, skipped, answer_text=answers(start, stop))
    assert open_store(path).answer_text() == tuple(answers(0, N))


def test_two_shards_write_the_bytes_of_one_writer(tmp_path: Path) -> None:
    write(tmp_path / "one", _batches([(0, N)], 7))
    for k in (1, 0):
        write(tmp_path / "two", [], shard=(k, 2))
    assert store_digest(tmp_path / "one") == store_digest(tmp_path / "two")


def test_a_flipped_byte_in_an_answer_chunk_is_caught(tmp_path: Path) -> None:
    write(tmp_path / "s", _batches([(0, N)], 7))
    chunk = tmp_path / "s" / ANSWER_TEXT / "c" / "1"
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0x01
    chunk.write_bytes(bytes(data))
    store = open_store(tmp_path / "s")
    with pytest.raises(StoreError, match="does not match the checksum"):
        store.answer_text()
    assert store.answer_text(check=False)[:8] == tuple(answers(0, 8))
    report = verify(tmp_path / "s", progress=False)
    assert not report.ok and any(ANSWER_TEXT in p for p in report.problems)


def test_answer_text_required_and_refused(tmp_path: Path) -> None:
    acts, logits, sha, skipped = batch_rows(0, 8)
    with StoreWriter.open(tmp_path / "gen", gen_meta(), SITES, sample_info(), CS) as w:
        with pytest.raises(StoreError, match="pass answer_text"):
            w.write(0, acts, logits, sha, skipped)
        with pytest.raises(StoreError, match="list of 8 strings"):
            w.write(0, acts, logits, sha, skipped, answer_text=["a"] * 7)
    with StoreWriter.open(tmp_path / "plain", run_meta(), SITES, sample_info(), CS) as w:
        with pytest.raises(StoreError, match="answer_tokens 0"):
            w.write(0, acts, logits, sha, skipped, answer_text=["a"] * 8)
    plain = open_store(tmp_path / "plain")
    assert not plain.has_answer_text
    with pytest.raises(StoreError, match="--answer-tokens"):
        plain.answer_text()


def test_no_generation_writes_no_key_and_no_array(tmp_path: Path) -> None:
    with StoreWriter.open(tmp_path / "s", run_meta(), SITES, sample_info(), CS):
        pass
    attrs = json.loads((tmp_path / "s" / "zarr.json").read_bytes())["attributes"]["layerprobe"]
    assert "answer_tokens" not in attrs and not (tmp_path / "s" / ANSWER_TEXT).exists()
    assert "answer_tokens" in identity_fields()


def test_an_old_store_without_the_key_opens_with_zero(tmp_path: Path) -> None:
    """A store written before the field existed has no key: it reads as 0 and resumes as 0."""
    with StoreWriter.open(tmp_path / "s", run_meta(), SITES, sample_info(), CS):
        pass
    doc = json.loads((tmp_path / "s" / "zarr.json").read_bytes())
    doc["attributes"]["layerprobe"].pop("answer_tokens", None)
    (tmp_path / "s" / "zarr.json").write_text(json.dumps(doc))
    assert open_store(tmp_path / "s").meta.answer_tokens == 0
    StoreWriter.open(tmp_path / "s", run_meta(), SITES, sample_info()).close()


def test_resume_with_other_answer_tokens_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "gen", [(0, 8)])
    with pytest.raises(StoreError, match="answer_tokens"):
        StoreWriter.open(tmp_path / "gen", run_meta(), SITES, sample_info())
    with StoreWriter.open(tmp_path / "plain", run_meta(), SITES, sample_info(), CS):
        pass
    with pytest.raises(StoreError, match="answer_tokens"):
        StoreWriter.open(tmp_path / "plain", gen_meta(), SITES, sample_info())


def test_answer_tokens_must_be_a_count() -> None:
    for bad in (-1, True, 1.5):
        with pytest.raises(StoreError, match="answer_tokens"):
            dataclasses.replace(run_meta(), answer_tokens=bad)
    assert "answer_tokens" not in header_to_attrs(open_header_stub())


def open_header_stub():
    from layerprobe.store.schema import new_header

    return new_header(run_meta(), SITES, CS, N)

