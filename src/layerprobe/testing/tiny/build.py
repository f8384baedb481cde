"""Tiny random-weight checkpoints of every supported family, built offline.

``build_tiny(family, out_dir)`` writes a folder that looks exactly like a user's checkpoint: the
real transformers model class with random weights, saved with ``save_pretrained`` (safetensors),
plus a processor (image processor + tokenizer + chat template) saved the same way. Tests, the demo
and the benchmark load it through ``load_model`` like any other model, so the loading path is the
one users take.

Design choices (each one a measured gotcha, see ``shared/notes/field-notes.md``):
- The tokenizer is a byte-level BPE trained in well under a second on text that ships with Python
  (standard-library sources) plus a few answer words, so nothing is downloaded. Each family's
  special tokens are added as special tokens, the image token as a *named* one
  (``tokenizer.image_token``), as the stock processors expect.
- The processor is built before the config and the config's ``vocab_size`` is ``len(tokenizer)``:
  PaliGemma's processor adds 1152 ``<loc>``/``<seg>`` tokens when it is constructed.
- The model is constructed with the target dtype as torch's default dtype; casting afterwards
  would also cast the rotary-embedding buffers and shift logits after a reload.
- Gemma3's projection weight starts at zero and random init leaves it there (every image token
  would be zero), so it is initialised explicitly.
- Sizes are arguments, so the same builder makes the 64-wide test models and the 1024-wide,
  16-layer models of the throughput benchmark. ``image_size`` is rounded to what the family's
  patch grid allows (a multiple of 28 for Qwen2/2.5-VL and Idefics3/SmolVLM, 32 for Qwen3-VL, 14
  otherwise).
- A finished folder carries ``layerprobe_tiny.json``; it is written last and the folder is moved
  into place atomically, so a half-built folder is never reused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from layerprobe.errors import ExtractError

TINY_FAMILIES: tuple[str, ...] = (
    "llava",
    "llava_siglip",
    "llava_next",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "gemma3",
    "idefics3",
    "smolvlm",
    "paligemma",
)
"""Families ``build_tiny`` can make; ``llava_siglip`` is LLaVA with a SigLIP tower (model_type llava)."""

_MARKER = "layerprobe_tiny.json"


@dataclass(frozen=True)
class TinySize:
    """Sizes of a tiny checkpoint."""

    hidden: int = 256
    """LLM width; the vision tower has the same width unless ``vision_hidden`` is given."""
    n_layers: int = 4
    """LLM decoder layers."""
    vision_layers: int = 4
    """Vision-tower blocks."""
    image_size: int = 224
    """Nominal input side in pixels (rounded to the family's patch grid)."""
    seed: int = 0
    """Seed of the random weights."""
    vision_hidden: int | None = None
    """Vision-tower width; ``None`` means ``hidden``."""

    def __post_init__(self) -> None:
        for name in ("hidden", "n_layers", "vision_layers", "image_size"):
            if getattr(self, name) < 1:
                raise ExtractError(f"tiny model {name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % 32 or (self.vision_hidden is not None and self.vision_hidden % 32):
            raise ExtractError(f"tiny model widths must be multiples of 32, got hidden={self.hidden}, vision_hidden={self.vision_hidden}")

    @property
    def v_hidden(self) -> int:
        return self.vision_hidden or self.hidden


def build_tiny(
    family: str,
    out_dir: str | os.PathLike,
    *,
    hidden: int = 256,
    n_layers: int = 4,
    vision_layers: int = 4,
    image_size: int = 224,
    seed: int = 0,
    vision_hidden: int | None = None,
    dtype: str = "bfloat16",
) -> Path:
    """Build (or reuse) a tiny random-weight checkpoint of ``family`` under ``out_dir``; return its folder.

    The folder name encodes every argument, so different sizes can share ``out_dir``. Weights are
    saved in ``dtype`` (bf16 by default, like released checkpoints).
    """
    if family not in _BUILDERS:
        raise ExtractError(f"no tiny model for family {family!r}; choose one of {', '.join(TINY_FAMILIES)}")
    size = TinySize(hidden, n_layers, vision_layers, image_size, seed, vision_hidden)
    vh = f"-vh{vision_hidden}" if vision_hidden else ""
    name = f"{family}-h{hidden}-l{n_layers}-v{vision_layers}-s{image_size}-seed{seed}{vh}-{dtype}"
    final = Path(out_dir) / name
    if (final / _MARKER).is_file():
        return final
    import torch
    from transformers import set_seed

    torch_dtype = getattr(torch, dtype)
    tmp = Path(out_dir) / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    previous = torch.get_default_dtype()
    set_seed(seed)
    torch.set_default_dtype(torch_dtype)
    try:
        model, processor = _BUILDERS[family](size)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / _MARKER).write_text(json.dumps({"family": family, "dtype": dtype, **asdict(size)}, indent=1))
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished the same build first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / _MARKER).is_file():
            raise
    return final


# --------------------------------------------------------------------------------------- pieces

_BUILDERS: dict[str, Callable[[TinySize], tuple[Any, Any]]] = {}


def _builder(family: str):
    def register(fn):
        _BUILDERS[family] = fn
        return fn

    return register


_ANSWER_WORDS = (
    "yes no benign malignant normal abnormal pneumonia tumor glioma meningioma pituitary cat dog "
    "A B C D Answer answer image photo scan X-ray MRI CT the a of is this which class"
)


def _corpus() -> list[str]:
    """Text that ships with Python: a few standard-library sources plus the answer words."""
    import argparse
    import inspect
    import json as json_module
    import textwrap

    texts = [inspect.getsource(module) for module in (argparse, textwrap, json_module.decoder)]
    return texts + [_ANSWER_WORDS] * 20


def _tokenizer(special: dict[str, str], extra: tuple[str, ...] = ()):
    """Byte-level BPE (2000 entries) with bos/eos/pad, the named special tokens and ``extra`` ones."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    base = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>"}
    tokens = list(dict.fromkeys([*base.values(), *special.values(), *extra]))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=tokens, show_progress=False
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=dict(special), **base)
    fast.padding_side = "left"
    return fast


def _chat_template(user: str, image: str, end: str, assistant: str) -> str:
    """A one-line jinja chat template: ``user`` + content (images as ``image``) + ``end`` per turn."""
    return (
        "{% for message in messages %}" + "{{ '" + user + "' }}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '" + image + "' }}"
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        "{{ '" + end + "' }}{% endfor %}{% if add_generation_prompt %}{{ '" + assistant + "' }}{% endif %}"
    ).replace("\n", "\\n")


def _heads(width: int) -> tuple[int, int]:
    """(head_dim, n_heads) for a width: 32-wide heads for tiny widths, 64-wide from 256 up."""
    head_dim = 32 if width < 256 else 64
    return head_dim, max(1, width // head_dim)


def _round(size: int, multiple: int) -> int:
    return max(multiple, round(size / multiple) * multiple)


def _text(s: TinySize, tok, **extra) -> dict:
    """LLM config fields every family shares; ``extra`` adds ``model_type`` and family fields."""
    head_dim, n_heads = _heads(s.hidden)
    return dict(
        hidden_size=s.hidden,
        intermediate_size=4 * s.hidden,
        num_hidden_layers=s.n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=max(1, n_heads // 2),
        head_dim=head_dim,
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        max_position_embeddings=4096,
        **extra,
    )


def _vit(s: TinySize, model_type: str, image_size: int, patch_size: int = 14, **extra) -> dict:
    _, n_heads = _heads(s.v_hidden)
    return dict(
        model_type=model_type,
        hidden_size=s.v_hidden,
        intermediate_size=4 * s.v_hidden,
        num_hidden_layers=s.vision_layers,
        num_attention_heads=n_heads,
        image_size=image_size,
        patch_size=patch_size,
        **extra,
    )


def _qwen_text(s: TinySize, tok, sections: tuple[int, int, int], **rope) -> dict:
    """Qwen text config; ``sections`` are the M-RoPE (t, h, w) shares of ``head_dim / 2``."""
    head_dim, _ = _heads(s.hidden)
    total = sum(sections)
    mrope = [head_dim // 2 * part // total for part in sections]
    mrope[0] += head_dim // 2 - sum(mrope)
    return _text(s, tok, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope, **rope})


_QWEN_TOKENS = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"}
_QWEN_EXTRA = ("<|vision_start|>", "<|vision_end|>", "<|im_start|>", "<|im_end|>")
_QWEN_TEMPLATE = _chat_template("<|im_start|>user\n", "<|vision_start|><|image_pad|><|vision_end|>", "<|im_end|>\n", "<|im_start|>assistant\n")
_LLAVA_TEMPLATE = _chat_template("USER: ", "<image>\n", " ", "ASSISTANT:")


def _qwen_ids(tok) -> dict:
    ids = tok.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def _qwen_image_processor(side: int, patch: int):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(size={"shortest_edge": side * side, "longest_edge": side * side}, patch_size=patch, merge_size=2)


# ------------------------------------------------------------------------------------- families


def _llava(s: TinySize, siglip: bool):
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    side = _round(s.image_size, 14)
    tok = _tokenizer({"image_token": "<image>"})
    if siglip:
        image_processor = SiglipImageProcessorPil(size={"height": side, "width": side})
        vision = _vit(s, "siglip_vision_model", side, vision_use_head=False)
        strategy, layer, n_extra = "full", -1, 0
    else:
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
        vision = _vit(s, "clip_vision_model", side, projection_dim=s.hidden)
        strategy, layer, n_extra = "default", -2, 1
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy=strategy,
        chat_template=_LLAVA_TEMPLATE,
        num_additional_image_tokens=n_extra,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=_text(s, tok, model_type="llama"),
        image_token_index=tok.image_token_id,
        image_seq_length=(side // 14) ** 2,
        vision_feature_select_strategy=strategy,
        vision_feature_layer=layer,
    )
    return LlavaForConditionalGeneration(config), processor


_builder("llava")(lambda s: _llava(s, siglip=False))
_builder("llava_siglip")(lambda s: _llava(s, siglip=True))


@_builder("llava_next")
def _llava_next(s: TinySize):
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    side = _round(s.image_size, 14)
    pinpoints = [[side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    tok = _tokenizer({"image_token": "<image>"})
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": side}, crop_size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=_LLAVA_TEMPLATE,
        num_additional_image_tokens=1,
    )
    config = LlavaNextConfig(
        vision_config=_vit(s, "clip_vision_model", side, projection_dim=s.hidden),
        text_config=_text(s, tok, model_type="llama"),
        image_token_index=tok.image_token_id,
        image_grid_pinpoints=pinpoints,
        image_seq_length=(side // 14) ** 2,
    )
    return LlavaNextForConditionalGeneration(config), processor


@_builder("qwen2_vl")
def _qwen2_vl(s: TinySize):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from layerprobe.extract.processors import Qwen2VLImageOnlyProcessor

    tok = _tokenizer(_QWEN_TOKENS, _QWEN_EXTRA)
    processor = Qwen2VLImageOnlyProcessor(_qwen_image_processor(_round(s.image_size, 28), 14), tok, chat_template=_QWEN_TEMPLATE)
    _, n_heads = _heads(s.v_hidden)
    vision = dict(depth=s.vision_layers, embed_dim=s.v_hidden, hidden_size=s.hidden, num_heads=n_heads, mlp_ratio=4)
    config = Qwen2VLConfig(text_config=_qwen_text(s, tok, (16, 24, 24)), vision_config=vision, **_qwen_ids(tok))
    return Qwen2VLForConditionalGeneration(config), processor


@_builder("qwen2_5_vl")
def _qwen2_5_vl(s: TinySize):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from layerprobe.extract.processors import Qwen2_5_VLImageOnlyProcessor

    tok = _tokenizer(_QWEN_TOKENS, _QWEN_EXTRA)
    processor = Qwen2_5_VLImageOnlyProcessor(_qwen_image_processor(_round(s.image_size, 28), 14), tok, chat_template=_QWEN_TEMPLATE)
    _, n_heads = _heads(s.v_hidden)
    vision = dict(
        depth=s.vision_layers,
        hidden_size=s.v_hidden,
        intermediate_size=4 * s.v_hidden,
        num_heads=n_heads,
        out_hidden_size=s.hidden,
        window_size=56,
        fullatt_block_indexes=[s.vision_layers - 1],
    )
    config = Qwen2_5_VLConfig(text_config=_qwen_text(s, tok, (16, 24, 24)), vision_config=vision, **_qwen_ids(tok))
    return Qwen2_5_VLForConditionalGeneration(config), processor


@_builder("qwen3_vl")
def _qwen3_vl(s: TinySize):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from layerprobe.extract.processors import Qwen3VLImageOnlyProcessor

    side = _round(s.image_size, 32)
    tok = _tokenizer(_QWEN_TOKENS, _QWEN_EXTRA)
    processor = Qwen3VLImageOnlyProcessor(_qwen_image_processor(side, 16), tok, chat_template=_QWEN_TEMPLATE)
    _, n_heads = _heads(s.v_hidden)
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
    text = _qwen_text(s, tok, (24, 20, 20), mrope_interleaved=True)
    config = Qwen3VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
    return Qwen3VLForConditionalGeneration(config), processor


@_builder("gemma3")
def _gemma3(s: TinySize):
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    side = _round(s.image_size, 28)  # an even patch grid, pooled 2x2 into the image tokens
    n_tokens = (side // 28) ** 2
    tok = _tokenizer(
        {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
        ("<start_of_turn>", "<end_of_turn>"),
    )
    template = _chat_template("<start_of_turn>user\n", "<start_of_image>", "<end_of_turn>\n", "<start_of_turn>model\n")
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": side, "width": side}),
        tokenizer=tok,
        chat_template=template,
        image_seq_length=n_tokens,
    )
    head_dim, _ = _heads(s.hidden)
    text = _text(s, tok, model_type="gemma3_text", query_pre_attn_scalar=head_dim, sliding_window=64)
    ids = tok.convert_tokens_to_ids
    config = Gemma3Config(
        text_config=text,
        vision_config=_vit(s, "siglip_vision_model", side, vision_use_head=False),
        mm_tokens_per_image=n_tokens,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    model = Gemma3ForConditionalGeneration(config)
    with torch.no_grad():  # zero at init: every image token would be zero
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0.0, s.v_hidden**-0.5)
    return model, processor


def _idefics3_like(s: TinySize, smol: bool):
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor, SmolVLMConfig, SmolVLMForConditionalGeneration
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    from layerprobe.extract.processors import SmolVLMImageOnlyProcessor

    side = _round(s.image_size, 28)  # an even patch grid for the 2x2 pixel shuffle
    n_tokens = (side // 28) ** 2
    tok = _tokenizer(
        {
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
        }
    )
    template = _chat_template("User:", "<image>", "<end_of_utterance>\n", "Assistant:")
    sizes = dict(size={"longest_edge": 2 * side}, max_image_size={"longest_edge": side}, do_image_splitting=True)
    image_processor = (SmolVLMImageProcessorPil if smol else Idefics3ImageProcessorPil)(**sizes)
    processor_class = SmolVLMImageOnlyProcessor if smol else Idefics3Processor
    processor = processor_class(image_processor=image_processor, tokenizer=tok, image_seq_len=n_tokens, chat_template=template)
    vision_type = "smolvlm_vision" if smol else "idefics3_vision"
    config_class = SmolVLMConfig if smol else Idefics3Config
    config = config_class(
        vision_config=_vit(s, vision_type, side),
        text_config=_text(s, tok, model_type="llama"),
        image_token_id=tok.image_token_id,
        scale_factor=2,
    )
    model_class = SmolVLMForConditionalGeneration if smol else Idefics3ForConditionalGeneration
    return model_class(config), processor


_builder("idefics3")(lambda s: _idefics3_like(s, smol=False))
_builder("smolvlm")(lambda s: _idefics3_like(s, smol=True))


@_builder("paligemma")
def _paligemma(s: TinySize):
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    side = _round(s.image_size, 14)
    tok = _tokenizer({"image_token": "<image>"})
    image_processor = SiglipImageProcessorPil(size={"height": side, "width": side})
    image_processor.image_seq_length = (side // 14) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)  # adds 1152 tokens: before the config
    text = _text(s, tok, model_type="gemma")
    config = PaliGemmaConfig(
        vision_config=_vit(s, "siglip_vision_model", side, vision_use_head=False, projection_dim=s.hidden),
        text_config=text,
        image_token_index=tok.image_token_id,
        projection_dim=s.hidden,
        hidden_size=s.hidden,
        vocab_size=len(tok),
    )
    return PaliGemmaForConditionalGeneration(config), processor
