"""Block assembly (store/blocks.py): batches of any size in, complete blocks out, without extra copies."""

from __future__ import annotations

import numpy as np
import pytest

from layerprobe import vocab
from layerprobe.store.blocks import BlockAssembler
from layerprobe.store.layout import digests_from_hex, plan_store
from layerprobe.store.schema import new_header
from test_store_bytes_golden import CS, N, SITES, batch_rows, run_meta

LAST = (N - 1) // CS  # the short edge block


@pytest.fixture()
def plan():
    return plan_store(new_header(run_meta(), SITES, CS, N), "none")


def batch(plan, start: int, stop: int) -> dict[str, np.ndarray]:
    """``write`` arguments keyed by array path, as ``StoreWriter.write`` hands them to the assembler."""
    acts, logits, sha, skipped = batch_rows(start, stop)
    out = {vocab.ANSWER_SITE: logits, "samples/sha256": digests_from_hex(sha), "samples/skipped": skipped}
    out.update({plan.site(name).path: np.ascontiguousarray(x) for name, x in acts.items()})
    return out


def chunk(block, path: str, layer: int) -> np.ndarray:
    """One layer's chunk as the flusher will write it: its pieces back to back."""
    return np.concatenate([rows[layer] for _, rows in block.pieces[path]], axis=0)


@pytest.mark.parametrize("copy", [True, False])
def test_blocks_come_out_complete_and_in_row_order(plan, copy):
    assembler = BlockAssembler(plan)
    whole = batch(plan, 0, N)
    spans = [(24, 27), (16, 20), (27, 29), (8, 11), (11, 16), (0, 8)]  # out of order, edge block first, block 2 partial
    done = []
    for start, stop in spans:
        for block in assembler.fill(batch(plan, start, stop), start, stop, copy):
            done.append(block.index)
            n = block.n_rows
            for a in plan.per_block_arrays():
                if a.sample_axis == 1:
                    want = whole[a.path][:, block.start:block.stop]
                    for layer in range(a.n_layers):
                        got = chunk(block, a.path, layer)
                        assert got.shape == a.chunk_shape[1:]
                        assert np.array_equal(got[:n], want[layer]) and not got[n:].any()
                else:
                    got = block.buffers[a.path]
                    assert np.array_equal(got[:n], whole[a.path][block.start:block.stop]) and not got[n:].any()
            assembler.release(block)
    assert done == [LAST, 1, 0] and sorted(assembler.open) == [2]


def test_without_copy_the_pieces_are_the_callers_arrays(plan):
    assembler = BlockAssembler(plan)
    first, second = batch(plan, 0, 5), batch(plan, 5, 8)
    (block,) = list(assembler.fill(second, 5, 8, copy=False)) + list(assembler.fill(first, 0, 5, copy=False))
    for name in (s.name for s in SITES):
        path = plan.site(name).path
        (_, a), (_, b) = block.pieces[path]
        assert np.shares_memory(a, first[path]) and np.shares_memory(b, second[path])


def test_copying_makes_each_chunk_one_piece_of_a_reused_buffer(plan):
    assembler = BlockAssembler(plan)
    data = batch(plan, 0, 24)
    buffers = []
    for block in assembler.fill(data, 0, 24, copy=True):
        path = plan.site(SITES[0].name).path
        (_, piece), = block.pieces[path]
        assert not np.shares_memory(piece, data[path])
        buffers.append(block.buffers[path])
        assembler.release(block)  # before the next block is filled: it takes these buffers
    assert len(buffers) == 3 and all(b is buffers[0] for b in buffers)


def test_the_edge_block_is_padded_by_one_shared_fill_block(plan):
    assembler = BlockAssembler(plan)
    start, stop = plan.block_range(LAST)
    (block,) = assembler.fill(batch(plan, start, stop), start, stop, copy=False)
    path = plan.site(SITES[-1].name).path
    (_, rows), (at, pad) = block.pieces[path]
    assert at == stop - start and pad.shape == (SITES[-1].n_layers, CS - (stop - start), SITES[-1].hidden)
    assert pad.strides[0] == 0 and not pad.any()


def test_overlaps_and_clear(plan):
    assembler = BlockAssembler(plan)
    assert list(assembler.fill(batch(plan, 8, 12), 8, 12, copy=True)) == []
    assert assembler.overlaps(1, 10, 14) and not assembler.overlaps(1, 12, 16) and not assembler.overlaps(0, 0, 8)
    assembler.clear()
    assert assembler.open == {} and not assembler.overlaps(1, 10, 14)
