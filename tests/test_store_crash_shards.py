"""kill -9 and shards, with real processes: a crash loses only uncommitted blocks, a half-written
chunk is never read as valid, resuming gives the uninterrupted bytes, and shard processes that start
together give the bytes of one writer."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from layerprobe.store import open_store, verify
from layerprobe.testing.stores import synthetic_batch, synthetic_run, write_synthetic_store

N, CS = 80, 16  # 5 blocks
SITES = {"vision/mean": (3, 64), "llm/final_token": (4, 96)}

# A writer process. Argument `mode`:
#   stall:K      in block K, write half of the third site chunk, write its file and offset to the marker
#                file, then sleep (to be killed)
#   slow         write everything, sleeping a little after each batch (killed at a random moment)
#   shard:K/N    wait for the go file, then write the blocks of shard K of N
CHILD = r"""
import os, sys, time
from pathlib import Path
from layerprobe.store import StoreWriter, chunkio
from layerprobe.testing.stores import synthetic_run, synthetic_batch
path, marker, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
run = synthetic_run(%(n)d, %(sites)r)
shard = (0, 1)
if mode.startswith("stall:"):
    stall_block = int(mode.split(":")[1])
    real_pwrite, real_block, state = chunkio.pwritev_all, StoreWriter._write_block, {"armed": False, "n": 0}
    def write_block(self, block):
        state["armed"] = block.index == stall_block
        return real_block(self, block)
    def pwritev_all(fd, pieces, offset):
        if state["armed"] and offset > 0:  # a site chunk inside its shard file
            state["n"] += 1
            if state["n"] == 3:
                whole = b"".join(memoryview(p).cast("B") for p in pieces)
                real_pwrite(fd, [whole[: len(whole) // 2]], offset)
                tmp = marker.with_suffix(".tmp")  # the parent polls for the marker: create it whole
                tmp.write_text(os.readlink(f"/proc/self/fd/{fd}") + "\n" + str(offset))
                os.replace(tmp, marker)
                time.sleep(600)
        real_pwrite(fd, pieces, offset)
    StoreWriter._write_block, chunkio.pwritev_all = write_block, pwritev_all
elif mode.startswith("shard:"):
    k, n = mode.split(":")[1].split("/")
    shard = (int(k), int(n))
    while not marker.exists():
        time.sleep(0.005)
with StoreWriter.open(path, run.meta, run.sites, run.samples, %(cs)d) as w:
    for start, stop in w.pending_blocks(shard=shard):
        for b0 in range(start, stop, 5):
            b = synthetic_batch(run, b0, min(b0 + 5, stop))
            w.write(b.start, b.acts, b.answer_logits, b.sha256, b.skipped)
            if mode == "slow":
                time.sleep(0.03)
""" % {"n": N, "sites": SITES, "cs": CS}


@pytest.fixture(scope="module")
def run():
    return synthetic_run(N, SITES)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, run):
    """The same store written in one go, in another batch size."""
    return write_synthetic_store(tmp_path_factory.mktemp("ref") / "run.zarr", run, batch_size=16, chunk_samples=CS)


def _spawn(tmp_path: Path, store: Path, marker: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen([sys.executable, str(script), str(store), str(marker), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early: {proc.communicate()[1][-2000:]}")
        assert time.monotonic() < deadline, "writer never reached the marker"
        time.sleep(0.01)


def _array_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "commits" not in p.parts and p.suffix != ".parquet" and p.parent != root}


def _assert_committed_rows_exact(store, run) -> None:
    expected = synthetic_batch(run, 0, N)
    for spec in run.sites:
        bits = store.read_bits(spec.name)
        np.testing.assert_array_equal(bits[:, store.committed], expected.acts[spec.name][:, store.committed])
        assert not bits[:, ~store.committed].any()
    np.testing.assert_array_equal(store.answer_logits_numpy()[store.committed], expected.answer_logits[store.committed])


def test_kill_during_a_chunk_write_then_resume(tmp_path, run, reference):
    store_path, marker = tmp_path / "run.zarr", tmp_path / "halfway"
    proc = _spawn(tmp_path, store_path, marker, "stall:2")
    _wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = open_store(store_path)
    assert sorted(store.commits) == [0, 1]  # blocks written before the kill are committed, block 2 is not
    _assert_committed_rows_exact(store, run)
    # The half-written chunk really is on disk, yet it reads as zeros and verify is content.
    shard_name, offset = marker.read_text().split("\n")
    shard = Path(shard_name)
    site, layer = str(shard.relative_to(store_path.resolve()).parent.parent.parent.parent)[len("sites/"):], int(shard.parent.parent.name)
    hidden = SITES[site][1]
    half = np.frombuffer(shard.read_bytes()[int(offset): int(offset) + CS * hidden], dtype=np.uint16).reshape(CS // 2, hidden)
    np.testing.assert_array_equal(half, synthetic_batch(run, 32, 40).acts[site][layer])
    assert not store.read_bits(site, layer)[0, 32:48].any()
    report = verify(store_path, progress=False)
    assert report.ok and report.n_blocks_committed == 2 and not report.complete

    write_synthetic_store(store_path, run, batch_size=3)  # resume: only blocks 2..4 are written
    assert open_store(store_path).complete and verify(store_path, progress=False).ok
    assert _array_files(store_path) == _array_files(reference)


def test_kill_at_a_random_moment_then_resume(tmp_path, run, reference):
    store_path = tmp_path / "run.zarr"
    proc = _spawn(tmp_path, store_path, tmp_path / "unused", "slow")
    _wait_for(store_path / "zarr.json", proc)
    time.sleep(random.Random(os.getpid()).uniform(0.02, 0.3))  # the writer needs about 0.5 s
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    store = open_store(store_path)
    assert not store.complete  # the writer needs at least 0.48 s of sleeps
    _assert_committed_rows_exact(store, run)
    assert verify(store_path, progress=False).ok
    write_synthetic_store(store_path, run, batch_size=7)
    assert _array_files(store_path) == _array_files(reference)


def test_two_shard_processes_starting_together(tmp_path, run, reference):
    """Both processes create the store at the same moment (one wins the rename) and split the blocks."""
    store_path, go = tmp_path / "run.zarr", tmp_path / "go"
    procs = [_spawn(tmp_path, store_path, go, f"shard:{k}/2") for k in range(2)]
    time.sleep(0.5)  # let both interpreters start and wait on the go file
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    store = open_store(store_path)
    assert store.complete and (store_path / "samples.parquet").exists()
    assert not [p for p in tmp_path.iterdir() if ".creating-" in p.name]  # the loser cleaned up
    assert _array_files(store_path) == _array_files(reference)
    assert verify(store_path, progress=False).ok
