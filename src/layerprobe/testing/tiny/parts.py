"""What every tiny builder shares: an offline tokenizer, a chat template, and the config fields.

- The tokenizer is a byte-level BPE trained in well under a second on text that ships with Python
  (standard-library sources) plus a few answer words, so nothing is downloaded. Each family's
  special tokens are added as special tokens, the image token as a *named* one
  (``tokenizer.image_token``), as the stock processors expect.
- Heads are 32 wide for tiny widths and 64 wide from 256 up, so the same helpers make the 64-wide
  test models and the 1024-wide benchmark models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from layerprobe.testing.tiny.registry import TinySize

_ANSWER_WORDS = (
    "yes no benign malignant normal abnormal pneumonia tumor glioma meningioma pituitary cat dog "
    "A B C D Answer answer image photo scan X-ray MRI CT the a of is this which class"
)


def _corpus() -> list[str]:
    """Text that ships with Python: a few standard-library sources plus the answer words."""
    import argparse
    import inspect
    import json
    import textwrap

    texts = [inspect.getsource(module) for module in (argparse, textwrap, json.decoder)]
    return texts + [_ANSWER_WORDS] * 20


def tokenizer(special: dict[str, str], extra: tuple[str, ...] = ()):
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


def chat_template(user: str, image: str, end: str, assistant: str) -> str:
    """A one-line jinja chat template: ``user`` + content (images as ``image``) + ``end`` per turn."""
    return (
        "{% for message in messages %}" + "{{ '" + user + "' }}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '" + image + "' }}"
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
        "{{ '" + end + "' }}{% endfor %}{% if add_generation_prompt %}{{ '" + assistant + "' }}{% endif %}"
    ).replace("\n", "\\n")


def heads(width: int) -> tuple[int, int]:
    """(head_dim, n_heads) for a width: 32-wide heads for tiny widths, 64-wide from 256 up."""
    head_dim = 32 if width < 256 else 64
    return head_dim, max(1, width // head_dim)


def round_to(size: int, multiple: int) -> int:
    """``size`` rounded to a multiple of ``multiple`` (at least one multiple): a family's patch grid."""
    return max(multiple, round(size / multiple) * multiple)


def text_config(s: TinySize, tok, **extra) -> dict:
    """LLM config fields every family shares; ``extra`` adds ``model_type`` and family fields."""
    head_dim, n_heads = heads(s.hidden)
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


def vit_config(s: TinySize, model_type: str, image_size: int, patch_size: int = 14, **extra) -> dict:
    """A ViT vision-tower config (CLIP, SigLIP, Idefics3 and SmolVLM towers)."""
    _, n_heads = heads(s.v_hidden)
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
