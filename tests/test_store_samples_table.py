"""The samples table (store/samples_table.py): samples.parquet from the writer's state, once, when complete."""

from __future__ import annotations

import polars as pl
import pytest

from layerprobe.store import open_store, samples_table, write_samples_parquet
from layerprobe.store.blocks import BlockAssembler
from layerprobe.store.flush import BlockFlusher
from layerprobe.store.samples_table import CommittedSamples
from test_store_blocks import batch
from test_store_flush import make_store


def commit(path, plan, blocks) -> list:
    """Flush ``blocks`` (as another process would) and return them, filled."""
    flusher, assembler, done = BlockFlusher(path, plan, durable=False), BlockAssembler(plan), []
    flusher.open_shards()
    for b in blocks:
        start, stop = plan.block_range(b)
        for block in assembler.fill(batch(plan, start, stop), start, stop, copy=True):
            flusher.flush(block)
            done.append(block)
    flusher.close()
    return done


def test_written_from_the_writers_state_only_when_every_block_is_committed(tmp_path, monkeypatch):
    path, plan = make_store(tmp_path, "none")
    table = CommittedSamples(open_store(path))
    monkeypatch.setattr(samples_table, "open_store", lambda path: pytest.fail("the store was read back"))
    committed: set[int] = set()
    for b in range(plan.n_blocks):
        assert not (path / "samples.parquet").exists()
        (block,) = commit(path, plan, [b])
        table.record(block)
        committed.add(block.index)
        table.write_parquet_if_complete(committed, durable=False)
    frame = pl.read_parquet(path / "samples.parquet")
    assert frame.equals(open_store(path).samples_frame())
    assert frame["sha256"].to_list()[3] == "" and frame["skipped"].to_list()[3] and frame["committed"].all()


def test_blocks_committed_by_another_process_are_read_back(tmp_path):
    path, plan = make_store(tmp_path, "none")
    table = CommittedSamples(open_store(path))
    commit(path, plan, [1, 3])  # "another shard process"
    mine = {0, 2}
    for block in commit(path, plan, sorted(mine)):
        table.record(block)
    table.write_parquet_if_complete(mine, durable=False)
    assert pl.read_parquet(path / "samples.parquet").equals(open_store(path).samples_frame())


def test_an_existing_table_is_left_alone_and_an_incomplete_store_gets_none(tmp_path):
    path, plan = make_store(tmp_path, "none")
    table = CommittedSamples(open_store(path))
    commit(path, plan, [0])
    table.write_parquet_if_complete({0}, durable=False)
    assert not (path / "samples.parquet").exists()
    target = write_samples_parquet(open_store(path), fsync=False)  # the explicit call writes whatever is committed
    before = target.read_bytes()
    assert pl.read_parquet(target)["committed"].sum() == plan.chunk_samples
    commit(path, plan, range(1, plan.n_blocks))
    table.write_parquet_if_complete(set(range(plan.n_blocks)), durable=False)
    assert target.read_bytes() == before
