"""Gemma3 (``gemma3``): SigLIP tower (no CLS), projector = RMSNorm + 2-D average pool + a bare
projection matrix. The projector has no hidden layer, so ``connector/mean`` has only ``output``.

With pan-and-scan on, an image becomes the full view plus crops, each a tower row and each worth
``mm_tokens_per_image`` image tokens in the prompt; the processor does not return the crop
counts, so rows per image are read off the prompt: image tokens / ``mm_tokens_per_image``.
Image positions are the ``image_token_id`` (soft-token) positions, not the begin/end markers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from layerprobe.extract.model.adapters.base import Adapter, Part, standard_paths
from layerprobe.extract.model.adapters.registry import register


@dataclass(frozen=True)
class Gemma3Adapter(Adapter):
    """Rows (views) per image from the image-token count of each prompt."""

    def rows_per_image(self, part: Part, config: Any, batch: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        n_tokens_b = (batch["input_ids"] == self.image_token_id(config)).sum(1)
        return n_tokens_b // config.mm_tokens_per_image


@register("gemma3")
def make(model_type: str) -> Adapter:
    return Gemma3Adapter(model_type, standard_paths("model.multi_modal_projector"))
