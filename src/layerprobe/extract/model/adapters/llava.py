"""LLaVA (``llava``): CLIP or SigLIP tower, two-layer MLP projector, Llama-style LLM.

A CLIP tower puts a CLS token first in every row; it is left out of ``vision/mean`` whatever the
checkpoint's ``vision_feature_select_strategy`` (that setting only decides what the projector sees,
and the connector is pooled over exactly what it outputs). SigLIP has no CLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from layerprobe.extract.model.adapters.base import Adapter, standard_paths
from layerprobe.extract.model.adapters.registry import register

LLAVA_PATHS = standard_paths("model.multi_modal_projector", connector_inner="model.multi_modal_projector.act")


def has_cls(config: Any) -> int:
    """1 for a CLIP vision tower (CLS first in each row), 0 otherwise."""
    return int(config.vision_config.model_type == "clip_vision_model")


@dataclass(frozen=True)
class LlavaAdapter(Adapter):
    """One row per image; CLS dropped for CLIP towers."""

    def vision_prefix_tokens(self, config: Any) -> int:
        return has_cls(config)


@register("llava")
def make(model_type: str) -> Adapter:
    return LlavaAdapter(model_type, LLAVA_PATHS)
