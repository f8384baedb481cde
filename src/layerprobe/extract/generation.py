"""The generated answer of each sample: how many tokens to decode, and how ids become text.

``ExtractConfig.answer_tokens > 0`` makes the capture pass go on decoding greedily
(``Capturer.run(max_new_tokens=...)``); the runner turns each sample's new tokens into text with the
processor's tokenizer (special tokens removed, stripped) and stores it in ``samples/answer_text``.
The text is parsed into the generated-answer P_final later, by the probe sweep
(``layerprobe.answers.parse_answer``), so the store keeps what the model said, not a verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Answers(NamedTuple):
    """How a batch's generated answers are made: ``tokens`` of greedy decoding (0: none), decoded by ``decode``."""

    tokens: int
    decode: Callable[[Any], list[str]] | None = None
    """``generated_ids (B, T)`` -> B texts (special tokens removed, stripped)."""


def answer_decoder(processor: Any) -> Callable[[Any], list[str]]:
    """Generated token ids -> texts with the processor's tokenizer (special tokens removed, stripped)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    return lambda ids_bt: [t.strip() for t in tokenizer.batch_decode(ids_bt.cpu(), skip_special_tokens=True)]


def generation_stop_ids(model: Any) -> tuple[int, ...]:
    """The token ids greedy decoding stops on: ``model.generation_config.eos_token_id`` (an int or a
    list; () when none). ``Capturer._generate`` decodes with these and fine-tuning ends every target
    with one of them, so both read them here."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return ()
    return tuple(int(i) for i in eos) if isinstance(eos, (list, tuple)) else (int(eos),)
