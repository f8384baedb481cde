"""Writing a store: whole-chunk writes, one commit record per block, resume and shards.

``StoreWriter.write`` takes batches of contiguous samples in any size. One block =
``chunk_samples`` samples = one chunk of every array. The writer collects the pieces of a block's
chunks (by default copies in a reused block buffer; with ``copy=False`` the caller's own arrays,
which the extractor hands over fresh for every batch) and, once the block's rows are all there,
writes each chunk whole with one gathered ``pwritev`` at its fixed place and then commits the
block by atomically creating its commit record. Hence:
- ``kill -9`` at any moment loses at most the blocks not yet committed; their bytes may be on disk,
  half written, but without a record no reader uses them and a resumed writer rewrites them.
- Processes writing disjoint blocks (``pending_blocks(shard=(k, n))``) touch disjoint byte ranges:
  the bytes do not depend on how the blocks were split (tests/test_store_crash_shards.py).
- The ``write`` call that completes a block writes and commits it before returning: the calling
  thread and one helper thread share the chunks (checksum and ``pwritev`` both release
  the GIL, so both cores work). The flush is synchronous on purpose: a background flush overlapped
  with a caller running Python stalls the flush threads, because a thread coming back from C waits
  up to the interpreter's 5 ms switch interval for a busy thread to hand over the GIL; measured on
  the benchmark, that cost more than the overlap gained (docs/LOG.md "store"). Callers that want to
  overlap computing with writing call ``write`` from their own writer thread, as the extractor does.
- A failed write (e.g. a full disk) raises one ``StoreError`` from that ``write``; the block is not
  committed and the writer refuses further writes, so nothing half-done is ever committed. Reopen
  to resume.
Durability: by default chunk data reaches the page cache before its commit record, which survives
the death of the process (the requirement). ``durable=True`` also fsyncs the chunk files and the
commit directory before and after each commit, which survives power loss at some speed cost.

A writer object is not thread-safe: one thread (e.g. the extractor's background writer) owns it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from layerprobe.errors import StoreError
from layerprobe.store import bf16, chunkio
from layerprobe.store.commits import COMMITS_DIR, CommitRecord, now, read_commit, read_commits, write_commit
from layerprobe.store.create import create_store
from layerprobe.store.identity import check_resume
from layerprobe.store.layout import CODECS, ArrayPlan, default_chunk_samples, digests_from_hex, digests_to_hex, plan_store
from layerprobe.store.reader import SAMPLES_PARQUET, Store, open_store, samples_frame
from layerprobe.store.schema import RunMeta, SampleInfo, SiteSpec, new_header

_SHA256 = re.compile(r"^([0-9a-f]{64})?$")
_COMMIT_NAME = re.compile(r"^\d+-\d+\.json$")


@dataclass
class _Block:
    """One block being filled.

    ``pieces[site path]`` lists ``(first row in the block, uint16 array (layers, rows, hidden))``;
    ``buffers`` are the reusable whole-block arrays: one per small per-sample array (answer logits,
    digests, skip flags) and, when writes copy, one per site (the rows are copied in place and the
    complete block's pieces are that one buffer, so each chunk is one contiguous piece).
    """

    index: int
    start: int
    stop: int
    pieces: dict[str, list[tuple[int, np.ndarray]]]
    buffers: dict[str, np.ndarray]
    filled: np.ndarray


class StoreWriter:
    """Create or resume a store and write blocks of samples into it (see the module docstring)."""

    def __init__(self, opened: Store, durable: bool) -> None:
        self.path = opened.path
        self.header = opened.header
        self.plan = opened.plan
        self.durable = durable
        self._opened = opened
        self._committed = set(opened.commits)
        # The per-sample columns of committed blocks, kept up to date so the writer that commits the
        # last block can write samples.parquet without reading the store back.
        self._digests = digests_from_hex(opened.sha256)
        self._skipped = opened.skipped.copy()
        self._open: dict[int, _Block] = {}
        self._spare: list[dict[str, np.ndarray]] = []
        self._shard_fds: dict[tuple[str, int], int] = {}
        self._failed: str | None = None
        self._closed = False

    @classmethod
    def open(
        cls,
        path: str | Path,
        meta: RunMeta,
        sites: Sequence[SiteSpec] | Mapping[str, SiteSpec],
        samples: SampleInfo,
        chunk_samples: int | None = None,
        *,
        codec: str | None = None,
        durable: bool = False,
    ) -> StoreWriter:
        """Create the store at ``path``, or resume it when it exists with the same run metadata.

        ``chunk_samples`` and ``codec`` (``"none"`` default, or ``"zstd"``) apply when creating;
        ``None`` on resume means "as stored". Safe to call from several shard processes at once.
        """
        root = Path(path)
        site_list = tuple(sites.values()) if isinstance(sites, Mapping) else tuple(sites)
        _check_inputs(meta, site_list, samples, chunk_samples, codec)
        if not (root / "zarr.json").exists():
            # Another shard process may rename its new store into place between these checks.
            foreign = root.exists() and not (root.is_dir() and not any(root.iterdir()))
            if foreign and not (root / "zarr.json").exists():
                raise StoreError(f"{root} exists and is not a layerprobe store; choose a new output path or remove it")
            cs = chunk_samples or default_chunk_samples(max(s.hidden for s in site_list), samples.n_samples)
            header = new_header(meta, site_list, cs, samples.n_samples)
            create_store(root, header, plan_store(header, codec or "none"), samples)
        store = open_store(root)
        check_resume(store, meta, site_list, samples, chunk_samples, codec)
        writer = cls(store, durable)
        writer._open_shards()
        writer._write_parquet_if_complete()
        return writer

    # -- state ---------------------------------------------------------------------------------

    @property
    def n_samples(self) -> int:
        return self.plan.n_samples

    @property
    def chunk_samples(self) -> int:
        return self.plan.chunk_samples

    @property
    def sites(self) -> dict[str, SiteSpec]:
        return {s.name: s for s in self.header.sites}

    def _committed_on_disk(self) -> set[int]:
        records, _ = read_commits(self.path, self.plan)
        return set(records) | self._committed

    @property
    def committed(self) -> np.ndarray:
        """bool ``(n_samples,)``: samples whose block is committed (by any process), read now."""
        mask = np.zeros(self.n_samples, dtype=bool)
        for block in self._committed_on_disk():
            start, stop = self.plan.block_range(block)
            mask[start:stop] = True
        return mask

    def pending_blocks(self, shard: tuple[int, int] = (0, 1)) -> list[tuple[int, int]]:
        """``[start, stop)`` of the blocks not yet committed that shard ``k`` of ``n`` owns (blocks k, k+n, ...)."""
        try:
            k, n = shard
        except (TypeError, ValueError):
            k = n = None
        if isinstance(k, bool) or isinstance(n, bool) or not (isinstance(k, int) and isinstance(n, int)) or not 0 <= k < n:
            raise StoreError(f"shard {shard!r} is not valid; use (k, n) with 0 <= k < n, e.g. (0, 2) and (1, 2)")
        done = self._committed_on_disk()
        return [self.plan.block_range(b) for b in range(k, self.plan.n_blocks, n) if b not in done]

    # -- writing -------------------------------------------------------------------------------

    def write(
        self,
        start: int,
        acts: Mapping[str, Any],
        answer_logits: Any,
        sha256: Sequence[str],
        skipped: Any,
        *,
        copy: bool = True,
    ) -> None:
        """Buffer samples ``[start, start + B)``; every block they complete is written and committed.

        ``acts[site]`` is ``(n_layers, B, hidden)`` bf16 (tensor or uint16 bits), ``answer_logits``
        ``(B, n_candidates)`` float32, ``sha256`` B hex digests, ``skipped`` ``(B,)`` bool.
        ``copy=False`` skips copying the activations: the writer keeps references to them and
        writes them straight to the files when their block is complete, so the caller must not
        change them in place afterwards (give each batch fresh arrays, as the extractor does).
        """
        if self._closed:
            raise StoreError(f"the writer of {self.path} is closed; open a new StoreWriter to write more")
        if self._failed:
            raise StoreError(f"the writer of {self.path} stopped after an error ({self._failed}); open a new StoreWriter to resume")
        batch, start, n = self._check_batch(start, acts, answer_logits, sha256, skipped)
        stop = start + n
        blocks = range(start // self.chunk_samples, (stop - 1) // self.chunk_samples + 1)
        for b in blocks:
            b_start, b_stop = self.plan.block_range(b)
            # A valid record on disk: another shard process committed the block since we opened.
            if b in self._committed or (b not in self._open and read_commit(self.path, self.plan, b) is not None):
                raise StoreError(
                    f"samples [{start}, {stop}) of {self.path} include block [{b_start}, {b_stop}), which is already committed;"
                    " write only pending_blocks()"
                )
            if b in self._open:
                lo, hi = max(start, b_start) - b_start, min(stop, b_stop) - b_start
                if self._open[b].filled[lo:hi].any():
                    raise StoreError(f"samples [{start}, {stop}) of {self.path} overlap samples already written in this run; write each sample once")
        for b in blocks:
            block = self._open.get(b) or self._new_block(b, copy)
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
            block.filled[rows] = True
            if block.filled.all():
                self._flush(block)

    def close(self) -> None:
        """Release the files; blocks still partly filled are dropped (they stay pending)."""
        if self._closed:
            return
        self._closed = True
        for fd in self._shard_fds.values():
            os.close(fd)
        self._shard_fds.clear()
        self._open.clear()
        self._spare.clear()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _check_batch(self, start: Any, acts: Mapping[str, Any], answer_logits: Any, sha256: Sequence[str],
                     skipped: Any) -> tuple[dict[str, Any], int, int]:
        """The batch as numpy arrays keyed by array path, its start and its size; refuses anything that does not fit."""
        if isinstance(sha256, str) or not isinstance(sha256, Sequence):
            raise StoreError("sha256 must be a list of hex digests, one per sample of the batch")
        n = len(sha256)
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or n < 1 or start < 0 or start + n > self.n_samples:
            raise StoreError(f"batch [{start}, {start}+{n}) is outside the store's {self.n_samples} samples; check start and the batch size")
        start = int(start)
        where = f"batch [{start}, {start + n})"
        digests = [str(h).lower() for h in sha256]
        bad = [h for h in digests if not _SHA256.match(h)]
        if bad:
            raise StoreError(f"{where}: sha256 {bad[0]!r} is not a 64-digit hex SHA-256 (or '' when unknown)")
        skip = np.asarray(skipped.cpu() if hasattr(skipped, "cpu") else skipped)
        if skip.dtype != bool or skip.shape != (n,):
            raise StoreError(f"{where}: skipped must be a bool array of shape ({n},), got {skip.dtype} {skip.shape}")
        logits = answer_logits.detach().cpu().numpy() if hasattr(answer_logits, "detach") else np.asarray(answer_logits)
        n_cand = self.plan.arrays["answer_logits"].shape[1]
        if logits.dtype != np.float32 or logits.shape != (n, n_cand):
            raise StoreError(f"{where}: answer_logits must be float32 of shape ({n}, {n_cand}), got {logits.dtype} {tuple(logits.shape)}")
        names = set(self.plan.site_paths)
        if set(acts) != names:
            missing, unknown = sorted(names - set(acts)), sorted(set(acts) - names)
            what = f"misses site(s) {missing}" if missing else f"has unknown site(s) {unknown}"
            raise StoreError(f"{where}: acts {what}; the store's sites are {sorted(names)}")
        batch: dict[str, Any] = {"answer_logits": logits, "samples/sha256": digests_from_hex(digests), "samples/skipped": skip}
        for name, x in acts.items():
            bits = bf16.to_bits(x, f"{where}: acts[{name!r}]")
            a = self.plan.site(name)
            want = (a.shape[0], n, a.shape[2])
            if bits.shape != want:
                raise StoreError(f"{where}: acts[{name!r}] has shape {tuple(bits.shape)}, expected (layers, batch, hidden) = {want}")
            batch[a.path] = np.ascontiguousarray(bits)  # each layer's rows must be one buffer for pwritev
        return batch, start, n

    def _new_block(self, b: int, copy: bool) -> _Block:
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
        block = _Block(b, start, stop, pieces, buffers, np.zeros(stop - start, dtype=bool))
        self._open[b] = block
        return block

    def _flush(self, block: _Block) -> None:
        """Write and commit a complete block (see the module docstring for why this is synchronous)."""
        del self._open[block.index]
        try:
            self._write_block(block)
        except StoreError as err:
            self._failed = str(err)
            raise
        else:
            rows = slice(block.start, block.stop)
            self._digests[rows] = block.buffers["samples/sha256"][: block.stop - block.start]
            self._skipped[rows] = block.buffers["samples/skipped"][: block.stop - block.start]
        finally:
            block.pieces.clear()  # let go of the caller's arrays
            self._spare.append(block.buffers)
        self._committed.add(block.index)
        self._write_parquet_if_complete()

    def _write_block(self, block: _Block) -> None:
        """Every chunk of the block, shared between this thread and a helper thread, then its commit."""
        try:
            self._complete_pieces(block)
            jobs = [(a, layer) for a in self.plan.per_block_arrays() for layer in range(a.n_layers)]
            digests = chunkio.on_two_threads(lambda job: self._write_chunk(block, *job), jobs)
            sum_of = {(a.path, layer): digest for (a, layer), digest in zip(jobs, digests)}
            sums = {a.path: tuple(sum_of[a.path, layer] for layer in range(a.n_layers)) for a in self.plan.per_block_arrays()}
            record = CommitRecord(block.index, block.start, block.stop, sums, now())
            write_commit(self.path, record, durable=self.durable)
        except OSError as err:
            raise StoreError(
                f"writing block [{block.start}, {block.stop}) of {self.path} failed: {err.strerror or err}"
                f" ({err.filename or 'no file'}); free space or fix the path, then rerun to resume (committed blocks are intact)"
            ) from err

    def _complete_pieces(self, block: _Block) -> None:
        """Order each site's pieces by row and pad the edge block with the fill value, as Zarr does."""
        n_rows = block.stop - block.start
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

    def _write_chunk(self, block: _Block, a: ArrayPlan, layer: int) -> str:
        """Write one chunk of the block; return its checksum."""
        return self._write_raw(block, a, layer) if a.sharded else self._write_encoded(block, a, layer)

    def _write_raw(self, block: _Block, a: ArrayPlan, layer: int) -> str:
        """Hash one raw chunk and write it into its shard straight from its pieces (no assembling copy)."""
        pieces = [rows[layer] for _, rows in block.pieces[a.path]] if a.sample_axis == 1 else [block.buffers[a.path]]
        digest = chunkio.checksum(pieces)  # first: it also brings the pieces into cache for the write
        fd = self._shard_fds[a.path, layer]
        chunkio.pwritev_all(fd, pieces, a.chunk_offset(block.index))
        if self.durable:
            os.fsync(fd)
        return digest

    def _write_encoded(self, block: _Block, a: ArrayPlan, layer: int) -> str:
        """Encode and write one site chunk as its own file; return the checksum of its stored bytes."""
        path = self.path / a.chunk_key(layer, block.index)
        chunk = np.concatenate([rows[layer:layer + 1] for _, rows in block.pieces[a.path]], axis=1)
        stored = chunkio.encode_chunk(a, chunk)
        chunkio.write_chunk_bytes(path, stored)
        if self.durable:
            chunkio.fsync_path(path)
        return chunkio.checksum([stored])

    def _open_shards(self) -> None:
        """Open every shard file the writer writes into, once (an unwritable store fails here, not mid-run)."""
        try:
            for a in self.plan.per_block_arrays():
                for layer in range(a.n_layers if a.sharded else 0):
                    self._shard_fds[a.path, layer] = os.open(self.path / a.chunk_key(layer, 0), os.O_WRONLY)
        except OSError as err:
            self.close()
            raise StoreError(f"cannot open {err.filename} for writing: {err.strerror}; check the store's permissions, then rerun") from err

    def _write_parquet_if_complete(self) -> None:
        target = self.path / SAMPLES_PARQUET
        if target.exists():
            return
        if len(self._committed) == self.plan.n_blocks:  # every row was committed before open or by this writer
            s = self._opened
            frame = samples_frame(s.ids, s.labels, s.class_names, s.splits, digests_to_hex(self._digests), self._skipped,
                                  np.ones(self.n_samples, dtype=bool))
        else:  # other shard processes may have committed the rest: count their records, then read their rows back
            names = os.listdir(self.path / COMMITS_DIR)
            if sum(1 for name in names if _COMMIT_NAME.match(name)) < self.plan.n_blocks:
                return
            store = open_store(self.path)
            if not store.complete:
                return
            frame = store.samples_frame()
        _write_parquet(target, frame, fsync=self.durable)


def write_samples_parquet(store: Store, *, fsync: bool = True) -> Path:
    """Write ``samples.parquet`` (a convenience copy of the per-sample columns), atomically."""
    target = store.path / SAMPLES_PARQUET
    _write_parquet(target, store.samples_frame(), fsync=fsync)
    return target


def _write_parquet(target: Path, frame: Any, *, fsync: bool) -> None:
    import io

    buf = io.BytesIO()
    frame.write_parquet(buf, compression="lz4")  # 2 ms for 2,000 rows against 3.5 with the default zstd
    chunkio.atomic_write(target, buf.getvalue(), fsync=fsync)


def _check_inputs(meta: Any, sites: tuple[Any, ...], samples: Any, chunk_samples: Any, codec: Any) -> None:
    if not isinstance(meta, RunMeta):
        raise StoreError(f"meta must be a RunMeta, got {type(meta).__name__}")
    if not isinstance(samples, SampleInfo):
        raise StoreError(f"samples must be a SampleInfo, got {type(samples).__name__}")
    if not sites or not all(isinstance(s, SiteSpec) for s in sites):
        raise StoreError("sites must be a non-empty list of SiteSpec")
    if chunk_samples is not None and (isinstance(chunk_samples, bool) or not isinstance(chunk_samples, int) or chunk_samples < 1):
        raise StoreError(f"chunk_samples={chunk_samples!r} must be a positive int (or None for the default)")
    if codec is not None and codec not in CODECS:
        raise StoreError(f"codec {codec!r} is not one of {CODECS}")
    labels = samples.labels
    if labels.size and (labels.min() < 0 or labels.max() >= meta.n_classes):
        raise StoreError(f"labels range over [{labels.min()}, {labels.max()}] but there are {meta.n_classes} class names; labels index class_names")
