"""Qwen3-VL (``qwen3_vl``): as Qwen2-VL, plus DeepStack.

Besides the main merger (the connector site), ``deepstack_merger_list`` turns a few intermediate
vision layers into features that are *added* to the image positions after the first LLM decoder
layers. transformers' ``output_hidden_states`` returns those decoder layers' outputs before the
addition, and so do these sites (``llm/*`` layer ``i`` equals ``output_hidden_states[i]``); the
addition shows up from the next layer on. The DeepStack mergers are not captured separately.
"""

from __future__ import annotations

from layerprobe.extract.model.adapters.base import Adapter, standard_paths
from layerprobe.extract.model.adapters.qwen2_vl import QwenVLAdapter
from layerprobe.extract.model.adapters.registry import register


@register("qwen3_vl")
def make(model_type: str) -> Adapter:
    paths = standard_paths("model.visual.merger", vision_layers="model.visual.blocks", connector_inner="model.visual.merger.act_fn")
    return QwenVLAdapter(model_type, paths)
