"""Tiny LLaVA (``llava``): a CLIP tower (CLS first, features from layer -2), or SigLIP as ``llava_siglip``."""

from __future__ import annotations

from layerprobe.testing.tiny.parts import chat_template, round_to, text_config, tokenizer, vit_config
from layerprobe.testing.tiny.registry import TinySize, register

LLAVA_TEMPLATE = chat_template("USER: ", "<image>\n", " ", "ASSISTANT:")


def _llava(s: TinySize, siglip: bool):
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    side = round_to(s.image_size, 14)
    tok = tokenizer({"image_token": "<image>"})
    if siglip:
        image_processor = SiglipImageProcessorPil(size={"height": side, "width": side})
        vision = vit_config(s, "siglip_vision_model", side, vision_use_head=False)
        strategy, layer, n_extra = "full", -1, 0
    else:
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
        vision = vit_config(s, "clip_vision_model", side, projection_dim=s.hidden)
        strategy, layer, n_extra = "default", -2, 1
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy=strategy,
        chat_template=LLAVA_TEMPLATE,
        num_additional_image_tokens=n_extra,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text_config(s, tok, model_type="llama"),
        image_token_index=tok.image_token_id,
        image_seq_length=(side // 14) ** 2,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=layer,
    )
    return LlavaForConditionalGeneration(config), processor


@register("llava")
def build_llava(s: TinySize):
    return _llava(s, siglip=False)


@register("llava_siglip", model_type="llava")
def build_llava_siglip(s: TinySize):
    return _llava(s, siglip=True)
