"""The Trainer of one run: peft injection by plan, datasets, collator, arguments and callbacks.

:func:`build_trainer` is the only place that knows transformers' ``TrainingArguments``; see
:mod:`.run` for why the Trainer is used and which settings are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerprobe.extract.generation import generation_stop_ids
from layerprobe.finetune import callbacks as cb
from layerprobe.finetune.config import FinetuneConfig
from layerprobe.finetune.examples import AnswerFormat, Collator, ImageSamples, answer_format
from layerprobe.finetune.metrics import ForcedChoice
from layerprobe.finetune.targets import TargetPlan, check_injection, plan_targets


@dataclass(frozen=True)
class Setup:
    """A ready Trainer and what was decided on the way."""

    trainer: Any
    """transformers ``Trainer`` over the peft-wrapped model."""
    plan: TargetPlan
    """Which modules got LoRA / are trained in full."""
    answers: AnswerFormat
    """Target tokens per class (and the forced-choice columns)."""


def _trainer_class() -> type:
    from transformers import Trainer

    class LayerprobeTrainer(Trainer):
        """``Trainer`` whose evaluation leaves the global RNG as it found it.

        Evaluation runs under ``torch.random.fork_rng``: its DataLoader draws a seed from the global
        RNG, and a run resumed from a checkpoint taken just before an epoch-end evaluation does not
        redo that evaluation, so its dropout masks would be one draw off (measured: a different
        adapter after a kill at an epoch boundary).
        """

        def evaluate(self, *args, **kwargs):
            import torch

            with torch.random.fork_rng():
                return super().evaluate(*args, **kwargs)

    return LayerprobeTrainer


def inject_lora(model: Any, plan: TargetPlan, cfg: FinetuneConfig) -> Any:
    """``model`` wrapped by peft with LoRA on exactly ``plan.lora`` (and ``plan.full`` trained in full)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
        target_modules=plan.regex(), modules_to_save=list(plan.full) or None,
    )
    from layerprobe.extract.model.loading import peft_quietly

    with peft_quietly():
        peft_model = get_peft_model(model, config)
    check_injection(peft_model.get_base_model(), plan)
    return peft_model


def training_arguments(cfg: FinetuneConfig, checkpoints: Path, device: Any) -> Any:
    """The ``TrainingArguments`` of the paper's preset and this run's bookkeeping."""
    from transformers import TrainingArguments

    if device.type == "cuda" and device.index is not None:
        import torch

        torch.cuda.set_device(device)
    return TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm if cfg.max_grad_norm is not None else 0.0,  # 0 = no clipping there
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,
        optim="adamw_torch",
        seed=cfg.seed,
        use_cpu=device.type == "cpu",
        eval_strategy="epoch",
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        dataloader_num_workers=cfg.num_workers,
        remove_unused_columns=False,
        report_to="none",
        disable_tqdm=True,
        label_names=["labels"],
    )


def build_trainer(cfg: FinetuneConfig, task: Any, loaded: Any, adapter: Any, prompt: str, checkpoints: Path, device: Any) -> Setup:
    """Plan + inject LoRA, build the datasets and the Trainer (nothing is trained yet)."""
    from transformers import PrinterCallback

    model = loaded.model
    plan = plan_targets(model, adapter.paths, loaded.model_type, vision_tower=cfg.vision_tower, connector=cfg.connector)
    peft_model = inject_lora(model, plan, cfg)
    answers = answer_format(loaded.processor, task.candidates, generation_stop_ids(model))
    collator = Collator(loaded.processor, prompt, answers, loaded.model_type, float_dtype=model.dtype)
    manifest = task.manifest

    def samples(index):
        return ImageSamples([manifest.paths[i] for i in index], [manifest.labels[i] for i in index])

    scorer = ForcedChoice(answers.first_ids)
    trainer = _trainer_class()(
        model=peft_model,
        args=training_arguments(cfg, checkpoints, device),
        train_dataset=samples(task.train),
        eval_dataset=samples(task.val),
        data_collator=collator,
        compute_metrics=scorer.compute_metrics,
        preprocess_logits_for_metrics=scorer.candidate_logits,
        callbacks=[cb.CheckpointMarker(), cb.BestAdapter(checkpoints.parent), cb.StepTiming(cfg.batch_size * cfg.grad_accum),
                   cb.Progress(cfg.progress, cfg.out.name)],
    )
    trainer.remove_callback(PrinterCallback)
    return Setup(trainer, plan, answers)
