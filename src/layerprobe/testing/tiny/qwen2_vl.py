"""Tiny Qwen2-VL (``qwen2_vl``) and Qwen2.5-VL (``qwen2_5_vl``): packed patches, M-RoPE, video-free processors.

The Qwen tokens, template, ids and image processor here are shared with :mod:`.qwen3_vl`.
"""

from __future__ import annotations

from layerprobe.testing.tiny.parts import chat_template, heads, round_to, text_config, tokenizer
from layerprobe.testing.tiny.registry import TinySize, register

QWEN_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}
QWEN_EXTRA = ("<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>")
QWEN_TEMPLATE = chat_template("<|im_start|>user\n", "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>\n", "<|im_start|>assistant\n")


def qwen_text(s: TinySize, tok, sections: tuple[int, int, int], **rope) -> dict:
    """Qwen text config; ``sections`` are the M-RoPE (t, h, w) shares of ``head_dim / 2``."""
    head_dim, _ = heads(s.hidden)
    total = sum(sections)
    mrope = [head_dim // 2 * part // total for part in sections]
    mrope[0] += head_dim // 2 - sum(mrope)
    return text_config(s, tok, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope, **rope})


def qwen_ids(tok) -> dict:
    ids = tok.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def qwen_image_processor(side: int, patch: int):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(size={"shortest_edge": side * side, "longest_edge": side * side}, patch_size=patch, merge_size=2)


@register("qwen2_vl")
def build_qwen2_vl(s: TinySize):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from layerprobe.extract.model.processors import Qwen2VLImageOnlyProcessor

    tok = tokenizer(QWEN_TOKENS, QWEN_EXTRA)
    processor = Qwen2VLImageOnlyProcessor(qwen_image_processor(round_to(s.image_size, 28), 14), tok, chat_template=QWEN_TEMPLATE)
    _, n_heads = heads(s.v_hidden)
    vision = dict(depth=s.vision_layers, embed_dim=s.v_hidden, hidden_size=s.hidden, num_heads=n_heads, mlp_ratio=4)
    config = Qwen2VLConfig(text_config=qwen_text(s, tok, (16, 24, 24)), vision_config=vision, **qwen_ids(tok))
    return Qwen2VLForConditionalGeneration(config), processor


@register("qwen2_5_vl")
def build_qwen2_5_vl(s: TinySize):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from layerprobe.extract.model.processors import Qwen2_5_VLImageOnlyProcessor

    tok = tokenizer(QWEN_TOKENS, QWEN_EXTRA)
    processor = Qwen2_5_VLImageOnlyProcessor(qwen_image_processor(round_to(s.image_size, 28), 14), tok, chat_template=QWEN_TEMPLATE)
    _, n_heads = heads(s.v_hidden)
    vision = dict(
        depth=s.vision_layers,
        hidden_size=s.v_hidden,
        intermediate_size=4 * s.v_hidden,
        num_heads=n_heads,
        out_hidden_size=s.hidden,
        window_size=56,
        fullatt_block_indexes=[s.vision_layers - 1],
    )
    config = Qwen2_5_VLConfig(text_config=qwen_text(s, tok, (16, 24, 24)), vision_config=vision, **qwen_ids(tok))
    return Qwen2_5_VLForConditionalGeneration(config), processor
