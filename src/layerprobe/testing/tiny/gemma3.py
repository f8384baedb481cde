"""Tiny Gemma 3 (``gemma3``): SigLIP tower, 2x2-pooled image tokens, an explicitly initialised projection.

The projection weight starts at zero and random init leaves it there (every image token would be
zero), so it is drawn here.
"""

from __future__ import annotations

from layerprobe.testing.tiny.parts import chat_template, heads, round_to, text_config, tokenizer, vit_config
from layerprobe.testing.tiny.registry import TinySize, register


@register("gemma3")
def build_gemma3(s: TinySize):
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    side = round_to(s.image_size, 28)  # an even patch grid, pooled 2x2 into the image tokens
    n_tokens = (side // 28) ** 2
    tok = tokenizer(
        {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
        ("<start_of_turn>", "<end_of_turn>"),
    )
    template = chat_template("<start_of_turn>user\n", "<start_of_image>", "<end_of_turn>\n", "<start_of_turn>model\n")
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": side, "width": side}),
        tokenizer=tok,
        chat_template=template,
        image_seq_length=n_tokens,
    )
    head_dim, _ = heads(s.hidden)
    text = text_config(s, tok, model_type="gemma3_text", query_pre_attn_scalar=head_dim, sliding_window=64)
    ids = tok.convert_tokens_to_ids
    config = Gemma3Config(
        text_config=text,
        vision_config=vit_config(s, "siglip_vision_model", side, vision_use_head=False),
        mm_tokens_per_image=n_tokens,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config)
    with torch.no_grad():  # zero at init: every image token would be zero
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, s.v_hidden**-0.5)
    return model, processor
