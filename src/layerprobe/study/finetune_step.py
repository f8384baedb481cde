"""The fine-tuning arms as steps: LoRA SFT (``run_finetune``) and the vision-tower CE baseline (``run_vision_ce``).

- ``sft-frozen`` / ``sft-lora``: a :class:`FinetuneStep` trains a LoRA adapter on the dataset
  (vision tower frozen, or adapted too); the arm's extract step then loads the adapter.
- ``vision-ce``: a :class:`VisionCEStep` trains the vision tower with a classification head and
  writes one results-table row (kind ``vision_ce``, the paper's Table 3 baseline), which the
  dataset's fhs step and the report read beside the probe tables. Nothing is extracted or probed
  for this arm: the row is its whole output.

An arm's ``settings`` table gives further fields of its trainer's config (``FinetuneConfig`` or
``VisionCEConfig``: epochs, learning_rate, max_steps, ...). The fields the study sets itself
(:data:`SET_BY_STUDY`) are refused there. :func:`trainer_config` builds the config, both when the
study file is read (with placeholder paths, so a misspelt or out-of-range setting fails before any
step runs) and when the step runs.

``layerprobe.finetune`` and its torch imports are loaded only when a step runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from layerprobe import vocab
from layerprobe.errors import LayerprobeError
from layerprobe.study.errors import StudyError
from layerprobe.study.spec import DatasetEntry, ModelEntry
from layerprobe.study.steps import Step

VISION_TOWER = {vocab.ARM_SFT_FROZEN: "frozen", vocab.ARM_SFT_LORA: "lora"}
"""Arm kind -> ``FinetuneConfig.vision_tower`` for the LoRA SFT arms."""
SET_BY_STUDY = ("model", "dataset", "out", "prompt", "candidates", "revision", "trust_remote_code", "site_spec",
                "split_file", "device", "progress", "vision_tower")  # fmt: skip
"""Trainer-config fields the study fills from its models, datasets and ``[extract] device``."""


def trainer_config(kind: str, settings: Mapping[str, Any], **given: Any) -> Any:
    """The config of arm ``kind``'s trainer: the study's ``given`` fields plus the arm's ``settings``.

    A setting that is not a field of the config, one the study sets itself, or a value the config
    refuses is a one-line StudyError naming it.
    """
    from layerprobe.finetune.config import FinetuneConfig
    from layerprobe.finetune.vision_ce_config import VisionCEConfig

    if kind not in (*VISION_TOWER, vocab.ARM_VISION_CE):
        raise StudyError(f"arm kind {kind!r} has no trainer; use one of: {', '.join(a for a in vocab.ARMS if a != vocab.ARM_BASE)}")
    cls = VisionCEConfig if kind == vocab.ARM_VISION_CE else FinetuneConfig
    allowed = sorted(f.name for f in fields(cls) if f.init and f.name not in SET_BY_STUDY)
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise StudyError(f"arm {kind}: settings key {unknown[0]!r} is not a setting of {cls.__name__}; use one of: {', '.join(allowed)}")
    if kind in VISION_TOWER:
        given = {**given, "vision_tower": VISION_TOWER[kind]}
    try:
        return cls(**{"progress": False, **given, **settings})
    except LayerprobeError as err:
        raise StudyError(f"arm {kind} settings: {err}") from None
    except TypeError as err:  # a value of the wrong type, e.g. epochs = "2"
        raise StudyError(f"arm {kind} settings have a value of the wrong type ({err}); see docs/study.md") from None


@dataclass(frozen=True)
class _TrainStep(Step):
    """What both trainers read: the model, the dataset, the arm, and where they run."""

    model: ModelEntry = None  # type: ignore[assignment]
    dataset: DatasetEntry = None  # type: ignore[assignment]
    arm_kind: str = vocab.ARM_SFT_FROZEN
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Further trainer-config fields from the arm's ``settings`` table."""
    device: str = "auto"
    n_gpus: int = 1
    """GPUs the model needs (from its size), asked for when the cluster has GPUs."""
    n_cpus: float = 1.0
    """CPUs the step asks for (``[extract] cpus``: training loads the model as extraction does), and
    torch's thread count while it trains, on every engine: on a CPU a training step's float sums
    depend on how many threads split them, so a fixed count is what makes an adapter trained by the
    local engine byte-identical to one trained on a Ray worker."""

    def train(self, trainer: Callable[[Any], Any]) -> list[str]:
        """``trainer(self.config())`` with torch on :attr:`n_cpus` threads, unless ``out`` is there
        (each trainer publishes its output last, by one rename: what exists is complete)."""
        if self.out.exists():
            return []
        from layerprobe.hardware import torch_threads

        with torch_threads(max(1, int(self.n_cpus))):
            trainer(self.config())
        return []

    def config(self) -> Any:
        m, d = self.model, self.dataset
        dataset, split_file = d.spec, d.split_file
        if d.limit is not None:  # the samples the arm's extraction keeps, so the trainer splits exactly those
            from layerprobe.extract.data.datasets import resolve_dataset

            dataset, split_file = resolve_dataset(d.spec, split_file=d.split_file).head(d.limit), None
        return trainer_config(self.arm_kind, self.settings, model=m.source, dataset=dataset, out=self.out, prompt=d.prompt,
                              candidates=d.candidates, revision=m.revision, trust_remote_code=m.trust_remote_code,
                              site_spec=m.site_spec, split_file=split_file, device=self.device)  # fmt: skip

    def cpus(self, settings: Any) -> float:
        return self.n_cpus

    def gpus(self) -> int:
        return self.n_gpus


@dataclass(frozen=True)
class FinetuneStep(_TrainStep):
    """One adapter folder: LoRA SFT of a model on a dataset (``run_finetune``)."""

    kind: ClassVar[str] = vocab.STEP_FINETUNE

    def run(self) -> list[str]:
        from layerprobe.finetune import run_finetune

        return self.train(run_finetune)


@dataclass(frozen=True)
class VisionCEStep(_TrainStep):
    """One results-table row: the vision tower trained with cross-entropy (``run_vision_ce``)."""

    kind: ClassVar[str] = vocab.STEP_FINETUNE
    arm_kind: str = vocab.ARM_VISION_CE

    def run(self) -> list[str]:
        from layerprobe.finetune.vision_ce import run_vision_ce

        return self.train(run_vision_ce)
