"""LLaVA-NeXT (``llava_next``): LLaVA with any-resolution crops.

Each image becomes a base crop plus a grid of crops (the count follows from ``image_sizes`` and the
config's ``image_grid_pinpoints``, as in the model's own forward); all crops of an image are pooled
together for ``vision/mean`` and ``connector/mean``. The LLM's image positions also hold the
``image_newline`` rows the model inserts after the projector; ``llm/image_mean`` covers all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from layerprobe.extract.model.adapters.base import Adapter, Part
from layerprobe.extract.model.adapters.llava import LLAVA_PATHS, has_cls
from layerprobe.extract.model.adapters.registry import register


@dataclass(frozen=True)
class LlavaNextAdapter(Adapter):
    """Crops per image from ``image_sizes``; CLS dropped for CLIP towers."""

    def vision_prefix_tokens(self, config: Any) -> int:
        return has_cls(config)

    def rows_per_image(self, part: Part, config: Any, batch: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

        crops = [
            image_size_to_num_patches(image_size=size, grid_pinpoints=config.image_grid_pinpoints, patch_size=config.vision_config.image_size)
            for size in batch["image_sizes"].tolist()
        ]
        return torch.tensor(crops, dtype=torch.long)


@register("llava_next")
def make(model_type: str) -> Adapter:
    return LlavaNextAdapter(model_type, LLAVA_PATHS)
