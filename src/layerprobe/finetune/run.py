"""``run_finetune(cfg)``: LoRA SFT of an MLLM on a labelled image set, resumable, into a peft adapter folder.

Steps: resolve the dataset and its splits, load the model as extraction loads it, plan the LoRA
targets by full module path (:mod:`.targets`), inject them with peft, build answer-only examples
(:mod:`.examples`), train with transformers' ``Trainer`` (evaluating on val every epoch), then
assemble the adapter folder and rename it into place (:mod:`.output`).

Why transformers' ``Trainer`` (with peft), not TRL's ``SFTTrainer`` or a hand-written loop:
- it already does what a resumable run needs: checkpoints with optimizer, scheduler and every RNG
  state, and a resume that skips the batches already seen, so a killed run ends with the same
  adapter bytes as an uninterrupted one (tested on CPU); the cosine-with-warmup schedule and
  gradient accumulation with token-count loss normalisation are built in;
- ``SFTTrainer`` would bring TRL as a dependency to redo what :mod:`.examples` must control exactly
  here (the prompt extraction records, answer-only labels, left padding, no truncation);
- a hand-written loop is the benchmark's floor (``benchmarks/finetune_throughput.py``); the Trainer's
  overhead per step is a few callbacks.

Choices: ``optim="adamw_torch"`` (plain AdamW, the paper's optimiser); one training log per optimizer
step (the per-step table); evaluation each epoch on val (loss + forced-choice accuracy); checkpoints
every ``save_steps`` steps, the last two kept; no ``bf16``/``fp16`` autocast flag (the base weights
are already in the compute dtype, resolved as extraction resolves it (:mod:`.dtype`); peft keeps the
LoRA weights in float32).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from layerprobe.devices import parse_device
# The extract modules this package uses, in one place (their paths move with the architecture work).
from layerprobe.extract.model.adapters import get_adapter
from layerprobe.extract.data.candidates import match_candidates
from layerprobe.extract.data.datasets import resolve_dataset
from layerprobe.extract.data.manifest import Manifest
from layerprobe.dtypes import compute_dtype
from layerprobe.extract.model.loading import load_model
from layerprobe.extract.model.prompt import render_prompt
from layerprobe.extract.runner import default_instruction
from layerprobe.finetune import output
from layerprobe.finetune.config import FinetuneConfig, FinetuneError

CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class Task:
    """What the model is trained to answer, resolved once from the config and the dataset."""

    manifest: Manifest
    candidates: tuple[str, ...]
    instruction: str
    train: np.ndarray
    """Sample indices (manifest order) of each split."""
    val: np.ndarray
    test: np.ndarray
    split_source: str
    """``dataset`` (its split column) or ``stratified`` (made here as the probe sweep makes it)."""


def resolve_task(cfg: FinetuneConfig) -> Task:
    """Dataset, candidates, instruction and splits; the bad-input errors that need no model."""
    from layerprobe import vocab

    manifest = resolve_dataset(cfg.dataset, split_file=cfg.split_file)
    if cfg.candidates is not None:  # matched to classes as extraction matches them, never by position
        candidates = match_candidates(manifest.class_names, cfg.candidates, FinetuneError)
    else:
        candidates = tuple(manifest.candidates or manifest.class_names)
    instruction = cfg.prompt or manifest.instruction or default_instruction(candidates)
    splits = np.asarray(manifest.splits, dtype=object)
    labels = np.asarray(manifest.labels, dtype=np.int64)
    if (splits != vocab.UNASSIGNED).any() and not (splits == vocab.TRAIN).any():
        used = sorted({str(s) for s in splits} - {vocab.UNASSIGNED})
        raise FinetuneError(f"dataset {manifest.name!r} has no train split (its split column holds only {', '.join(used)}); "
                            "mark the training samples 'train' in the split column, or clear the column to split automatically")
    from layerprobe.probe.splits import make_splits

    try:
        (split,) = make_splits(labels, manifest.splits, np.ones(len(labels), dtype=bool), class_names=manifest.class_names,
                               seed=vocab.SPLIT_SEED, fractions=vocab.SPLIT_FRACTIONS, where=f"dataset {manifest.name!r}")
    except FinetuneError:
        raise
    except Exception as err:  # ProbeError from the split checks: same wording, fine-tuning's type
        raise FinetuneError(str(err)) from None
    source = "stratified" if split.name == "stratified" else "dataset"
    return Task(manifest, candidates, instruction, split.train, split.val, split.test, source)


@dataclass(frozen=True)
class Prepared:
    """A run ready to train: the task, the loaded model, the rendered prompt and the Trainer."""

    task: Task
    loaded: Any
    """The ``LoadedModel`` (its ``model`` now carries the LoRA layers)."""
    prompt: str
    """The prompt text, exactly as ``extract`` renders it for this model and instruction."""
    setup: Any
    """:class:`~layerprobe.finetune.train.Setup`: Trainer, target plan, answer tokens."""
    dtype: Any
    """:class:`~layerprobe.hardware.ResolvedDtype`: the compute dtype the base weights run in, and why."""


def prepare(cfg: FinetuneConfig, task: Task, checkpoints: Path, dtype: Any = None) -> Prepared:
    """Load the model as extraction does, check its template, inject LoRA, build the Trainer.
    ``dtype``: the resolved compute dtype (None = resolve ``cfg.dtype`` here, :mod:`.dtype`)."""
    from transformers import set_seed

    from layerprobe.finetune.dtype import resolve_dtype
    from layerprobe.finetune.train import build_trainer

    device = parse_device(cfg.device, FinetuneError)
    dtype = dtype if dtype is not None else resolve_dtype(cfg, device)
    set_seed(cfg.seed)
    loaded = load_model(cfg.model, dtype=compute_dtype(dtype.name), device=device, trust_remote_code=cfg.trust_remote_code,
                        revision=cfg.revision)
    adapter = get_adapter(loaded, site_spec=cfg.site_spec)
    prompt = render_prompt(loaded.processor, task.instruction, plain_prompt=adapter.plain_prompt)
    _check_image_placed(loaded.processor, prompt)
    setup = build_trainer(cfg, task, loaded, adapter, prompt, checkpoints, device)
    return Prepared(task, loaded, prompt, setup, dtype)


def run_identity(cfg: FinetuneConfig, manifest: Manifest, dtype: str) -> dict[str, Any]:
    """What ``<out>.partial/run.json`` records: the config's identity with ``dtype`` the resolved
    compute dtype (never ``auto``), the dataset by name and manifest hash."""
    return {**cfg.identity(), "dtype": dtype, "dataset": manifest.name, "manifest_sha256": manifest.sha256}


def run_finetune(cfg: FinetuneConfig) -> Path:
    """Run (or resume) the fine-tuning ``cfg`` describes; return the adapter folder."""
    started = time.perf_counter()
    from layerprobe.finetune.dtype import resolve_dtype

    task = resolve_task(cfg)
    device = parse_device(cfg.device, FinetuneError)  # a bad device fails before any folder is made
    dtype = resolve_dtype(cfg, device)  # before the run's identity: a resume compares the resolved dtype
    work = output.claim_work_folder(cfg.out, run_identity(cfg, task.manifest, dtype.name))
    run = prepare(cfg, task, work / CHECKPOINTS, dtype)
    resume = output.last_complete_checkpoint(work / CHECKPOINTS)
    if resume is not None:
        _drop_stale_best(work, resume)
    trainer = run.setup.trainer
    output.guard_disk(lambda: trainer.train(resume_from_checkpoint=str(resume) if resume else None), work / CHECKPOINTS)
    final = work / "final"
    output.guard_disk(lambda: _assemble(cfg, run, final, work, time.perf_counter() - started), final)
    return output.publish(work, final, cfg.out)


def _check_image_placed(processor: Any, prompt: str) -> None:
    """The rendered prompt must contain the image placeholder, or the model never sees the image."""
    image = getattr(processor, "image_token", None) or getattr(processor.tokenizer, "image_token", None)
    boi = getattr(processor, "boi_token", None)
    if not any(token and token in prompt for token in (image, boi)):
        raise FinetuneError(
            "the model's chat template does not place the image in the prompt (no image token in the rendered text); "
            "use a checkpoint whose chat template renders {'type': 'image'} content, or one without a chat template"
        )


def _drop_stale_best(work: Path, resume: Path) -> None:
    """A best adapter saved after the checkpoint we resume from is recomputed; drop it."""
    import json
    import shutil

    from layerprobe.finetune.callbacks import BEST_DIR

    best = work / BEST_DIR / "best.json"
    step = int(resume.name.rpartition("-")[2])
    if best.is_file() and json.loads(best.read_text()).get("step", 0) > step:
        shutil.rmtree(best.parent, ignore_errors=True)


def _assemble(cfg: FinetuneConfig, run: Prepared, final: Path, work: Path, seconds: float) -> None:
    """Write the adapter, metadata, step table and curve into ``final`` (renamed into place afterwards)."""
    import json
    import shutil

    from layerprobe import vocab
    from layerprobe.finetune.callbacks import BEST_DIR

    task, loaded, setup, prompt = run.task, run.loaded, run.setup, run.prompt
    shutil.rmtree(final, ignore_errors=True)
    history = setup.trainer.state.log_history
    epochs = output.epoch_rows(history)
    kept = {"mode": cfg.keep, "step": int(setup.trainer.state.global_step)}
    if cfg.keep == vocab.KEEP_BEST and (work / BEST_DIR / "best.json").is_file():
        shutil.copytree(work / BEST_DIR, final)
        best = json.loads((final / "best.json").read_text())
        (final / "best.json").unlink()
        kept = {"mode": cfg.keep, "step": int(best["step"]), "epoch": float(best.get("epoch", 0.0))}
    else:
        setup.trainer.model.save_pretrained(final)
    steps = output.step_rows(history)
    output.write_steps_table(steps, final / output.STEPS_FILE)
    output.plot_curve(steps, epochs, final / output.CURVE_FILE, f"{Path(cfg.model).name} on {task.manifest.name}")
    doc = output.metadata(
        base_model_id=loaded.model_id, base_model_revision=loaded.model_revision, base_model_hash=loaded.model_hash,
        model_type=loaded.model_type, dataset_name=task.manifest.name, manifest_sha256=task.manifest.sha256,
        class_names=list(task.manifest.class_names), candidates=list(task.candidates),
        candidate_token_ids=list(setup.answers.first_ids), answer_token_ids=[list(a) for a in setup.answers.answer_ids],
        end_of_turn_token_id=setup.answers.end_of_turn, end_token_ids=list(setup.answers.end_ids), instruction=task.instruction, prompt_template=prompt,
        vision_tower=cfg.vision_tower, connector=cfg.connector, compute_dtype=run.dtype.name, compute_dtype_reason=run.dtype.reason,
        device=str(loaded.device),
        lora_modules={part: sum(setup.plan.parts.part_of(n) == part for n in setup.plan.lora) for part in ("vision", "connector", "llm")},
        full_modules=list(setup.plan.full),
        hyperparameters={**cfg.identity(), "dtype": run.dtype.name},
        splits={"source": task.split_source, "n_train": int(task.train.size), "n_val": int(task.val.size), "n_test": int(task.test.size)},
        epochs=epochs, kept=kept, seconds=round(seconds, 3),
    )
    (final / output.METADATA_FILE).write_text(json.dumps(doc, indent=1))
