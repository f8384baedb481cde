"""The write fast path: pieces gathered straight from the caller's batches give the same bytes as copies."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from layerprobe.errors import StoreError
from layerprobe.store import StoreWriter, chunkio, open_store, verify
from layerprobe.store.create import create_store
from layerprobe.store.layout import plan_store
from layerprobe.store.schema import SCHEMA_VERSION, new_header
from layerprobe.testing.stores import synthetic_batch, synthetic_run, write_synthetic_store

N, CS = 50, 16  # 4 blocks, the last one short (2 samples)


@pytest.fixture(scope="module")
def run():
    return synthetic_run(N, n_classes=3)


def _write(path: Path, run, batch_size: int, copy: bool, order=None) -> list:
    """Write the run in batches (in the given order of batch starts); return the batches written."""
    batches = [synthetic_batch(run, s, min(s + batch_size, N)) for s in range(0, N, batch_size)]
    with StoreWriter.open(path, run.meta, run.sites, run.samples, CS) as w:
        for i in order or range(len(batches)):
            b = batches[i]
            w.write(b.start, b.acts, b.answer_logits, b.sha256, b.skipped, copy=copy)
    return batches


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and "commits" not in p.parts and p.name not in ("zarr.json", "samples.parquet")}


def test_no_copy_gives_the_same_bytes_as_copying(tmp_path, run):
    _write(tmp_path / "copy.zarr", run, 7, copy=True)
    _write(tmp_path / "nocopy.zarr", run, 7, copy=False)
    # batches arriving out of order inside a block are put back in row order
    _write(tmp_path / "shuffled.zarr", run, 4, copy=False, order=[1, 0, 3, 2, 5, 4, 12, 7, 6, 9, 8, 11, 10])
    reference = _files(tmp_path / "copy.zarr")
    assert reference and _files(tmp_path / "nocopy.zarr") == reference == _files(tmp_path / "shuffled.zarr")
    for name in ("copy", "nocopy", "shuffled"):
        assert verify(tmp_path / f"{name}.zarr", progress=False).ok


def test_copy_protects_against_the_caller_reusing_its_arrays(tmp_path, run):
    expected = synthetic_batch(run, 0, N).acts
    with StoreWriter.open(tmp_path / "run.zarr", run.meta, run.sites, run.samples, CS) as w:
        for s in range(0, N, 8):
            b = synthetic_batch(run, s, min(s + 8, N))
            w.write(b.start, b.acts, b.answer_logits, b.sha256, b.skipped)  # copy=True, the default
            for x in b.acts.values():
                x[...] = 0  # the caller reuses its buffer before the block is written
    store = open_store(tmp_path / "run.zarr")
    for name, want in expected.items():
        np.testing.assert_array_equal(store.read_bits(name), want)


def test_pwritev_all_finishes_short_writes_and_long_iovec_lists(tmp_path, monkeypatch):
    pieces = [np.full(1000 + i, i % 251, dtype=np.uint8) for i in range(1500)]  # more buffers than IOV_MAX
    real = os.pwritev
    calls = []

    def short(fd, buffers, offset):  # the kernel may write less than asked: here at most 3,001 bytes
        calls.append(len(buffers))
        return real(fd, [memoryview(b"".join(bytes(b) for b in buffers))[:3001]], offset)

    monkeypatch.setattr(os, "pwritev", short)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        chunkio.pwritev_all(fd, pieces, 10)
    finally:
        os.close(fd)
    assert max(calls) <= chunkio._IOV_MAX and len(calls) > 1
    assert (tmp_path / "f").read_bytes() == bytes(10) + b"".join(p.tobytes() for p in pieces)


def test_checksum_is_crc32_of_the_stored_bytes(tmp_path, run):
    path = tmp_path / "run.zarr"
    _write(path, run, 7, copy=False)
    store = open_store(path)
    a = store.plan.site("llm/final_token")
    record = store.commits[1]
    data = chunkio.read_chunk_bytes(path / a.chunk_key(2, 1), a.chunk_offset(1), a.chunk_nbytes)
    assert store.plan.checksum == "crc32" and json.loads((path / "commits/16-32.json").read_text())["checksum"] == "crc32"
    assert record.checksums[a.path][2] == f"{zlib.crc32(data):08x}"
    assert chunkio.checksum([data[:5], data[5:]]) == f"{zlib.crc32(data):08x}"


def test_full_disk_at_creation_is_one_line_and_leaves_nothing(tmp_path, run, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(StoreError) as info:
        StoreWriter.open(tmp_path / "run.zarr", run.meta, run.sites, run.samples, CS)
    assert "No space left on device" in str(info.value) and "\n" not in str(info.value)
    assert not any(tmp_path.iterdir())


def test_on_two_threads_runs_every_job_once_in_order_and_stops_at_the_first_error():
    """The two-thread helper behind block writes and site reads: results in job order, each job run
    once, both threads used; an error is raised and the other thread takes no further job."""
    calls: list[tuple[int, int]] = []

    def square(x):
        calls.append((x, threading.get_ident()))
        time.sleep(0.001)  # releases the GIL, like the real jobs
        return x * x

    assert chunkio.on_two_threads(square, list(range(40))) == [x * x for x in range(40)]
    assert sorted(x for x, _ in calls) == list(range(40))
    assert len({thread for _, thread in calls}) == 2

    calls.clear()

    def fails_at_3(x):
        calls.append((x, threading.get_ident()))
        if x == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        time.sleep(0.001)
        return x

    with pytest.raises(OSError, match="No space"):
        chunkio.on_two_threads(fails_at_3, list(range(100)))
    assert len(calls) < 10


def test_a_block_larger_than_the_run_is_capped_at_its_sample_count(tmp_path, run):
    # Uncapped, zarr would store the one edge chunk padded to its full size (16 images under 32: 2x the bytes).
    path = write_synthetic_store(tmp_path / "s.zarr", run, chunk_samples=4 * N)
    store = open_store(path)
    assert store.chunk_samples == N and store.complete
    np.testing.assert_array_equal(store.read_bits(run.sites[0].name), synthetic_batch(run, 0, N).acts[run.sites[0].name])
    with StoreWriter.open(path, run.meta, run.sites, run.samples, 4 * N) as writer:  # the same flag resumes it
        assert writer.pending_blocks() == []


def test_a_store_written_uncapped_before_resumes_under_the_flag_that_made_it(tmp_path, run):
    header = new_header(run.meta, run.sites, 4 * N, N, SCHEMA_VERSION)
    create_store(tmp_path / "old.zarr", header, plan_store(header, "none"), run.samples)
    path = write_synthetic_store(tmp_path / "old.zarr", run, chunk_samples=4 * N)
    store = open_store(path)
    assert store.chunk_samples == 4 * N and store.complete
    with pytest.raises(StoreError, match="chunk_samples"):
        StoreWriter.open(path, run.meta, run.sites, run.samples, N)
