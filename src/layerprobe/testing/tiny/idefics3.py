"""Tiny Idefics3 (``idefics3``) and SmolVLM (``smolvlm``): image splitting into crops plus a global view, 2x2 pixel shuffle."""

from __future__ import annotations

from layerprobe.testing.tiny.parts import chat_template, round_to, text_config, tokenizer, vit_config
from layerprobe.testing.tiny.registry import TinySize, register


def _idefics3_like(s: TinySize, smol: bool):
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor, SmolVLMConfig, SmolVLMForConditionalGeneration
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    from layerprobe.extract.model.processors import SmolVLMImageOnlyProcessor

    side = round_to(s.image_size, 28)  # an even patch grid for the 2x2 pixel shuffle
    n_tokens = (side // 28) ** 2
    tok = tokenizer(
        {
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        }
    )
    template = chat_template("User:", "<image>", "<end_of_utterance>\n", "Assistant:")
    sizes = dict(size={"longest_edge": 2 * side}, max_image_size={"longest_edge": side}, do_image_splitting=True)
    image_processor = (SmolVLMImageProcessorPil if smol else Idefics3ImageProcessorPil)(**sizes)
    processor_class = SmolVLMImageOnlyProcessor if smol else Idefics3Processor
    processor = processor_class(image_processor=image_processor, tokenizer=tok, image_seq_len=n_tokens, chat_template=template)
    vision_type = "smolvlm_vision" if smol else "idefics3_vision"
    config_class = SmolVLMConfig if smol else Idefics3Config
    config = config_class(
        vision_config=vit_config(s, vision_type, side),
        text_config=text_config(s, tok, model_type="llama"),
        image_token_id=tok.image_token_id,
        scale_factor=2,
    )
    model_class = SmolVLMForConditionalGeneration if smol else Idefics3ForConditionalGeneration
    return model_class(config), processor


@register("idefics3")
def build_idefics3(s: TinySize):
    return _idefics3_like(s, smol=False)


@register("smolvlm")
def build_smolvlm(s: TinySize):
    return _idefics3_like(s, smol=True)
