"""Tiny Qwen3-VL (``qwen3_vl``): 16-px patches, interleaved M-RoPE, one deepstack layer."""

from __future__ import annotations

from layerprobe.testing.tiny.parts import heads, round_to, tokenizer
from layerprobe.testing.tiny.qwen2_vl import QWEN_EXTRA, QWEN_TEMPLATE, QWEN_TOKENS, qwen_ids, qwen_image_processor, qwen_text
from layerprobe.testing.tiny.registry import TinySize, register


@register("qwen3_vl")
def build_qwen3_vl(s: TinySize):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from layerprobe.extract.model.processors import Qwen3VLImageOnlyProcessor

    side = round_to(s.image_size, 32)
    tok = tokenizer(QWEN_TOKENS, QWEN_EXTRA)
    processor = Qwen3VLImageOnlyProcessor(qwen_image_processor(side, 16), tok, chat_template=QWEN_TEMPLATE)
    _, n_heads = heads(s.v_hidden)
    vision = dict(
        depth=s.vision_layers,
        hidden_size=s.v_hidden,
        intermediate_size=4 * s.v_hidden,
        num_heads=n_heads,
        patch_size=16,
        out_hidden_size=s.hidden,
        num_position_embeddings=(side // 16) ** 2,
        deepstack_visual_indexes=[s.vision_layers // 2],
    )
    text = qwen_text(s, tok, (24, 20, 20), mrope_interleaved=True)
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **qwen_ids(tok))
    return Qwen3VLForConditionalGeneration(config), processor
