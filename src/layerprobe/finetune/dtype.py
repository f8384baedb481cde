"""The compute dtype of a fine-tuning run, chosen as extraction chooses it (``--dtype auto``).

The choice is :func:`layerprobe.hardware.resolve_compute_dtype`, the function extraction calls,
fed the same way: the checkpoint's fp32 size read from its safetensors headers before anything is
loaded (:func:`layerprobe.hardware.checkpoint_fp32_bytes`, on the folder ``load_model`` will read).
So ``auto`` is bf16 where the device has native bf16 matmuls, fp32 elsewhere when the fp32 weights
fit the memory budget, else bf16 with a one-line warning. The frozen base weights run in it; peft
keeps the LoRA weights in float32 either way. The resolved name (never ``auto``) is what a run's
identity holds, so a resumed run compares the dtype it would really train in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def resolve_dtype(cfg: Any, device: Any) -> Any:
    """``cfg.dtype`` (a ``FinetuneConfig`` or ``VisionCEConfig``) resolved for ``device``: a
    :class:`~layerprobe.hardware.ResolvedDtype` (name + reason), printed when ``cfg.progress``."""
    from layerprobe.extract.model.loading import resolve_for_checkpoint

    return resolve_for_checkpoint(cfg.dtype, str(cfg.model), cfg.revision, device, label=Path(cfg.out).name, progress=cfg.progress)
