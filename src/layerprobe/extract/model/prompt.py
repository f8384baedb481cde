"""Prompts and candidate answers, under the model's own chat template and tokenizer.

- :func:`render_prompt` places the dataset's instruction after one image in a single user turn of
  the processor's chat template (with the generation prompt, so the next token is the answer).
  Without a template it falls back to the adapter's ``plain_prompt`` (``"{image}\\n{instruction}"``,
  PaliGemma: ``"{image}{instruction}"``). The rendered text is what the store records.
- :func:`candidate_token_ids` maps each candidate answer to its *first* token under the model's
  tokenizer (no special tokens added), exactly as written: a template whose answer follows a space
  ("ASSISTANT:") may want candidates with a leading space (" Yes"). Two candidates sharing a first
  token could not be told apart by the logits, so that is an error naming both.
- :func:`encode_batch` runs the processor on a batch of images with the rendered prompt, padding
  on the left, and drops what the processor returns for training only (PaliGemma's ``labels``);
  everything else (``token_type_ids``, ``image_grid_thw``, ``pixel_attention_mask``...) is kept
  because the model's forward needs it. It is picklable-friendly (plain function) for DataLoader
  workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from layerprobe.errors import ExtractError

TRAINING_ONLY_KEYS = ("labels",)


def render_prompt(processor: Any, instruction: str, *, plain_prompt: str = "{image}\n{instruction}") -> str:
    """The full prompt text for one image + ``instruction`` (chat template when the processor has one)."""
    if not instruction.strip():
        raise ExtractError("the instruction is empty; give the question the model should answer about each image")
    template = getattr(processor, "chat_template", None)
    if template:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]
        try:
            return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as err:  # jinja and template-specific errors have no common base class
            raise ExtractError(f"the processor's chat template cannot render an image + text turn ({type(err).__name__}: {err})") from None
    image = getattr(processor, "image_token", None) or getattr(processor.tokenizer, "image_token", None)
    if not image:
        raise ExtractError("the processor has neither a chat template nor an image token; give a prompt that contains the image placeholder")
    return plain_prompt.format(image=image, instruction=instruction)


def candidate_token_ids(tokenizer: Any, candidates: Sequence[str]) -> tuple[int, ...]:
    """First token id of each candidate under ``tokenizer`` (a processor is accepted too)."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    if len(candidates) < 2:
        raise ExtractError(f"need at least two candidate answers, got {list(candidates)}")
    ids: list[int] = []
    seen: dict[int, str] = {}
    for candidate in candidates:
        tokens = tokenizer(candidate, add_special_tokens=False)["input_ids"]
        if not tokens:
            raise ExtractError(f"candidate answer {candidate!r} encodes to no tokens; use a non-empty answer")
        first = int(tokens[0])
        if first in seen:
            shared = tokenizer.convert_ids_to_tokens(first)
            raise ExtractError(
                f"candidates {seen[first]!r} and {candidate!r} share their first token {shared!r} (id {first}); "
                "reword one of them so each starts with its own token"
            )
        seen[first] = candidate
        ids.append(first)
    return tuple(ids)


def encode_batch(processor: Any, images: Sequence[Any], prompt: str) -> Any:
    """Processor outputs (``BatchFeature`` of torch tensors) for ``images`` with one ``prompt`` each."""
    if not images:
        raise ExtractError("encode_batch got no images")
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    batch = processor(images=[[image] for image in images], text=[prompt] * len(images), padding=True, return_tensors="pt")
    for key in TRAINING_ONLY_KEYS:
        batch.pop(key, None)
    return batch
