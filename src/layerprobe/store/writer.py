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

The parts: ``blocks.py`` assembles blocks from batches, ``flush.py`` writes and commits a complete
block, ``samples_table.py`` writes ``samples.parquet``, ``identity.py`` refuses a store of another
run. This module checks the caller's input and ties them together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from layerprobe.errors import StoreError
from layerprobe.store import bf16
from layerprobe.store.blocks import SKIP_REASONS, Block, BlockAssembler
from layerprobe.store.commits import read_commit, read_commits, remove_commit
from layerprobe.store.create import create_store
from layerprobe.store.flush import BlockFlusher
from layerprobe.store.identity import check_resume
from layerprobe.store.layout import ANSWER_TEXT, CODECS, default_chunk_samples, digests_from_hex, plan_store
from layerprobe.store.lock import StoreLock
from layerprobe.store.reader import SAMPLES_PARQUET, Store, open_store
from layerprobe.store.samples_table import CommittedSamples
from layerprobe.store.schema import SCHEMA_VERSION, RunMeta, SampleInfo, SiteSpec, new_header
from layerprobe.vocab import ANSWER_SITE

_SHA256 = re.compile(r"^([0-9a-f]{64})?$")


class StoreWriter:
    """Create or resume a store and write blocks of samples into it (see the module docstring)."""

    def __init__(self, opened: Store, durable: bool, lock: StoreLock | None = None) -> None:
        self.path = opened.path
        self._lock = lock
        self.header = opened.header
        self.plan = opened.plan
        self.durable = durable
        self._committed = set(opened.commits)
        self._blocks = BlockAssembler(opened.plan)
        self._flusher = BlockFlusher(opened.path, opened.plan, durable)
        self._samples = CommittedSamples(opened)
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
        lock: tuple[int, int] | None = None,
        schema_version: int | None = None,
    ) -> StoreWriter:
        """Create the store at ``path``, or resume it when it exists with the same run metadata.

        ``chunk_samples``, ``codec`` (``"none"`` default, or ``"zstd"``) and ``schema_version``
        (default ``SCHEMA_VERSION``; 2 writes the XXH3-64 commit records that layerprobe before
        schema 3 reads) apply when creating; ``None`` on resume means "as stored". ``chunk_samples``
        above the sample count is capped at it. Safe to call from several shard processes at once.
        ``lock=(k, n)`` takes the advisory write lock of shard ``k/n`` (``(0, 1)``: the whole store)
        until :meth:`close`, refusing to open while another process holds it (``lock.py``).
        """
        root = Path(path)
        site_list = tuple(sites.values()) if isinstance(sites, Mapping) else tuple(sites)
        _check_inputs(meta, site_list, samples, chunk_samples, codec)
        # A block larger than the run would be stored as one padded chunk (zarr pads the edge chunk).
        capped = None if chunk_samples is None else min(chunk_samples, samples.n_samples)
        if not (root / "zarr.json").exists():
            # Another shard process may rename its new store into place between these checks.
            foreign = root.exists() and not (root.is_dir() and not any(root.iterdir()))
            if foreign and not (root / "zarr.json").exists():
                raise StoreError(f"{root} exists and is not a layerprobe store; choose a new output path or remove it")
            if meta.manifest_sha256 != samples.digest(meta.class_names):  # on resume the store's own check covers it
                raise StoreError("RunMeta.manifest_sha256 is not the digest of these samples and class names; set it to SampleInfo.digest(class_names)")
            cs = capped or default_chunk_samples(max(s.hidden for s in site_list), samples.n_samples)
            header = new_header(meta, site_list, cs, samples.n_samples, schema_version or SCHEMA_VERSION)
            create_store(root, header, plan_store(header, codec or "none"), samples)
        store = open_store(root)
        # A store written before the cap keeps its uncapped block: the flag as given asks for either.
        asked = chunk_samples if store.chunk_samples == chunk_samples else capped
        check_resume(store, meta, site_list, samples, asked, codec, schema_version)
        held = StoreLock(root, lock) if lock is not None else None
        try:
            if held is not None:
                store = open_store(root)  # what a writer that held the lock before us committed
        except BaseException:
            held.release()
            raise
        writer = cls(store, durable, held)
        try:
            writer._flusher.open_shards()
        except StoreError:
            writer.close()
            raise
        writer._samples.write_parquet_if_complete(writer._committed, durable=durable)
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
        skip_reasons: Sequence[str] | None = None,
        answer_text: Sequence[str] | None = None,
    ) -> None:
        """Buffer samples ``[start, start + B)``; every block they complete is written and committed.

        ``acts[site]`` is ``(n_layers, B, hidden)`` bf16 (tensor or uint16 bits), ``answer_logits``
        ``(B, n_candidates)`` float32, ``sha256`` B hex digests, ``skipped`` ``(B,)`` bool;
        ``skip_reasons``: B strings, why each skipped sample was skipped ("" for the others), kept in
        the block's commit record for ``info``/``verify``; ``answer_text``: B generated answers ("" for
        skipped samples), required when the store has them (``meta.answer_tokens > 0``), refused otherwise.
        ``copy=False`` skips copying the activations: the writer keeps references to them and
        writes them straight to the files when their block is complete, so the caller must not
        change them in place afterwards (give each batch fresh arrays, as the extractor does).
        """
        if self._closed:
            raise StoreError(f"the writer of {self.path} is closed; open a new StoreWriter to write more")
        if self._failed:
            raise StoreError(f"the writer of {self.path} stopped after an error ({self._failed}); open a new StoreWriter to resume")
        batch, start, n = self._check_batch(start, acts, answer_logits, sha256, skipped)
        self._check_answers(batch, answer_text, f"batch [{start}, {start + n})", n)
        if skip_reasons is not None:
            batch[SKIP_REASONS] = _check_reasons(skip_reasons, batch["samples/skipped"], f"batch [{start}, {start + n})")
        stop = start + n
        for b in self.plan.blocks_between(start, stop):
            b_start, b_stop = self.plan.block_range(b)
            # A valid record on disk: another shard process committed the block since we opened.
            if b in self._committed or (b not in self._blocks.open and read_commit(self.path, self.plan, b) is not None):
                raise StoreError(
                    f"samples [{start}, {stop}) of {self.path} include block [{b_start}, {b_stop}), which is already committed;"
                    " write only pending_blocks()"
                )
            if self._blocks.overlaps(b, start, stop):
                raise StoreError(f"samples [{start}, {stop}) of {self.path} overlap samples already written in this run; write each sample once")
        for block in self._blocks.fill(batch, start, stop, copy):
            self._flush(block)

    def reopen(self, blocks: Sequence[int]) -> None:
        """Un-commit committed ``blocks`` so they are written again (a resumed run re-extracts them).

        ``samples.parquet`` goes first (it would describe the old rows), then each block's commit
        record: a crash in between leaves the blocks committed or pending, never half-described,
        and the parquet file is written again once every block is committed.
        """
        for b in blocks:
            if b not in self._committed:
                raise StoreError(f"block {b} of {self.path} is not committed by this writer's store; only committed blocks can be reopened")
        if not blocks:
            return
        (self.path / SAMPLES_PARQUET).unlink(missing_ok=True)
        for b in blocks:
            remove_commit(self.path, self.plan, b, durable=self.durable)
            self._committed.discard(b)

    def close(self) -> None:
        """Release the files; blocks still partly filled are dropped (they stay pending)."""
        if self._closed:
            return
        self._closed = True
        self._flusher.close()
        self._blocks.clear()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _flush(self, block: Block) -> None:
        """Write and commit a complete block (see the module docstring for why this is synchronous)."""
        try:
            self._write_block(block)
        except StoreError as err:
            self._failed = str(err)
            raise
        else:
            self._samples.record(block)
        finally:
            self._blocks.release(block)
        self._committed.add(block.index)
        self._samples.write_parquet_if_complete(self._committed, durable=self.durable)

    def _write_block(self, block: Block) -> None:
        """Every chunk of the block, then its commit record (the seam tests wrap to fail or stall one block)."""
        self._flusher.flush(block)

    def _check_answers(self, batch: dict[str, Any], answer_text: Any, where: str, n: int) -> None:
        """Add the batch's generated answers, which the store has exactly when ``answer_tokens > 0``."""
        if ANSWER_TEXT not in self.plan.arrays:
            if answer_text is not None:
                raise StoreError(f"{where}: answer_text given, but {self.path} was created with answer_tokens 0 (no generated answers); leave it out")
            return
        if answer_text is None:
            raise StoreError(f"{where}: {self.path} stores generated answers (answer_tokens {self.header.meta.answer_tokens}); pass answer_text, one str per sample")
        if isinstance(answer_text, str) or not isinstance(answer_text, Sequence) or len(answer_text) != n \
                or not all(isinstance(t, str) for t in answer_text):
            raise StoreError(f"{where}: answer_text must be a list of {n} strings, one per sample")
        batch[ANSWER_TEXT] = np.array(list(answer_text), dtype=object)

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
        n_cand = self.plan.arrays[ANSWER_SITE].shape[1]
        if logits.dtype != np.float32 or logits.shape != (n, n_cand):
            raise StoreError(f"{where}: answer_logits must be float32 of shape ({n}, {n_cand}), got {logits.dtype} {tuple(logits.shape)}")
        names = set(self.plan.site_paths)
        if set(acts) != names:
            missing, unknown = sorted(names - set(acts)), sorted(set(acts) - names)
            what = f"misses site(s) {missing}" if missing else f"has unknown site(s) {unknown}"
            raise StoreError(f"{where}: acts {what}; the store's sites are {sorted(names)}")
        batch: dict[str, Any] = {ANSWER_SITE: logits, "samples/sha256": digests_from_hex(digests), "samples/skipped": skip}
        for name, x in acts.items():
            bits = bf16.to_bits(x, f"{where}: acts[{name!r}]")
            a = self.plan.site(name)
            want = (a.shape[0], n, a.shape[2])
            if bits.shape != want:
                raise StoreError(f"{where}: acts[{name!r}] has shape {tuple(bits.shape)}, expected (layers, batch, hidden) = {want}")
            batch[a.path] = np.ascontiguousarray(bits)  # each layer's rows must be one buffer for pwritev
        return batch, start, n


def _check_reasons(reasons: Any, skipped: np.ndarray, where: str) -> list[str]:
    if isinstance(reasons, str) or not isinstance(reasons, Sequence) or len(reasons) != len(skipped):
        raise StoreError(f"{where}: skip_reasons must be a list of {len(skipped)} strings, one per sample")
    out = [str(r) for r in reasons]
    if any(r and not s for r, s in zip(out, skipped)):
        raise StoreError(f"{where}: skip_reasons gives a reason for a sample that is not skipped; give '' for those")
    return out


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
