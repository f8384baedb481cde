"""Extraction: load an MLLM, capture every site in one forward per batch, stream into a store.

Layout: :mod:`.model` (loading, adapters, prompts: the model side), :mod:`.data` (manifests,
recipes, image decoding: the data side), and at the top what joins them: :mod:`.config` (a run),
:mod:`.capture` (hooks that pool every site) and :mod:`.runner` (the batched one-pass loop).
Tiny test checkpoints and synthetic images are fixtures, in :mod:`layerprobe.testing`.

Names are re-exported lazily (PEP 562), so ``import layerprobe.extract`` does not import torch or
transformers; each name loads its module on first use.
"""

from __future__ import annotations

from layerprobe.discovery import lazy_exports

_EXPORTS = {
    "load_model": "model.loading",
    "load_processor": "model.loading",
    "LoadedModel": "model.loading",
    "get_adapter": "model.adapters",
    "supported_families": "model.adapters",
    "load_site_spec": "model.adapters",
    "Adapter": "model.adapters",
    "SitePaths": "model.adapters",
    "render_prompt": "model.prompt",
    "candidate_token_ids": "model.prompt",
    "encode_batch": "model.prompt",
    "Capturer": "capture",
    "CaptureResult": "capture",
    "ExtractConfig": "config",
    "run_extract": "runner",
    "Manifest": "data.manifest",
    "resolve_dataset": "data.datasets",
    "get_recipe": "data.recipes",
}
"""Public name -> module under ``layerprobe.extract`` that defines it."""

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
