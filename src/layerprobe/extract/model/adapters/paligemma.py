"""PaliGemma (``paligemma``): SigLIP tower (no CLS), a single linear projection (no hidden layer),
Gemma LLM with a prefix-LM mask (the processor's ``token_type_ids`` must reach the model).

The processor inserts the image tokens and BOS itself, so without a chat template the prompt is
the instruction right after the image placeholder.
"""

from __future__ import annotations

from layerprobe.extract.model.adapters.base import Adapter, standard_paths
from layerprobe.extract.model.adapters.registry import register


@register("paligemma")
def make(model_type: str) -> Adapter:
    return Adapter(model_type, standard_paths("model.multi_modal_projector"), plain_prompt="{image}{instruction}")
