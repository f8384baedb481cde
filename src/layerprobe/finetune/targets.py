"""Which modules LoRA adapts, chosen by their full module path from the family adapter's site paths.

A model's modules fall into three parts, read off the family adapter's :class:`SitePaths`:
- the **connector**: everything under ``paths.connector`` (plus the family's extra connector
  modules, :data:`EXTRA_CONNECTORS`: Qwen3-VL's deepstack mergers also project vision features
  into the LLM);
- the **vision tower**: everything else under the tower's root, the child of the deepest module
  that holds both the vision blocks and the LLM (``model.vision_tower``, ``model.visual``,
  ``model.vision_model``): its embeddings, blocks, norms and heads, not only the block list;
- the **LLM**: everything under the parent of ``paths.llm_layers`` (``model.language_model``,
  ``model.text_model``): embeddings are no Linear, so that is every projection of every layer.
``lm_head`` and any Linear outside these parts are never adapted.

Why not a suffix list: peft matches ``target_modules=["q_proj", ...]`` against the *end* of a
module's name, and SigLIP and CLIP towers also have ``q_proj/k_proj/v_proj`` and Qwen2.5-VL's vision
MLP ``gate_proj/up_proj/down_proj``, so a suffix list silently adapts the vision tower (field notes).
Here the targets are exact full names, given to peft as one anchored regular expression, and after
injection :func:`check_injection` compares the modules peft wrapped with the plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from layerprobe import vocab
from layerprobe.finetune.config import FinetuneError

if TYPE_CHECKING:
    from layerprobe.extract.model.adapters import SitePaths

EXTRA_CONNECTORS: dict[str, tuple[str, ...]] = {"qwen3_vl": ("model.visual.deepstack_merger_list",)}
"""model_type -> module paths that belong to the connector besides ``SitePaths.connector``."""


@dataclass(frozen=True)
class Parts:
    """Module-path prefixes of the three parts of one model."""

    vision: str
    """Root of the vision tower (its connector, where nested inside, excepted)."""
    connectors: tuple[str, ...]
    """Roots of the connector."""
    llm: str
    """Root of the LLM's decoder stack (``lm_head`` lies outside it)."""

    def part_of(self, name: str) -> str | None:
        """``"connector"``, ``"vision"``, ``"llm"`` or None for a module or parameter name."""
        if any(_under(name, root) for root in self.connectors):
            return "connector"
        if _under(name, self.vision):
            return "vision"
        if _under(name, self.llm):
            return "llm"
        return None


@dataclass(frozen=True)
class TargetPlan:
    """What peft is asked to do."""

    lora: tuple[str, ...]
    """Full names of the ``nn.Linear`` modules that get LoRA, sorted."""
    full: tuple[str, ...]
    """Module paths trained in full (peft ``modules_to_save``): the connector when ``connector=full``."""
    parts: Parts
    """The part boundaries the plan was made from."""

    def regex(self) -> str:
        """One anchored alternation of the exact names (peft full-matches a string target)."""
        return "(?:" + "|".join(re.escape(name) for name in self.lora) + ")"


def _under(name: str, root: str) -> bool:
    return name == root or name.startswith(root + ".")


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def model_parts(paths: SitePaths, model_type: str) -> Parts:
    """The three part roots from a family adapter's site paths (see the module docstring)."""
    vision_bits, llm_bits = paths.vision_layers.split("."), paths.llm_layers.split(".")
    common = 0
    while common < min(len(vision_bits), len(llm_bits)) and vision_bits[common] == llm_bits[common]:
        common += 1
    if common >= len(vision_bits) - 1:
        raise FinetuneError(f"{model_type}: the vision blocks {paths.vision_layers!r} sit inside the LLM {paths.llm_layers!r}; a site spec must name separate modules")
    vision = ".".join(vision_bits[: common + 1])
    connectors = (paths.connector, *EXTRA_CONNECTORS.get(model_type, ()))
    return Parts(vision=vision, connectors=connectors, llm=_parent(paths.llm_layers) or paths.llm_layers)


def plan_targets(model: Any, paths: SitePaths, model_type: str, *, vision_tower: str, connector: str) -> TargetPlan:
    """The LoRA targets of ``model`` for the given vision-tower and connector modes."""
    import torch

    parts = model_parts(paths, model_type)
    wanted = {"llm": True, "vision": vision_tower == vocab.LORA, "connector": connector == vocab.LORA}
    names = sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and wanted.get(parts.part_of(n) or "", False))
    if not any(parts.part_of(n) == "llm" for n in names):
        raise FinetuneError(f"{model_type}: no nn.Linear found under the LLM {parts.llm!r}; check the site spec's llm_layers")
    full = tuple(root for root in parts.connectors if connector == vocab.FULL and _module_exists(model, root))
    return TargetPlan(lora=tuple(names), full=full, parts=parts)


def _module_exists(model: Any, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def lora_modules(model: Any) -> tuple[str, ...]:
    """Names (relative to the transformers model) of the modules that carry a LoRA adapter, sorted."""
    from peft.tuners.lora import LoraLayer

    return tuple(sorted(n for n, m in model.named_modules() if isinstance(m, LoraLayer)))


def check_injection(model: Any, plan: TargetPlan) -> None:
    """Raise unless peft wrapped exactly the planned modules (a guard against name-matching surprises)."""
    got = lora_modules(model)
    if got != plan.lora:
        extra = sorted(set(got) - set(plan.lora))[:3]
        missing = sorted(set(plan.lora) - set(got))[:3]
        raise FinetuneError(f"LoRA landed on other modules than planned (unplanned {extra}, missing {missing}); this is a bug, please report it")
