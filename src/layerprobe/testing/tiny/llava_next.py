"""Tiny LLaVA-NeXT (``llava_next``): a CLIP tower over a grid of crops per image (any-resolution pinpoints)."""

from __future__ import annotations

from layerprobe.testing.tiny.llava import LLAVA_TEMPLATE
from layerprobe.testing.tiny.parts import round_to, text_config, tokenizer, vit_config
from layerprobe.testing.tiny.registry import TinySize, register


@register("llava_next")
def build_llava_next(s: TinySize):
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    side = round_to(s.image_size, 14)
    pinpoints = [[side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    tok = tokenizer({"image_token": "<image>"})
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE,
        num_additional_image_tokens=1,
    )
    config = LlavaNextConfig(
        vision_config=vit_config(s, "clip_vision_model", side, projection_dim=s.hidden),
        text_config=text_config(s, tok, model_type="llama"),
        image_token_index=tok.image_token_id,
        image_grid_pinpoints=pinpoints,
        image_seq_length=(side // 14) ** 2,
    )
    return LlavaNextForConditionalGeneration(config), processor
