"""The batched one-pass runner: images -> loader workers -> one forward per batch -> background store writes.

``run_extract(cfg)`` loads the model once, opens (or resumes) the store, and streams every pending
block of samples through three stages that overlap:

1. DataLoader worker processes read each image, hash its bytes, decode it (``images.py``) and run
   the processor on the batch (``collate``), ``prefetch`` batches ahead;
2. the main thread runs one forward per batch through the :class:`Capturer`, which pools every site
   on the device and, with ``answer_tokens > 0``, decodes the answer greedily in the same pass (the
   texts go to the store's ``samples/answer_text``);
3. a writer thread takes finished batches from a bounded queue and hands them to the store, so the
   forward never waits on disk (unless the queue is full, i.e. the disk is the bottleneck).

Choices:
- Order is the manifest's, fixed. Batches are cut inside store blocks (never across), so the writer
  always completes whole blocks, shards never share one, and a block's batches are the same in every
  run: a resumed or sharded run writes the same bytes as one uninterrupted run (same batch size,
  device and dtype; a batch's make-up changes bf16 results slightly).
- Workers report a bad image as data, not as an exception (a worker's exception would surface as a
  multi-line wrapper). Without ``skip_bad`` the main thread raises it as a one-line ExtractError;
  with it the sample is left out of the forward, its rows are zeros, ``skipped`` is set and the
  message is kept as its reason (in the block's commit record; ``info``/``verify`` list them). A
  rerun extracts again the committed blocks whose skipped images now decode (``resume.py``).
- The writer holds the store's advisory lock (per shard with ``shard``) for the whole run: a second
  process on the same store (or shard) stops at once, naming the pid of the first.
- A writer-thread error is re-raised in the main thread at the next batch; nothing more is written
  after it, and the store's context manager sees the error, so a block is never committed short.
- The first Ctrl-C stops after the batch in flight: queued batches are written, complete blocks
  are committed, then ``KeyboardInterrupt`` is raised. A second Ctrl-C interrupts at once; committed
  blocks stay valid either way (the store's commit records).
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from layerprobe import vocab
from layerprobe.errors import ExtractError, LayerprobeError
from layerprobe.extract.background import BackgroundWriter
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.data.datasets import resolve_dataset
from layerprobe.extract.data.manifest import Manifest
from layerprobe.extract.data.images import read_image
from layerprobe.extract.data.preflight import check_images
from layerprobe.extract.generation import Answers, answer_decoder
from layerprobe.extract.resume import blocks_to_reextract, check_loaded, refuse_other_run

_check_loaded = check_loaded  # the name tests/test_extract_run_identity.py imports

if TYPE_CHECKING:
    import torch

    from layerprobe.extract.model.loading import LoadedModel
    from layerprobe.hardware import ResolvedDtype

_QUEUE_DEPTH = 4
"""Batches that may wait for the writer; bounds memory while absorbing slow disk moments."""


class LoadedBatch(NamedTuple):
    """One batch as the loader hands it to the forward."""

    start: int
    """Index of the batch's first sample; the batch is samples ``[start, stop)``."""
    stop: int
    inputs: Mapping[str, Any] | None
    """Processor output for the decoded samples only; None when none decoded."""
    kept: tuple[int, ...]
    """Positions (0..B-1) of the decoded samples, i.e. the rows of ``inputs``."""
    sha256: tuple[str, ...]
    """SHA-256 of each sample's file; ``""`` where it could not be read."""
    error: str | None
    """The first bad image's one-line message, or None."""
    errors: tuple[str, ...] = ()
    """Each sample's one-line message ("" where it decoded): the skip reasons the store keeps."""


def batch_ranges(blocks: Sequence[tuple[int, int]], batch_size: int) -> list[tuple[int, int]]:
    """Cut each ``[start, stop)`` block into consecutive batches of at most ``batch_size``."""
    return [(s, min(s + batch_size, stop)) for start, stop in blocks for s in range(start, stop, batch_size)]


class _ImageFiles:
    """Map-style dataset: sample index -> (index, RGB image or None, sha256, error)."""

    def __init__(self, paths: Sequence[Path], frame=None) -> None:
        self.paths = list(paths)
        self.frame = frame

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            decoded = read_image(self.paths[index], frame=self.frame)
        except LayerprobeError as err:
            return index, None, "", str(err)
        return index, decoded.image, decoded.sha256, None


class _Collate:
    """Builds a :class:`LoadedBatch`; runs in the worker, so the processor does too."""

    def __init__(self, make_inputs: Callable[[list], Mapping[str, Any]]) -> None:
        self.make_inputs = make_inputs

    def __call__(self, items: list) -> LoadedBatch:
        kept = tuple(pos for pos, item in enumerate(items) if item[1] is not None)
        error = next((item[3] for item in items if item[3] is not None), None)
        inputs = self.make_inputs([items[pos][1] for pos in kept]) if kept else None
        errors = tuple(item[3] or "" for item in items)
        return LoadedBatch(items[0][0], items[-1][0] + 1, inputs, kept, tuple(item[2] for item in items), error, errors)


def _worker_init(_: int) -> None:
    # Ctrl-C goes to the whole process group; the main process decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(
    paths: Sequence[Path],
    batches: Sequence[tuple[int, int]],
    make_inputs: Callable[[list], Mapping[str, Any]],
    num_workers: int,
    prefetch: int,
    frame=None,
):
    """A DataLoader yielding one :class:`LoadedBatch` per ``[start, stop)`` range, in order.

    ``make_inputs(images)`` turns a list of RGB images into model inputs (the processor call); it
    runs in the worker processes. The throughput benchmark uses this same loader for its floor.
    ``frame`` is the DICOM frame rule passed to ``read_image``.
    """
    from torch.utils.data import DataLoader

    return DataLoader(
        _ImageFiles(paths, frame),
        batch_sampler=[list(range(s, e)) for s, e in batches],
        collate_fn=_Collate(make_inputs),
        num_workers=num_workers,
        prefetch_factor=prefetch if num_workers > 0 else None,
        worker_init_fn=_worker_init if num_workers > 0 else None,
    )


class _StopRequest:
    requested = False


@contextmanager
def _first_ctrl_c_stops_gracefully(on_request: Callable[[], None]) -> Iterator[_StopRequest]:
    """First SIGINT sets ``requested``; a second one raises KeyboardInterrupt as usual."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True
        on_request()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _manifest(cfg: ExtractConfig) -> Manifest:
    manifest = resolve_dataset(cfg.dataset, split_file=cfg.split_file)
    return manifest.head(cfg.limit) if cfg.limit is not None else manifest


def default_instruction(candidates: Sequence[str]) -> str:
    """The instruction used when neither the run nor the dataset gives one."""
    return "Classify this image. Answer with one of: " + ", ".join(f"'{c}'" for c in candidates) + "."


def _rows_with_skips(kept: tuple[int, ...], n: int, acts: Mapping[str, torch.Tensor], logits_bc: torch.Tensor):
    """Acts/logits of the ``len(kept)`` decoded samples as ``n`` CPU rows, zeros where skipped."""
    import torch

    if len(kept) == n:
        return {site: x_lbd.cpu() for site, x_lbd in acts.items()}, logits_bc.float().cpu()
    index = torch.tensor(kept, dtype=torch.long)
    out = {}
    for site, x_lbd in acts.items():
        full_lnd = torch.zeros(x_lbd.shape[0], n, x_lbd.shape[2], dtype=x_lbd.dtype)
        full_lnd[:, index] = x_lbd.cpu()
        out[site] = full_lnd
    logits_nc = torch.zeros(n, logits_bc.shape[1], dtype=torch.float32)
    logits_nc[index] = logits_bc.float().cpu()
    return out, logits_nc


def _capture(capturer, batch: LoadedBatch, n_candidates: int, answers: Answers = Answers(0)) -> tuple:
    """The store's ``write`` arguments for one batch (zeros, and "" for the answer, where skipped)."""
    import torch

    n = batch.stop - batch.start
    skipped_n = np.ones(n, dtype=bool)
    skipped_n[list(batch.kept)] = False
    texts = [""] * n
    if batch.inputs is None:
        acts = {s.name: torch.zeros(len(s.layer_names), n, s.hidden, dtype=capturer.out_dtype) for s in capturer.site_specs()}
        logits_nc = torch.zeros(n, n_candidates)
    else:
        result = capturer.run(batch.inputs, max_new_tokens=answers.tokens)
        acts, logits_nc = _rows_with_skips(batch.kept, n, result.acts, result.answer_logits)
        if answers.tokens:
            for pos, text in zip(batch.kept, answers.decode(result.generated_ids)):
                texts[pos] = text
    return (batch.start, acts, logits_nc.numpy(), list(batch.sha256), skipped_n, list(batch.errors) or [""] * n,
            texts if answers.tokens else None)


def _stream(loader, capturer, write: Callable[..., None], cfg: ExtractConfig, n_candidates: int, bar,
            answers: Answers = Answers(0)) -> bool:
    """Forward every batch, writing in the background; True when stopped early by Ctrl-C."""
    notice = lambda: bar.write("stopping after this batch; Ctrl-C again to stop at once")  # noqa: E731
    with _first_ctrl_c_stops_gracefully(notice) as stop:
        batches = iter(loader)  # forks the loader workers before the writer thread exists
        background = BackgroundWriter(write, _QUEUE_DEPTH)
        try:
            for batch in batches:
                if stop.requested:
                    break
                if batch.error is not None and not cfg.skip_bad:
                    raise ExtractError(batch.error)
                if batch.inputs is not None:
                    capturer.warm_up(batch.inputs, max_new_tokens=answers.tokens)
                background.put(_capture(capturer, batch, n_candidates, answers))
                bar.update(batch.stop - batch.start)
                if stop.requested:
                    break
        except BaseException:
            # Queued batches are correct: write them, but let the error in flight win.
            background.close(reraise=False)
            raise
        background.close()
        return stop.requested


def _write(writer, start, acts, logits_nc, sha256, skipped_n, reasons, texts=None) -> None:
    # No copy: every batch's activations are fresh tensors (one capture buffer set per batch).
    writer.write(start, acts, logits_nc, sha256, skipped_n, copy=False, skip_reasons=reasons, answer_text=texts)


def _resolve_dtype(cfg: ExtractConfig, loaded: LoadedModel | None) -> ResolvedDtype:
    """``cfg.dtype`` as a compute dtype (``auto``: by device and the checkpoint's fp32 size, read from
    its safetensors headers before loading); a model passed in already runs in its own dtype."""
    from layerprobe.extract.model.loading import resolve_for_checkpoint
    from layerprobe.hardware import ResolvedDtype

    if cfg.dtype == vocab.AUTO and loaded is not None:
        return ResolvedDtype(loaded.compute_dtype, f"auto: the model passed in runs in {loaded.compute_dtype}")
    return resolve_for_checkpoint(cfg.dtype, str(cfg.model), cfg.revision, cfg.device, label=cfg.out.name, progress=cfg.progress)


def _task(cfg: ExtractConfig) -> tuple[Manifest, tuple[str, ...], str]:
    """The dataset, its candidates (matched to classes by name, never by position) and the instruction."""
    from layerprobe.extract.data.candidates import match_candidates

    manifest = _manifest(cfg)
    if cfg.candidates is not None:
        candidates = match_candidates(manifest.class_names, cfg.candidates)
    else:
        candidates = tuple(manifest.candidates or manifest.class_names)
    return manifest, candidates, cfg.prompt or manifest.instruction or default_instruction(candidates)


def run_extract(cfg: ExtractConfig, *, loaded: LoadedModel | None = None) -> Path:
    """Run (or resume) the extraction described by ``cfg``; return the store path.

    ``loaded``: ``cfg.model`` already loaded by ``load_model`` with the same adapter, dtype and
    revision (saves loading it again in notebooks, tests and the benchmark); None loads it here.
    Raises ``KeyboardInterrupt`` after a graceful Ctrl-C stop (committed blocks intact).
    """
    if cfg.threads is None:
        return _run_extract(cfg, loaded)
    from layerprobe.hardware import torch_threads

    with torch_threads(cfg.threads):
        return _run_extract(cfg, loaded)


def _run_extract(cfg: ExtractConfig, loaded: LoadedModel | None) -> Path:
    from functools import partial

    from tqdm.auto import tqdm

    from layerprobe.extract.capture import Capturer
    from layerprobe.extract.model.adapters import get_adapter
    from layerprobe.dtypes import compute_dtype
    from layerprobe.extract.model.loading import load_model
    from layerprobe.extract.model.prompt import candidate_token_ids, encode_batch, render_prompt
    from layerprobe.extract.model.peft_adapter import finetune_extra  # the arm's identity, when the adapter is finetune's
    from layerprobe.store import RunMeta, StoreWriter, open_store

    manifest, candidates, instruction = _task(cfg)
    dtype = _resolve_dtype(cfg, loaded)
    refuse_other_run(cfg, manifest, candidates, dtype.name)
    data_extra = check_images(manifest, allow_duplicate_images=cfg.allow_duplicate_images)
    if loaded is None:
        loaded = load_model(cfg.model, dtype=cfg.torch_dtype or compute_dtype(dtype.name), device=cfg.device, adapter=cfg.adapter,
                            trust_remote_code=cfg.trust_remote_code, revision=cfg.revision, allow_pickle=cfg.allow_pickle,
                            force_adapter=cfg.force_adapter, progress=cfg.progress)
    else:
        check_loaded(loaded, cfg, dtype.name)
    adapter = get_adapter(loaded, site_spec=cfg.site_spec)
    token_ids = candidate_token_ids(loaded.processor, candidates)
    prompt = render_prompt(loaded.processor, instruction, plain_prompt=adapter.plain_prompt)
    capturer = Capturer(loaded, adapter, token_ids)
    meta = RunMeta(
        model_id=loaded.model_id, model_revision=loaded.model_revision, model_hash=loaded.model_hash,
        model_config_hash=loaded.model_config_hash, model_type=loaded.model_type, adapter=loaded.adapter, adapter_hash=loaded.adapter_hash,
        dataset_name=manifest.name, manifest_sha256=manifest.sha256, prompt_template=prompt,
        candidates=tuple(candidates), candidate_token_ids=token_ids, class_names=manifest.class_names,
        compute_dtype=dtype.name, answer_tokens=cfg.answer_tokens, dicom_frame=cfg.dicom_frame, extra={"instruction": instruction, "batch_size": cfg.batch_size,
        "device": loaded.device, "compute_dtype_reason": dtype.reason, **({"threads": cfg.threads} if cfg.threads else {}), **data_extra, **finetune_extra(cfg.adapter)},
    )
    samples = manifest.sample_info()
    with StoreWriter.open(cfg.out, meta, capturer.site_specs(), samples, chunk_samples=cfg.chunk_samples, lock=cfg.shard) as writer:
        writer.reopen(blocks_to_reextract(open_store(cfg.out), manifest, cfg.shard, cfg.skip_bad))
        batches = batch_ranges(writer.pending_blocks(shard=cfg.shard), cfg.batch_size)
        if not batches:  # complete already (or this shard is): nothing to load
            return cfg.out
        loader = make_loader(manifest.paths, batches, partial(encode_batch, loaded.processor, prompt=prompt), cfg.num_workers, cfg.prefetch,
                             frame=cfg.dicom_frame)
        bar = tqdm(total=sum(e - s for s, e in batches), unit="img", desc=cfg.out.name, dynamic_ncols=True,
                   disable=not cfg.progress or not sys.stderr.isatty())
        with bar:
            answers = Answers(cfg.answer_tokens, answer_decoder(loaded.processor) if cfg.answer_tokens else None)
            stopped = _stream(loader, capturer, partial(_write, writer), cfg, len(candidates), bar, answers)
    if stopped:
        raise KeyboardInterrupt
    return cfg.out
