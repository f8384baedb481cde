"""LoRA targets by full module path, for every tiny family.

``frozen``: no LoRA module anywhere in the vision tower, and after a few training steps every
vision-tower parameter is bit-identical to the base model's (while LoRA elsewhere did move).
``lora``: LoRA modules in the vision tower. ``lm_head`` is never adapted in either mode.
"""

from __future__ import annotations

import pytest
import torch

from layerprobe import vocab
from layerprobe.testing.images import make_dataset
from layerprobe.testing import TINY_FAMILIES
from layerprobe.finetune.config import FinetuneConfig
from layerprobe.finetune.run import prepare, resolve_task
from layerprobe.finetune.targets import lora_modules

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synthetic"), n_per_class=4, size=56)


def _prepared(family, tiny_checkpoint, small_set, tmp_path, vision_tower):
    cfg = FinetuneConfig(model=str(tiny_checkpoint(family)), dataset=str(small_set), out=tmp_path / "adapter", vision_tower=vision_tower,
                         dtype="float32", device="cpu", batch_size=2, max_steps=2, learning_rate=1e-2, progress=False)
    return prepare(cfg, resolve_task(cfg), tmp_path / "checkpoints")


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_frozen_vision_tower_is_untouched(family, tiny_checkpoint, small_set, tmp_path):
    run = _prepared(family, tiny_checkpoint, small_set, tmp_path, vocab.FROZEN)
    model, parts = run.loaded.model, run.setup.plan.parts
    adapted = lora_modules(model)
    assert adapted and not [n for n in adapted if parts.part_of(n) == "vision"]
    assert "lm_head" not in adapted
    vision_before = {n: p.detach().clone() for n, p in model.named_parameters() if parts.part_of(n.replace(".base_layer", "")) == "vision"}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    assert vision_before and not any(p.requires_grad for n, p in model.named_parameters() if n in vision_before)
    run.setup.trainer.train()
    vision_after = {n: p for n, p in model.named_parameters() if n in vision_before}
    assert all(torch.equal(vision_before[n], vision_after[n]) for n in vision_before)
    moved = [n for n, p in model.named_parameters() if n in lora_before and not torch.equal(lora_before[n], p)]
    assert moved, "training did not change any LoRA weight: the check above would be vacuous"


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_lora_vision_tower_gets_adapters(family, tiny_checkpoint, small_set, tmp_path):
    run = _prepared(family, tiny_checkpoint, small_set, tmp_path, vocab.LORA)
    adapted, parts = lora_modules(run.loaded.model), run.setup.plan.parts
    by_part = {part: [n for n in adapted if parts.part_of(n) == part] for part in ("vision", "llm")}
    assert by_part["vision"] and by_part["llm"]
    assert "lm_head" not in adapted and all(parts.part_of(n) is not None for n in adapted)
    linears = {n for n, m in run.loaded.model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith(("lora_A.default", "lora_B.default"))}
    vision_linears = {n.removesuffix(".base_layer") for n in linears if parts.part_of(n) == "vision"}
    assert set(by_part["vision"]) == vision_linears  # every Linear of the tower, not only the suffix-matched ones
