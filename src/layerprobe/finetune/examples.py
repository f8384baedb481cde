"""Training examples exactly as extraction sees the prompt, with the answer appended and only it trained.

One example = the image + the recipe's instruction rendered through the model's chat template with
the generation prompt (:func:`~layerprobe.extract.model.prompt.render_prompt`, the very text ``extract``
records), encoded by :func:`~layerprobe.extract.model.prompt.encode_batch` as extraction encodes it, then
the target appended: the tokens of the sample's candidate answer, tokenized on their own as
:func:`~layerprobe.extract.model.prompt.candidate_token_ids` does (so the first answer token is the one
extraction's forced choice scores), then the end-of-turn token where the template has one.

- **End of turn**: the template renders an assistant turn holding a marker; the text that follows
  the marker closes the turn. When its first token is a special or added token (``<|im_end|>``,
  ``<end_of_turn>``, ``<end_of_utterance>``, ``</s>``) it is trained; a plain closer (the tiny LLaVA
  template's space) is not a token to teach. Without a chat template (PaliGemma) it is the
  tokenizer's EOS, as PaliGemma's own processor appends to a training suffix.
- **Labels** are -100 on every prompt position (text, image tokens, special tokens) and on padding,
  and the target token ids on the answer + end-of-turn positions. The model shifts them itself.
- **Padding** stays on the left, as in extraction: each row's prompt (without its padding) gets its
  answer appended, and the rows are left-padded again; per-token tensors (``token_type_ids``,
  ``mm_token_type_ids``...) follow the same recipe, image tensors are left as the processor made them.
- **Token types** of answer positions: 0 (text), except PaliGemma (:data:`SUFFIX_TOKEN_TYPE`), whose
  prefix-LM mask attends bidirectionally over type-0 tokens: a type-0 answer would see itself.
  Gemma3 needs its ``token_type_ids`` (image positions = 1) in training; they are kept.
- **No truncation** anywhere: a cut through the image tokens breaks the model ("image features and
  image tokens do not match"), so a sequence is always whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerprobe.extract.data.images import read_image
from layerprobe.extract.model.prompt import candidate_token_ids, encode_batch
from layerprobe.finetune.config import FinetuneError

IGNORE_INDEX = -100
"""Label of a position the loss skips (transformers' convention)."""
SUFFIX_TOKEN_TYPE: dict[str, int] = {"paligemma": 1}
"""model_type -> ``token_type_ids`` value of answer tokens where it is not 0."""
_MARKER = "LAYERPROBEANSWERMARKER"


@dataclass(frozen=True)
class AnswerFormat:
    """What is appended to the prompt for each class."""

    answer_ids: tuple[tuple[int, ...], ...]
    """Token ids of candidate ``i`` (no special tokens), then the end-of-turn id where there is one."""
    first_ids: tuple[int, ...]
    """First token of each candidate: the forced-choice columns (extraction's ``candidate_token_ids``)."""
    end_of_turn: int | None
    """The end-of-turn token id appended after every answer, or None."""


def end_of_turn_id(processor: Any) -> int | None:
    """The token that closes an assistant turn under the processor's chat template (module docstring)."""
    tokenizer = processor.tokenizer
    template = getattr(processor, "chat_template", None)
    if not template:
        return tokenizer.eos_token_id
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": _MARKER}]},
    ]
    try:
        text = processor.apply_chat_template(messages, tokenize=False)
    except Exception:  # a template that cannot render an assistant turn: nothing to append
        return None
    if _MARKER not in text:
        return None
    closer = text.rsplit(_MARKER, 1)[1]
    ids = tokenizer(closer, add_special_tokens=False)["input_ids"] if closer else []
    if not ids:
        return None
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values())
    return int(ids[0]) if int(ids[0]) in special else None


def answer_format(processor: Any, candidates: Sequence[str]) -> AnswerFormat:
    """Target tokens of every class; errors as extraction's (an empty or shared first token)."""
    first_ids = candidate_token_ids(processor, candidates)
    tokenizer = processor.tokenizer
    eot = end_of_turn_id(processor)
    answers = []
    for candidate in candidates:
        ids = tuple(int(i) for i in tokenizer(candidate, add_special_tokens=False)["input_ids"])
        answers.append(ids + ((eot,) if eot is not None else ()))
    return AnswerFormat(answer_ids=tuple(answers), first_ids=first_ids, end_of_turn=eot)


class ImageSamples:
    """Map-style dataset: index -> (RGB image, class index) of the given samples."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int]) -> None:
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return read_image(self.paths[index]).image, self.labels[index]


class Collator:
    """Images + classes -> model inputs with answer-only labels (see the module docstring)."""

    def __init__(self, processor: Any, prompt: str, answers: AnswerFormat, model_type: str, float_dtype: Any = None) -> None:
        self.processor = processor
        self.float_dtype = float_dtype
        """Floating inputs (pixels) are cast to this dtype (the model's), as extraction casts them."""
        self.prompt = prompt
        self.answers = answers
        self.suffix_type = SUFFIX_TOKEN_TYPE.get(model_type, 0)

    def __call__(self, items: Sequence[tuple[Any, int]]) -> Any:
        import torch

        batch = encode_batch(self.processor, [image for image, _ in items], self.prompt)
        ids_bt, keep_bt = batch["input_ids"], batch["attention_mask"].bool()
        if not bool(keep_bt[:, -1].all()):
            raise FinetuneError("the processor did not pad on the left; a tokenizer with padding_side='left' is needed")
        per_token = [k for k, v in batch.items() if torch.is_tensor(v) and v.shape == ids_bt.shape and k not in ("input_ids", "attention_mask")]
        rows = []
        for b, (_, label) in enumerate(items):
            answer = torch.tensor(self.answers.answer_ids[label], dtype=ids_bt.dtype)
            prompt_ids = ids_bt[b][keep_bt[b]]
            row = {"input_ids": torch.cat([prompt_ids, answer]),
                   "labels": torch.cat([torch.full_like(prompt_ids, IGNORE_INDEX), answer])}
            for key in per_token:
                prompt_part = batch[key][b][keep_bt[b]]
                row[key] = torch.cat([prompt_part, torch.full((len(answer),), self.suffix_type, dtype=prompt_part.dtype)])
            rows.append(row)
        width = max(len(r["input_ids"]) for r in rows)
        pad_id = self.processor.tokenizer.pad_token_id or 0
        fills = {"input_ids": pad_id, "labels": IGNORE_INDEX, **{k: 0 for k in per_token}}
        for key, fill in fills.items():
            batch[key] = torch.stack([_left_pad(r[key], width, fill) for r in rows])
        batch["attention_mask"] = torch.stack([_left_pad(torch.ones(len(r["input_ids"]), dtype=torch.long), width, 0) for r in rows])
        if self.float_dtype is not None:
            for key, value in batch.items():
                if torch.is_tensor(value) and value.is_floating_point():
                    batch[key] = value.to(self.float_dtype)
        return batch


def _left_pad(x_t: Any, width: int, fill: int) -> Any:
    import torch

    return torch.cat([torch.full((width - len(x_t),), fill, dtype=x_t.dtype), x_t])
