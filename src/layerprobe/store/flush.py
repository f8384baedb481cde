"""Flush and commit: a complete block's chunks written whole at their fixed places, then its record.

Raw (``"none"``) chunks go into their pre-laid-out shard files with one gathered ``pwritev`` each,
straight from the block's pieces (no assembling copy), hashed just before (the hash pulls the
pieces into cache for the kernel's copy). Compressed (``"zstd"``) chunks are encoded and written as
their own files, and their stored bytes hashed. This thread and one helper thread share the chunks
(``chunkio.on_two_threads``: hashing and ``pwritev`` release the GIL). Only after every chunk is
written is the commit record created, atomically: a block without one is not committed, whatever
of its bytes reached the disk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from layerprobe.errors import StoreError
from layerprobe.store import chunkio
from layerprobe.store.blocks import Block
from layerprobe.store.commits import CommitRecord, now, write_commit
from layerprobe.store.layout import ArrayPlan, StorePlan


class BlockFlusher:
    """Writes and commits complete blocks of one store; owns the open shard files."""

    def __init__(self, path: Path, plan: StorePlan, durable: bool) -> None:
        self.path = path
        self.plan = plan
        self.durable = durable
        self._shard_fds: dict[tuple[str, int], int] = {}

    def open_shards(self) -> None:
        """Open every shard file the writer writes into, once (an unwritable store fails here, not mid-run)."""
        try:
            for a in self.plan.per_block_arrays():
                for layer in range(a.n_layers if a.sharded else 0):
                    self._shard_fds[a.path, layer] = os.open(self.path / a.chunk_key(layer, 0), os.O_WRONLY)
        except OSError as err:
            self.close()
            raise StoreError(f"cannot open {err.filename} for writing: {err.strerror}; check the store's permissions, then rerun") from err

    def close(self) -> None:
        for fd in self._shard_fds.values():
            os.close(fd)
        self._shard_fds.clear()

    def flush(self, block: Block) -> CommitRecord:
        """Every chunk of the complete ``block``, shared between this thread and a helper thread, then its commit."""
        try:
            arrays = self.plan.per_block_arrays()
            jobs = [(a, layer) for a in arrays for layer in range(a.n_layers)]
            digests = chunkio.on_two_threads(lambda job: self._write_chunk(block, *job), jobs)
            sum_of = {(a.path, layer): digest for (a, layer), digest in zip(jobs, digests)}
            sums = {a.path: tuple(sum_of[a.path, layer] for layer in range(a.n_layers)) for a in arrays}
            record = CommitRecord(block.index, block.start, block.stop, sums, now(), dict(block.skip_reasons))
            write_commit(self.path, record, self.plan.checksum, durable=self.durable)
        except OSError as err:
            raise StoreError(
                f"writing block [{block.start}, {block.stop}) of {self.path} failed: {err.strerror or err}"
                f" ({err.filename or 'no file'}); free space or fix the path, then rerun to resume (committed blocks are intact)"
            ) from err
        return record

    def _write_chunk(self, block: Block, a: ArrayPlan, layer: int) -> str:
        """Write one chunk of the block; return its checksum."""
        return self._write_raw(block, a, layer) if a.sharded else self._write_encoded(block, a, layer)

    def _write_raw(self, block: Block, a: ArrayPlan, layer: int) -> str:
        """Hash one raw chunk and write it into its shard straight from its pieces (no assembling copy)."""
        pieces = [rows[layer] for _, rows in block.pieces[a.path]] if a.sample_axis == 1 else [block.buffers[a.path]]
        digest = chunkio.checksum(pieces, self.plan.checksum)  # first: it also brings the pieces into cache for the write
        fd = self._shard_fds[a.path, layer]
        chunkio.pwritev_all(fd, pieces, a.chunk_offset(block.index))
        if self.durable:
            os.fsync(fd)
        return digest

    def _write_encoded(self, block: Block, a: ArrayPlan, layer: int) -> str:
        """Encode and write one chunk (a compressed site's, or a string column's) as its own file;
        return the checksum of its stored bytes."""
        path = self.path / a.chunk_key(layer, block.index)
        if a.sample_axis == 0:  # a per-sample column (the generated answers): the block's buffer is the chunk
            chunk = block.buffers[a.path]
        else:
            chunk = np.concatenate([rows[layer:layer + 1] for _, rows in block.pieces[a.path]], axis=1)
        stored = chunkio.encode_chunk(a, chunk)
        chunkio.write_chunk_bytes(path, stored)
        if self.durable:
            chunkio.fsync_path(path)
        return chunkio.checksum([stored], self.plan.checksum)
