"""Tiny PaliGemma (``paligemma``): SigLIP tower, no chat template.

The processor adds 1152 ``<loc>``/``<seg>`` tokens when it is constructed, so it is built before
the config and the config's ``vocab_size`` is ``len(tokenizer)``.
"""

from __future__ import annotations

from layerprobe.testing.tiny.parts import round_to, text_config, tokenizer, vit_config
from layerprobe.testing.tiny.registry import TinySize, register


@register("paligemma")
def build_paligemma(s: TinySize):
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    side = round_to(s.image_size, 14)
    tok = tokenizer({"image_token": "<image>"})
    image_processor = SiglipImageProcessorPil(size={"height": side, "width": side})
    image_processor.image_seq_length = (side // 14) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)  # adds 1152 tokens: before the config
    text = text_config(s, tok, model_type="gemma")
    config = PaliGemmaConfig(
        vision_config=vit_config(s, "siglip_vision_model", side, vision_use_head=False, projection_dim=s.hidden),
        text_config=text,
        image_token_index=tok.image_token_id,
        projection_dim=s.hidden,
        hidden_size=s.hidden,
        vocab_size=len(tok),
    )
    return PaliGemmaForConditionalGeneration(config), processor
