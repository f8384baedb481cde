"""Training examples exactly as extraction sees the prompt, with the answer appended and only it trained.

One example = the image + the recipe's instruction rendered through the model's chat template with
the generation prompt (:func:`~layerprobe.extract.model.prompt.render_prompt`, the very text ``extract``
records), encoded by :func:`~layerprobe.extract.model.prompt.encode_batch` as extraction encodes it, then
the target appended: the tokens of the sample's candidate answer, tokenized on their own as
:func:`~layerprobe.extract.model.prompt.candidate_token_ids` does (so the first answer token is the one
extraction's forced choice scores), then the end tokens (:attr:`AnswerFormat.end_ids`): the
template's end-of-turn token where it has one, and a token generation stops on.

- **End of turn**: the template renders an assistant turn holding a marker; the text that follows
  the marker closes the turn. When its first token is a special or added token (``<|im_end|>``,
  ``<end_of_turn>``, ``<end_of_utterance>``, ``</s>``) it is trained; a plain closer (LLaVA-1.5's
  template closes the turn with a space) is not a token to teach. Without a chat template
  (PaliGemma) it is the tokenizer's EOS, as PaliGemma's own processor appends to a training suffix.
- **A stop token, always last**: the generated-answer P_final decodes greedily until the model
  emits one of its generation config's ``eos_token_id`` (an int or a list:
  :func:`~layerprobe.extract.generation.generation_stop_ids`, the very ids extraction's
  ``Capturer._generate`` passes to ``generate``). A target that ends in no such token teaches the answer's first tokens but never to
  stop: measured in the demo, tiny fine-tuned models answered ``Tumor`` then ran on for the whole
  token budget, and the decoded text (special tokens skipped) read ``Tumormunge...``, which names no
  candidate (generated P_final 0.50-0.58 where forced choice was 1.00). So when the end-of-turn
  token is not a stop id (a plain-text closer; or a checkpoint whose generation config leaves its
  own turn closer out, as the tiny test models do), the tokenizer's EOS is appended, as SFT stacks
  end every target with the token that stops decoding (TRL appends the EOS to plain-text
  completions); where the EOS is no stop id either, the generation config's first stop id is.
  Released Qwen2-VL and Gemma3 checkpoints list their turn closer among the stop ids, so they
  train exactly their template's text.
- **Labels** are -100 on every prompt position (text, image tokens, special tokens) and on padding,
  and the target token ids on the answer + end positions. The model shifts them itself.
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
    """Token ids of candidate ``i`` (no special tokens), then :attr:`end_ids`."""
    first_ids: tuple[int, ...]
    """First token of each candidate: the forced-choice columns (extraction's ``candidate_token_ids``)."""
    end_of_turn: int | None
    """The template's end-of-turn token id (:func:`end_of_turn_id`), or None for a plain-text closer."""
    end_ids: tuple[int, ...] = ()
    """Tokens appended after every answer: ``end_of_turn`` where there is one, then a stop id of
    generation unless ``end_of_turn`` is one (module docstring)."""


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


def end_ids(eot: int | None, stop_ids: Sequence[int], eos: int | None) -> tuple[int, ...]:
    """What follows every answer: ``eot`` (if any), then a stop id unless ``eot`` is one (module docstring)."""
    end = () if eot is None else (eot,)
    if not stop_ids or (end and end[-1] in stop_ids):  # no stop id at all: nothing to teach but the template
        return end
    return end + (eos if eos in stop_ids else stop_ids[0],)


def answer_format(processor: Any, candidates: Sequence[str], stop_ids: Sequence[int] | None = None) -> AnswerFormat:
    """Target tokens of every class; errors as extraction's (an empty or shared first token).
    ``stop_ids``: the ids generation stops on (:func:`~layerprobe.extract.generation.generation_stop_ids`); None = the
    tokenizer's EOS."""
    first_ids = candidate_token_ids(processor, candidates)
    tokenizer = processor.tokenizer
    eot = end_of_turn_id(processor)
    eos = tokenizer.eos_token_id
    stops = tuple(stop_ids) if stop_ids is not None else (() if eos is None else (int(eos),))
    end = end_ids(eot, stops, eos)
    answers = []
    for candidate in candidates:
        ids = tuple(int(i) for i in tokenizer(candidate, add_special_tokens=False)["input_ids"])
        answers.append(ids + end)
    return AnswerFormat(answer_ids=tuple(answers), first_ids=first_ids, end_of_turn=eot, end_ids=end)


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
