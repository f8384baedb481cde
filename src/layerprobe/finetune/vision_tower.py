"""The MLLM's vision tower as a trainable feature extractor: last block, mean-pooled per image as ``vision/mean``.

- **Which forward**: the whole model's own forward on the processor batch, stopped by a forward
  hook on the last vision block that keeps its output and raises. Every family then prepares
  pixels, crops, grids and masks exactly as it does for extraction (no per-family call of the
  tower), and nothing after the last block runs: not the connector, not the LLM. The autograd
  graph up to the block is whole, so the loss back-propagates into the tower.
- **Pooling** is extraction's: the family adapter's :meth:`~layerprobe.extract.model.adapters.base.Adapter.pool_weights`
  says which rows of the block's output are image ``b``'s (CLS left out, crops together, Qwen's
  packed patches split), so the features are the ones ``vision/mean``'s last layer holds and
  P(V,end) probes, with the tower now trained.
- **What trains**: the tower is every module under the tower's root
  (:func:`~layerprobe.finetune.targets.model_parts`; a connector nested in it, such as Qwen's
  merger, is excepted since it never runs here). ``lora`` puts LoRA on its Linears only (peft's
  ``inject_adapter_in_model``, no wrapper, exact names); ``full`` trains all its parameters, kept
  in float32. Everything else is frozen.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from layerprobe import vocab
from layerprobe.finetune.config import FinetuneError
from layerprobe.finetune.targets import Parts, lora_modules, model_parts


class _TowerDone(Exception):
    """Raised by the hook on the last vision block: the rest of the forward is not needed."""


def tower_parts(loaded: Any, adapter: Any) -> Parts:
    """The part roots of ``loaded.model`` (the tower's root is ``parts.vision``)."""
    return model_parts(adapter.paths, loaded.model_type)


def tower_parameters(model: nn.Module, parts: Parts) -> list[tuple[str, nn.Parameter]]:
    """Named parameters that belong to the vision tower (not its nested connector)."""
    return [(n, p) for n, p in model.named_parameters() if parts.part_of(n) == "vision"]


def prepare_tower(model: nn.Module, parts: Parts, mode: str, *, r: int, alpha: int, dropout: float) -> list[nn.Parameter]:
    """Freeze the model, then make the tower trainable as ``mode`` says; return the trainable tensors."""
    model.requires_grad_(False)
    if mode == vocab.FULL:
        params = [p for _, p in tower_parameters(model, parts)]
        for p in params:
            p.data = p.data.float()  # AdamW on float32 master weights; the forward runs under autocast
            p.requires_grad_(True)
        return params
    from peft import LoraConfig, inject_adapter_in_model

    names = sorted(n for n, m in model.named_modules() if isinstance(m, nn.Linear) and parts.part_of(n) == "vision")
    if not names:
        raise FinetuneError(f"no nn.Linear found in the vision tower {parts.vision!r}; use tower 'full' or check the site spec")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules="^(" + "|".join(re.escape(n) for n in names) + ")$")
    inject_adapter_in_model(config, model)
    got = lora_modules(model)
    if tuple(got) != tuple(names):
        raise FinetuneError(f"LoRA landed on other modules than the tower's Linears ({len(got)} vs {len(names)}); this is a bug, please report it")
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


class TowerFeatures:
    """``features(batch) -> (B, D)`` float32: the last vision block's output, mean-pooled per image."""

    def __init__(self, model: nn.Module, adapter: Any) -> None:
        self.model = model
        self.adapter = adapter
        blocks = model.get_submodule(adapter.paths.vision_layers)
        self.n_blocks = len(blocks)
        self.block = blocks[self.n_blocks - 1]

    def __call__(self, batch: dict[str, Any], n_images: int) -> torch.Tensor:
        kept: dict[str, torch.Tensor] = {}

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            kept["h"] = output[0] if isinstance(output, (tuple, list)) else output
            raise _TowerDone

        handle = self.block.register_forward_hook(hook)
        try:
            self.model(**batch, use_cache=False)
        except _TowerDone:
            pass
        finally:
            handle.remove()
        if "h" not in kept:
            raise FinetuneError(f"{self.adapter.model_type}: the last vision block ({self.adapter.paths.vision_layers}) never ran in the forward; give a site spec")
        h = kept["h"]
        w_bn = self.adapter.pool_weights("vision", self.model.config, batch, tuple(h.shape), n_images, h.device)
        count_b1 = w_bn.sum(1, keepdim=True)
        if bool((count_b1 == 0).any()):
            raise FinetuneError(f"{self.adapter.model_type}: some image has no vision tokens in this batch")
        return (w_bn @ h.reshape(-1, h.shape[-1]).float()) / count_b1


def make_head(width: int, n_classes: int, kind: str, hidden: int) -> nn.Module:
    """The pooled head: one Linear, or Linear-ReLU-Linear (float32)."""
    if kind == vocab.MLP:
        return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    return nn.Linear(width, n_classes)
