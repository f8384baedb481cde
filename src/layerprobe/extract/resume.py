"""Rerunning an extraction into an existing store: is it the same run, and what must be done again.

- :func:`refuse_other_run`: before the model is loaded (minutes, for a real one), compare what is
  known without it: the model and adapter sources, the content hashes of local folders (hashing is
  cached, so the load does not hash again), dataset, candidates, dtype. A local folder is
  identified by its hash, its path is information (``store/schema.py``, ``same_source``): the same
  folder typed another way, or moved, resumes; another folder is refused here.
- :func:`check_loaded`: a model handed to ``run_extract`` already loaded must be the one the
  config names.
- :func:`blocks_to_reextract`: committed blocks of this shard holding samples skipped
  (``--skip-bad``) whose image now decodes. The rule: such a block is un-committed and extracted
  again whole (batches never cross a block, so its bytes are those of a fresh run with the fixed
  image). Without ``skip_bad`` a block is taken only when all its skipped images now decode (an
  image that still fails would stop the run); with it, when any does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from layerprobe.errors import ExtractError, LayerprobeError
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.data.images import read_image
from layerprobe.extract.data.manifest import Manifest

if TYPE_CHECKING:
    from layerprobe.extract.model.loading import LoadedModel
    from layerprobe.store.reader import Store

log = logging.getLogger(__name__)


def _sources(cfg: ExtractConfig) -> dict[str, str | None]:
    from layerprobe.extract.model.loading import source_id

    return {"model_id": source_id(cfg.model), "adapter": None if cfg.adapter is None else source_id(cfg.adapter)}


def check_loaded(loaded: LoadedModel, cfg: ExtractConfig, dtype: str | None = None) -> None:
    """Refuse a loaded model other than the one ``cfg`` names (its source, adapter, dtype, revision);
    ``dtype``: the resolved compute dtype (None = ``cfg.dtype``)."""
    from layerprobe.store.identity import first_difference

    wanted = {**_sources(cfg), "compute_dtype": dtype or cfg.dtype, "model_revision": cfg.revision}
    diff = first_difference({name: getattr(loaded, name) for name in wanted}, wanted)
    if diff is not None:
        raise ExtractError(f"the loaded model has {diff.field}={diff.have!r} but the config asks for {diff.want!r}; load the model the config names")


def refuse_other_run(cfg: ExtractConfig, manifest: Manifest, candidates: Sequence[str], dtype: str) -> None:
    """Refuse a rerun into a store made for another run, before the model is loaded.

    Only what is known without the model is compared here; ``StoreWriter.open`` checks every field
    (prompt template, token ids, sites) once the model is loaded.
    """
    if not (cfg.out / "zarr.json").exists():
        return
    from layerprobe.extract.model.loading import local_hashes
    from layerprobe.store import open_store
    from layerprobe.store.identity import check_same_run

    check_same_run(open_store(cfg.out), {
        **_sources(cfg), **local_hashes(cfg.model, cfg.adapter, cfg.allow_pickle),
        "dataset_name": manifest.name, "manifest_sha256": manifest.sha256, "candidates": list(candidates),
        "class_names": list(manifest.class_names), "compute_dtype": dtype, "answer_tokens": cfg.answer_tokens,
        "dicom_frame": cfg.dicom_frame,
    })


def blocks_to_reextract(store: Store, manifest: Manifest, shard: tuple[int, int], skip_bad: bool) -> list[int]:
    """Committed blocks of ``shard`` to extract again because skipped images now decode (module docstring)."""
    k, n = shard
    by_block: dict[int, list[bool]] = {}
    for i in store.skip_reasons:
        block = i // store.chunk_samples
        if block % n == k:
            by_block.setdefault(block, []).append(_decodes(manifest, i))
    chosen = [b for b, fixed in sorted(by_block.items()) if (any(fixed) if skip_bad else all(fixed))]
    left = sum(any(fixed) for b, fixed in by_block.items() if b not in chosen)
    if left:
        log.warning("%d block(s) of %s hold skipped images that now decode beside ones that still fail; "
                    "rerun with --skip-bad to extract them again", left, store.path)
    return chosen


def _decodes(manifest: Manifest, index: int) -> bool:
    try:
        read_image(manifest.paths[index])
    except LayerprobeError:
        return False
    return True
