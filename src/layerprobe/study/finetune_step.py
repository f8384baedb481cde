"""The fine-tuning arms as one step kind: LoRA SFT through ``layerprobe.finetune`` when it is there.

``sft-frozen`` and ``sft-lora`` train a LoRA adapter on the dataset (vision tower frozen, or adapted
too) with ``run_finetune(FinetuneConfig(...))``; the arm's ``settings`` table passes further
``FinetuneConfig`` fields (epochs, learning rate...). The extract step of the arm then loads the
adapter. ``vision-ce`` is planned (so the dry run shows the study's full size) but refused at run
time until its trainer exists.

``layerprobe.finetune`` is imported only when a step runs, so a study of base arms never needs it;
:func:`finetune_available` lets the runner refuse a study that needs it before any step starts.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from layerprobe import vocab
from layerprobe.study.errors import StudyError
from layerprobe.study.spec import DatasetEntry, ModelEntry
from layerprobe.study.steps import Step

VISION_TOWER = {vocab.ARM_SFT_FROZEN: "frozen", vocab.ARM_SFT_LORA: "lora"}
"""Arm kind -> ``FinetuneConfig.vision_tower`` for the LoRA SFT arms."""


def finetune_available() -> bool:
    """True when this install has ``layerprobe.finetune``."""
    try:
        return importlib.util.find_spec("layerprobe.finetune") is not None
    except ImportError:
        return False


@dataclass(frozen=True)
class FinetuneStep(Step):
    """One adapter: LoRA SFT of a model on a dataset (``run_finetune``)."""

    kind: ClassVar[str] = vocab.STEP_FINETUNE
    model: ModelEntry = None  # type: ignore[assignment]
    dataset: DatasetEntry = None  # type: ignore[assignment]
    arm_kind: str = vocab.ARM_SFT_FROZEN
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Further ``FinetuneConfig`` fields from the arm's ``settings`` table."""
    device: str = "auto"
    n_gpus: int = 1

    def run(self) -> list[str]:
        if self.arm_kind not in VISION_TOWER:
            raise StudyError(f"arm kind {self.arm_kind!r} has no trainer yet; drop it from the study's arms for now")
        if not finetune_available():
            raise StudyError("the SFT arms need layerprobe.finetune, which this install lacks; update layerprobe or drop the arm")
        if self.out.exists():  # run_finetune publishes the adapter folder by one rename: it is complete
            return []
        from layerprobe.finetune import FinetuneConfig, run_finetune

        run_finetune(FinetuneConfig(
            model=self.model.source, dataset=self.dataset.spec, split_file=self.dataset.split_file, out=self.out, prompt=self.dataset.prompt,
            candidates=self.dataset.candidates, revision=self.model.revision, trust_remote_code=self.model.trust_remote_code,
            site_spec=self.model.site_spec, vision_tower=VISION_TOWER[self.arm_kind], device=self.device,
            **{"progress": False, **dict(self.settings)},
        ))  # fmt: skip
        return []

    def gpus(self) -> int:
        return self.n_gpus
