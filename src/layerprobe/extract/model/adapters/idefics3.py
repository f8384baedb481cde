"""Idefics3 and SmolVLM (``idefics3``, ``smolvlm``): SigLIP-style tower on image crops, pixel-shuffle
connector with a single linear projection (no hidden layer).

``pixel_values`` is ``(B, max_crops, C, H, W)`` with all-zero padding crops; the model drops those
before the tower, so sample ``b`` owns as many consecutive tower rows as it has non-zero crops
(computed here exactly as the model does). Inside a crop, patches that fall entirely in pixel
padding (``pixel_attention_mask``) are left out of ``vision/mean``; the connector is pooled over
everything it outputs, as the LLM receives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from layerprobe.extract.model.adapters.base import Adapter, Part, standard_paths
from layerprobe.extract.model.adapters.registry import register


def _real_crops(batch: Mapping[str, Any]) -> torch.Tensor:
    """(B, max_crops) bool: crops that are not all-zero padding (the model's own rule)."""
    pixels = batch["pixel_values"]
    return (pixels != 0).flatten(2).any(-1)


@dataclass(frozen=True)
class Idefics3Adapter(Adapter):
    """Rows per sample = its real crops; padded patches masked in the vision mean."""

    def rows_per_image(self, part: Part, config: Any, batch: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        return _real_crops(batch).sum(1)

    def token_mask(self, part: Part, config: Any, batch: Mapping[str, Any], n_rows: int, n_tokens: int) -> torch.Tensor | None:
        pixel_mask = batch.get("pixel_attention_mask")
        if part != "vision" or pixel_mask is None:
            return None
        patch = config.vision_config.patch_size
        mask_rhw = pixel_mask[_real_crops(batch)].bool()
        grid = mask_rhw.unfold(1, patch, patch).unfold(2, patch, patch)
        return grid.flatten(3).any(-1).reshape(n_rows, -1)


@register("idefics3", "smolvlm")
def make(model_type: str) -> Adapter:
    paths = standard_paths("model.connector", vision_layers="model.vision_model.encoder.layers", llm="model.text_model")
    return Idefics3Adapter(model_type, paths)
