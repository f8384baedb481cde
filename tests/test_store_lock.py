"""Issue 15 item 9: one writing process per store (per shard with ``--shard``), in two processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from layerprobe.errors import StoreError
from layerprobe.store import SCHEMA_VERSION, StoreWriter
from test_store_bytes_golden import CS, GOLDEN, SITES, _batches, _write, run_meta, sample_info, store_digest

_HOLDER = """
import sys
sys.path[:0] = {paths!r}
from layerprobe.store import SCHEMA_VERSION, StoreWriter
from test_store_bytes_golden import CS, SITES, run_meta, sample_info
with StoreWriter.open({store!r}, run_meta(), SITES, sample_info(), CS, lock=({k}, {n})):
    print("holding", flush=True)
    sys.stdin.read()
"""


class Holder:
    """Another process that holds a store's write lock until it is released or killed."""

    def __init__(self, store: Path, shard: tuple[int, int]) -> None:
        here = Path(__file__).parent
        code = _HOLDER.format(paths=[str(here.parent / "src"), str(here)], store=str(store), k=shard[0], n=shard[1])
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert self.proc.stdout.readline().strip() == "holding"

    def release(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)


def _open(path: Path, shard: tuple[int, int]) -> StoreWriter:
    return StoreWriter.open(path, run_meta(), SITES, sample_info(), CS, lock=shard)


def _refused(path: Path, shard: tuple[int, int], *needles: str) -> None:
    with pytest.raises(StoreError) as info:
        _open(path, shard)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_a_second_writer_of_a_store_is_refused_naming_the_first(tmp_path):
    path = tmp_path / "s.zarr"
    holder = Holder(path, (0, 1))
    try:
        pid = holder.proc.pid
        _refused(path, (0, 1), f"another process (pid {pid}) is writing this store", "wait for it or stop it")
        _refused(path, (1, 2), f"pid {pid}")  # a shard of a store written whole
    finally:
        holder.release()
    with _open(path, (0, 1)) as w:  # free again
        _write(w, _batches(w.pending_blocks(), 5), copy=True)
    assert not list(path.glob(".lock*"))  # lock files are removed on close: the store's bytes are as before
    assert store_digest(path) == GOLDEN[SCHEMA_VERSION, "none"]


def test_shards_lock_each_other_only_when_they_collide(tmp_path):
    path = tmp_path / "s.zarr"
    holder = Holder(path, (0, 2))
    try:
        pid = holder.proc.pid
        with _open(path, (1, 2)) as w:  # the other shard writes beside it
            _write(w, _batches(w.pending_blocks((1, 2)), 3), copy=True)
        _refused(path, (0, 2), f"another process (pid {pid}) is writing this store (", "shard 0/2); wait for it")
        _refused(path, (0, 1), f"other processes (pid {pid}) are writing shards")
    finally:
        holder.release()
    with _open(path, (0, 2)) as w:
        _write(w, _batches(w.pending_blocks((0, 2)), 3), copy=True)
    assert not list(path.glob(".lock*")) and store_digest(path) == GOLDEN[SCHEMA_VERSION, "none"]


def test_the_lock_of_a_killed_writer_is_free(tmp_path):
    path = tmp_path / "s.zarr"
    Holder(path, (0, 1)).kill()
    assert list(path.glob(".lock*"))  # left behind, held by nobody
    with _open(path, (0, 1)):
        pass
    assert not list(path.glob(".lock*"))


def test_extract_runs_on_one_store_do_not_race(tiny_checkpoint, tmp_path):
    from layerprobe.extract.runner import run_extract
    from layerprobe.store.lock import StoreLock
    from test_extract_runner import config, make_images

    images = make_images(tmp_path / "pets", n_per_class=2)
    out = tmp_path / "run.zarr"
    cfg = config(tiny_checkpoint("llava"), images, out, shard=(1, 2))
    run_extract(cfg)
    held = StoreLock(out, (0, 1))  # stands for another process writing the whole store
    try:
        with pytest.raises(StoreError, match=rf"another process \(pid {os.getpid()}\) is writing this store"):
            run_extract(cfg)
    finally:
        held.release()
    run_extract(cfg)
