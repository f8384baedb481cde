"""Answer-only training examples, token by token, for every tiny family.

Each row must be: left padding, then exactly the tokens extraction's prompt encodes to (image tokens
included), then the candidate's tokens (+ the end-of-turn token where the template has one).
Labels are -100 on every padding, prompt and image position and the target ids on the answer.
"""

from __future__ import annotations

import pytest
import torch

from layerprobe.extract.model.adapters import get_adapter
from layerprobe.extract.model.loading import load_model
from layerprobe.extract.model.prompt import candidate_token_ids, encode_batch, render_prompt
from layerprobe.testing.images import CANDIDATES, INSTRUCTION
from layerprobe.testing import TINY_FAMILIES
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
    answers = answer_format(processor, CANDIDATES)
    assert answers.first_ids == candidate_token_ids(processor, CANDIDATES)
    eot_token = EXPECTED_END_OF_TURN.get(family)
    assert answers.end_of_turn == (None if eot_token is None else processor.tokenizer.convert_tokens_to_ids(eot_token))
    classes = [2, 0, 1]
    batch = Collator(processor, prompt, answers, loaded.model_type)(list(zip(tiny_images, classes)))
    image_id = get_adapter(loaded).image_token_id(loaded.model.config)
    for b, label in enumerate(classes):
        alone = encode_batch(processor, [tiny_images[b]], prompt)  # what extraction feeds for this image
        prompt_ids = alone["input_ids"][0][alone["attention_mask"][0].bool()].tolist()
        target = list(processor.tokenizer(CANDIDATES[label], add_special_tokens=False)["input_ids"])
        target += [] if eot_token is None else [answers.end_of_turn]
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
