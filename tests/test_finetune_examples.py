"""Answer-only training examples, token by token, for every tiny family.

Each row must be: left padding, then exactly the tokens extraction's prompt encodes to (image tokens
included), then the candidate's tokens (+ the end-of-turn token where the template has one).
Labels are -100 on every padding, prompt and image position and the target ids on the answer.
Every target ends with a token extraction's greedy generation stops on, checked through the
extraction's own generate call.
"""

from __future__ import annotations

import pytest
import torch

from layerprobe.extract.model.adapters import get_adapter
from layerprobe.extract.model.loading import load_model
from layerprobe.extract.model.prompt import candidate_token_ids, encode_batch, render_prompt
from layerprobe.testing.images import CANDIDATES, INSTRUCTION
from layerprobe.testing import TINY_FAMILIES
from layerprobe.extract.generation import generation_stop_ids
from layerprobe.finetune.examples import IGNORE_INDEX, SUFFIX_TOKEN_TYPE, Collator, answer_format

torch.set_num_threads(1)

EXPECTED_END_OF_TURN = {
    "qwen2_vl": "<|im_end|>", "qwen2_5_vl": "<|im_end|>", "qwen3_vl": "<|im_end|>", "gemma3": "<end_of_turn>",
    "idefics3": "<end_of_utterance>", "smolvlm": "<end_of_utterance>", "paligemma": "<eos>",
}
"""Families whose tiny template closes a turn with a special token; the tiny LLaVA templates close with a space."""


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_labels_are_the_answer_only(family, tiny_checkpoint, tiny_images):
    loaded = load_model(tiny_checkpoint(family), dtype="float32")
    processor = loaded.processor
    prompt = render_prompt(processor, INSTRUCTION, plain_prompt=get_adapter(loaded).plain_prompt)
    answers = answer_format(processor, CANDIDATES, generation_stop_ids(loaded.model))
    assert answers.first_ids == candidate_token_ids(processor, CANDIDATES)
    eot_token = EXPECTED_END_OF_TURN.get(family)
    assert answers.end_of_turn == (None if eot_token is None else processor.tokenizer.convert_tokens_to_ids(eot_token))
    assert answers.end_ids[: 1 if eot_token else 0] == (() if eot_token is None else (answers.end_of_turn,))
    classes = [2, 0, 1]
    batch = Collator(processor, prompt, answers, loaded.model_type)(list(zip(tiny_images, classes)))
    image_id = get_adapter(loaded).image_token_id(loaded.model.config)
    for b, label in enumerate(classes):
        alone = encode_batch(processor, [tiny_images[b]], prompt)  # what extraction feeds for this image
        prompt_ids = alone["input_ids"][0][alone["attention_mask"][0].bool()].tolist()
        target = list(processor.tokenizer(CANDIDATES[label], add_special_tokens=False)["input_ids"])
        target += list(answers.end_ids)  # the end-of-turn token (if any), then a stop token unless it is one
        ids, labels, keep = batch["input_ids"][b].tolist(), batch["labels"][b].tolist(), batch["attention_mask"][b].tolist()
        n_pad = len(ids) - len(prompt_ids) - len(target)
        assert keep == [0] * n_pad + [1] * (len(prompt_ids) + len(target))
        assert ids[n_pad:] == prompt_ids + target
        assert labels == [IGNORE_INDEX] * (n_pad + len(prompt_ids)) + target
        image_positions = [t for t, token in enumerate(ids) if token == image_id]
        assert image_positions and all(labels[t] == IGNORE_INDEX for t in image_positions)
        assert labels[n_pad + len(prompt_ids)] == answers.first_ids[label]  # the token forced choice scores
        for key in ("token_type_ids", "mm_token_type_ids"):
            if key in batch:
                types = batch[key][b].tolist()
                assert types[n_pad : n_pad + len(prompt_ids)] == alone[key][0][alone["attention_mask"][0].bool()].tolist()
                assert types[n_pad + len(prompt_ids) :] == [SUFFIX_TOKEN_TYPE.get(loaded.model_type, 0)] * len(target)


def test_the_collated_batch_trains(tiny_checkpoint, tiny_images):
    """A forward with the collated labels gives a finite loss whose gradient reaches only through answer positions."""
    loaded = load_model(tiny_checkpoint("gemma3"), dtype="float32")
    processor = loaded.processor
    prompt = render_prompt(processor, INSTRUCTION)
    batch = Collator(processor, prompt, answer_format(processor, CANDIDATES), loaded.model_type)(list(zip(tiny_images, [0, 1, 2])))
    loaded.model.train()
    loss = loaded.model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in loaded.model.parameters() if p.grad is not None)


class _Force:
    """Logits processor: the next ``target`` token gets all the probability, then the model is free."""

    def __init__(self, prompt_len: int, target: list[int]) -> None:
        self.prompt_len, self.target = prompt_len, target

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        if step < len(self.target):
            scores = torch.full_like(scores, -float("inf"))
            scores[:, self.target[step]] = 0.0
        return scores


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_target_ends_with_a_token_generation_stops_on(family, tiny_checkpoint, tiny_images, monkeypatch):
    """A model that emits its training target exactly stops right after it in extraction's greedy
    decoding (``Capturer.run(max_new_tokens=...)``, the generated-answer P_final), and the decoded text
    is the candidate itself: the parser reads it."""
    from transformers import LogitsProcessorList

    from layerprobe.answers import parse_answer
    from layerprobe.extract.capture import Capturer
    from layerprobe.extract.generation import answer_decoder

    loaded = load_model(tiny_checkpoint(family), dtype="float32")
    adapter = get_adapter(loaded)
    prompt = render_prompt(loaded.processor, INSTRUCTION, plain_prompt=adapter.plain_prompt)
    answers = answer_format(loaded.processor, CANDIDATES, generation_stop_ids(loaded.model))
    capturer = Capturer(loaded, adapter, answers.first_ids, out_dtype=torch.float32)
    generate = loaded.model.generate
    inputs = encode_batch(loaded.processor, [tiny_images[1]], prompt)
    for label, target in enumerate(answers.answer_ids):
        force = _Force(inputs["input_ids"].shape[1], list(target))
        monkeypatch.setattr(loaded.model, "generate", lambda **kw: generate(**kw, logits_processor=LogitsProcessorList([force])))
        generated = capturer.run(inputs, max_new_tokens=len(target) + 4).generated_ids
        assert generated[0].tolist() == list(target), f"{family}: decoding did not stop after the target's last token"
        (text,) = answer_decoder(loaded.processor)(generated)
        assert parse_answer(text, CANDIDATES) == label, f"{family}: {text!r}"


@pytest.mark.parametrize("eot, stop_ids, eos, expected", [
    (8, (8, 2), 2, (8,)),     # Qwen2-VL, Gemma3 as released: the turn closer is a stop id, nothing more
    (8, (2,), 2, (8, 2)),     # a closer generation does not stop on: EOS after it (the tiny Qwen models)
    (None, (2,), 2, (2,)),    # a plain-text closer (LLaVA-1.5's space): EOS
    (None, (5, 7), 2, (5,)),  # an EOS that is no stop id: the generation config's first stop id
    (8, (), 2, (8,)),         # no stop id at all: only the template's text to teach
])  # fmt: skip
def test_end_ids_follow_the_generation_configs_stop_ids(eot, stop_ids, eos, expected):
    from layerprobe.finetune.examples import end_ids

    assert end_ids(eot, stop_ids, eos) == expected


def test_stop_ids_read_an_int_or_a_list():
    from types import SimpleNamespace

    assert generation_stop_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[106, 1]))) == (106, 1)
    assert generation_stop_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=2))) == (2,)
    assert generation_stop_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=None))) == ()
