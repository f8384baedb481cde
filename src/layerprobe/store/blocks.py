"""Block assembly: the pieces of each block's chunks, collected from batches of any size.

One block = ``chunk_samples`` samples = one chunk of every per-block array. A batch may cover part
of a block, a whole one or several; the assembler keeps the blocks being filled and hands each one
over as soon as its last row arrives, before it fills the next, so a batch that spans several
blocks never holds more than one block's buffers at a time.

Choices:
- Per-sample arrays (answer logits, digests, skip flags) are copied into a reused whole-block
  buffer: they are small, and a buffer makes their chunk one contiguous piece.
- Site rows are copied into a reused block buffer too when writes copy (the default), so each
  layer's chunk is one contiguous piece. With ``copy=False`` the assembler keeps views of the
  caller's arrays instead and a chunk is the list of those views in row order, which ``pwritev``
  gathers without an assembling copy; the caller must not change them afterwards.
- The edge block is padded with the fill value, as Zarr does, by one shared block of fill rows
  (a broadcast view, not one per layer).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layerprobe.store.layout import StorePlan

SKIP_REASONS = "skip_reasons"
"""Key of a batch's per-sample skip reasons (a list of str, "" where none); not an array of the store."""


@dataclass
class Block:
    """One block being filled (mutable: rows arrive batch by batch)."""

    index: int
    """Block number: the block holds samples ``[index * chunk_samples, ...)``."""
    start: int
    """First sample of the block."""
    stop: int
    """One past its last sample (short for the edge block)."""
    pieces: dict[str, list[tuple[int, np.ndarray]]]
    """site array path -> ``(first row in the block, uint16 (layers, rows, hidden))`` pieces."""
    buffers: dict[str, np.ndarray]
    """The reusable whole-block arrays: one per per-sample array and, when writes copy, one per site."""
    filled: np.ndarray
    """bool ``(stop - start,)``: rows written so far."""
    skip_reasons: dict[int, str] = field(default_factory=dict)
    """sample index -> why it was skipped, for the skipped samples whose writer gave a reason."""

    @property
    def n_rows(self) -> int:
        return self.stop - self.start


class BlockAssembler:
    """The blocks of one writer being filled, and the buffers of finished ones for reuse."""

    def __init__(self, plan: StorePlan) -> None:
        self.plan = plan
        self.open: dict[int, Block] = {}
        self._spare: list[dict[str, np.ndarray]] = []

    def overlaps(self, block: int, start: int, stop: int) -> bool:
        """True when rows of ``[start, stop)`` inside an open ``block`` were filled already."""
        open_block = self.open.get(block)
        if open_block is None:
            return False
        lo, hi = max(start, open_block.start) - open_block.start, min(stop, open_block.stop) - open_block.start
        return bool(open_block.filled[lo:hi].any())

    def fill(self, batch: Mapping[str, Any], start: int, stop: int, copy: bool) -> Iterator[Block]:
        """Add samples ``[start, stop)`` (``batch`` keyed by array path); yield each block they complete.

        A yielded block is complete (pieces in row order, edge padded) and no longer open; give it
        back with :meth:`release` once its chunks are written.
        """
        for b in self.plan.blocks_between(start, stop):
            block = self.open.get(b) or self._new_block(b, copy)
            lo, hi = max(start, block.start), min(stop, block.stop)
            rows, src_rows = slice(lo - block.start, hi - block.start), slice(lo - start, hi - start)
            for a in self.plan.per_block_arrays():
                src = batch[a.path]
                if a.sample_axis == 0:
                    block.buffers[a.path][rows] = src[src_rows]
                elif a.path in block.buffers:  # copying: the block buffer holds the rows
                    block.buffers[a.path][:, rows] = src[:, src_rows]
                else:
                    block.pieces[a.path].append((rows.start, src[:, src_rows].copy() if copy else src[:, src_rows]))
            reasons = batch.get(SKIP_REASONS)
            if reasons:
                block.skip_reasons.update({i: reasons[i - start] for i in range(lo, hi) if reasons[i - start]})
            block.filled[rows] = True
            if block.filled.all():
                del self.open[b]
                self._complete(block)
                yield block

    def release(self, block: Block) -> None:
        """Let go of the caller's arrays and keep the block's buffers for the next block."""
        block.pieces.clear()
        self._spare.append(block.buffers)

    def clear(self) -> None:
        """Drop the blocks still partly filled (they stay pending) and the spare buffers."""
        self.open.clear()
        self._spare.clear()

    def _new_block(self, b: int, copy: bool) -> Block:
        start, stop = self.plan.block_range(b)
        spare = self._spare.pop() if self._spare else {}
        buffers = {}
        for a in self.plan.per_block_arrays():
            if a.sample_axis == 0 or copy:
                shape = a.chunk_shape if a.sample_axis == 0 else (a.shape[0],) + a.chunk_shape[1:]
                buffers[a.path] = spare.get(a.path)
                if buffers[a.path] is None:
                    buffers[a.path] = np.empty(shape, dtype=object if a.dtype == "str" else a.dtype)
        pieces: dict[str, list[tuple[int, np.ndarray]]] = {a.path: [] for a in self.plan.per_block_arrays() if a.sample_axis == 1}
        block = Block(b, start, stop, pieces, buffers, np.zeros(stop - start, dtype=bool))
        self.open[b] = block
        return block

    def _complete(self, block: Block) -> None:
        """Order each site's pieces by row and pad the edge block with the fill value, as Zarr does."""
        n_rows = block.n_rows
        for a in self.plan.per_block_arrays():
            if a.sample_axis == 0:
                block.buffers[a.path][n_rows:] = a.fill
                continue
            if a.path in block.buffers:  # copied: each layer's chunk is one contiguous piece of the buffer
                block.buffers[a.path][:, n_rows:] = a.fill
                block.pieces[a.path] = [(0, block.buffers[a.path])]
                continue
            block.pieces[a.path].sort(key=lambda piece: piece[0])
            if n_rows < a.chunk_shape[1]:  # one row block of fill values, the same for every layer
                pad = np.full((a.chunk_shape[1] - n_rows, a.chunk_shape[2]), a.fill, dtype=a.dtype)
                block.pieces[a.path].append((n_rows, np.broadcast_to(pad, (a.shape[0],) + pad.shape)))
