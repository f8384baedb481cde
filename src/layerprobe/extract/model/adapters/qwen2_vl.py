"""Qwen2-VL and Qwen2.5-VL (``qwen2_vl``, ``qwen2_5_vl``): packed vision sequence, MLP merger.

The vision blocks run on every image's patches packed into one ``(sum of patches, D)`` sequence;
image ``i`` owns ``image_grid_thw[i].prod()`` consecutive rows (Qwen2.5-VL reorders rows into
windows *inside* each image's segment, which a mean does not see). The merger folds each 2x2 block
into one token, so the connector rows per image are that count over ``spatial_merge_size**2``. The
merger's MLP hidden layer (after GELU) is ``mlp.1``; it is 4x the vision width, wider than the LLM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from layerprobe.extract.model.adapters.base import Adapter, Part, standard_paths
from layerprobe.extract.model.adapters.registry import register


@dataclass(frozen=True)
class QwenVLAdapter(Adapter):
    """Packed rows split per image with ``image_grid_thw``."""

    def packed_lengths(self, part: Part, config: Any, batch: Mapping[str, Any], n: int) -> torch.Tensor:
        patches_b = batch["image_grid_thw"].prod(-1)
        if part == "vision":
            return patches_b
        return patches_b // config.vision_config.spatial_merge_size**2


@register("qwen2_vl", "qwen2_5_vl")
def make(model_type: str) -> Adapter:
    paths = standard_paths("model.visual.merger", vision_layers="model.visual.blocks", connector_inner="model.visual.merger.mlp.1")
    return QwenVLAdapter(model_type, paths)
