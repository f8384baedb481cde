"""Flush and commit (store/flush.py): a complete block's chunks at their places, checksums, the record."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from layerprobe.errors import StoreError
from layerprobe.store import chunkio, open_store
from layerprobe.store.blocks import BlockAssembler
from layerprobe.store.commits import read_commit
from layerprobe.store.create import create_store
from layerprobe.store.flush import BlockFlusher
from layerprobe.store.layout import plan_store
from layerprobe.store.schema import new_header
from test_store_blocks import LAST, batch
from test_store_bytes_golden import CS, N, SITES, run_meta, sample_info


def make_store(tmp_path, codec: str):
    header = new_header(run_meta(), SITES, CS, N)
    plan = plan_store(header, codec)
    create_store(tmp_path / "s.zarr", header, plan, sample_info())
    return tmp_path / "s.zarr", plan


def complete_block(plan, b: int, copy: bool):
    start, stop = plan.block_range(b)
    data = batch(plan, start, stop)
    (block,) = BlockAssembler(plan).fill(data, start, stop, copy)
    return block, data


@pytest.mark.parametrize("codec", ["none", "zstd"])
@pytest.mark.parametrize("copy", [True, False])
def test_a_flushed_block_reads_back_and_its_record_holds_the_stored_checksums(tmp_path, codec, copy):
    path, plan = make_store(tmp_path, codec)
    flusher = BlockFlusher(path, plan, durable=False)
    flusher.open_shards()
    block, data = complete_block(plan, LAST, copy)
    record = flusher.flush(block)
    flusher.close()
    assert read_commit(path, plan, LAST) == record
    assert (record.block, record.start, record.stop) == (LAST, *plan.block_range(LAST))
    for a in plan.per_block_arrays():
        assert record.checksums[a.path] == tuple(chunkio.checksum([chunkio.read_chunk(path, a, layer, LAST)])
                                                 for layer in range(a.n_layers))
    store = open_store(path)
    assert sorted(store.commits) == [LAST]
    start, stop = plan.block_range(LAST)
    for spec in SITES:
        a = plan.site(spec.name)
        bits = np.stack([np.asarray(chunkio.decode_chunk(a, chunkio.read_chunk(path, a, layer, LAST)))[0] for layer in range(a.n_layers)])
        assert np.array_equal(bits[:, : stop - start], data[a.path]) and not bits[:, stop - start:].any()


def test_raw_chunks_go_to_pwritev_as_the_callers_own_buffers(tmp_path, monkeypatch):
    """The hot path: with copy=False, one gathered write per chunk, straight from the caller's arrays."""
    path, plan = make_store(tmp_path, "none")
    flusher = BlockFlusher(path, plan, durable=False)
    flusher.open_shards()
    block, data = complete_block(plan, 0, copy=False)
    calls = []
    real = chunkio.pwritev_all
    monkeypatch.setattr(chunkio, "pwritev_all", lambda fd, pieces, offset: (calls.append(list(pieces)), real(fd, pieces, offset)))
    flusher.flush(block)
    flusher.close()
    assert len(calls) == sum(a.n_layers for a in plan.per_block_arrays())
    site_paths = [plan.site(s.name).path for s in SITES]
    for path_ in site_paths:
        assert sum(any(np.shares_memory(p, data[path_]) for p in pieces) for pieces in calls) == plan.arrays[path_].n_layers


def test_a_failed_chunk_write_is_one_store_error_and_no_record(tmp_path, monkeypatch):
    path, plan = make_store(tmp_path, "none")
    flusher = BlockFlusher(path, plan, durable=False)
    flusher.open_shards()
    block, _ = complete_block(plan, 1, copy=True)

    def full(fd, pieces, offset):
        raise OSError(errno.ENOSPC, "No space left on device", str(path / "x"))

    monkeypatch.setattr(chunkio, "pwritev_all", full)
    with pytest.raises(StoreError) as info:
        flusher.flush(block)
    flusher.close()
    message = str(info.value)
    assert "\n" not in message and "block [8, 16)" in message and "No space left on device" in message and "rerun to resume" in message
    assert read_commit(path, plan, 1) is None


def test_an_unwritable_shard_fails_at_open_and_leaves_nothing_open(tmp_path):
    path, plan = make_store(tmp_path, "none")
    shard = path / plan.site(SITES[-1].name).chunk_key(1, 0)
    shard.unlink()
    shard.mkdir()  # cannot be opened for writing, even by root
    flusher = BlockFlusher(path, plan, durable=False)
    with pytest.raises(StoreError, match="cannot open .* for writing") as info:
        flusher.open_shards()
    assert "\n" not in str(info.value) and flusher._shard_fds == {}
