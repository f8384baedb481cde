"""Trainer callbacks: complete-checkpoint markers, the best adapter on val, step timing, the progress bar.

- :class:`CheckpointMarker` writes ``layerprobe-complete`` into a checkpoint folder after the Trainer
  has saved everything in it (``on_save``). Resume only trusts marked checkpoints, so a run killed
  (or a disk filled) halfway through a checkpoint never resumes from a half-written one.
- :class:`BestAdapter` keeps, in ``best/``, the adapter of the best evaluation so far (val accuracy,
  then lower val loss, then the earlier one). "Best so far" is read off ``state.log_history``, which
  checkpoints carry, so a resumed run decides exactly as an uninterrupted one. Written to a
  temporary folder and renamed.
- :class:`StepTiming` adds ``samples_per_second`` (effective batch over the wall time since the
  previous training log, evaluation excluded) to each training entry of ``state.log_history``, so the
  per-step table survives a resume too.
- :class:`Progress` is one tqdm bar over optimizer steps showing loss and samples/s (the Trainer's own
  bar prints every log line, one per step here).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from layerprobe.finetune.output import COMPLETE_MARKER, EVAL_ACCURACY

BEST_DIR = "best"
"""Folder (in the run's work folder) holding the best adapter so far and ``best.json``."""


def eval_key(entry: dict[str, Any]) -> tuple[float, float]:
    """Sort key of an evaluation entry: higher accuracy, then lower loss, is better."""
    return (entry.get(EVAL_ACCURACY, float("-inf")), -entry.get("eval_loss", float("inf")))


class CheckpointMarker(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            (folder / COMPLETE_MARKER).write_text(json.dumps({"step": state.global_step}))


class BestAdapter(TrainerCallback):
    def __init__(self, work: Path) -> None:
        self.folder = work / BEST_DIR

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        evals = [e for e in state.log_history if EVAL_ACCURACY in e]
        if not evals or model is None:
            return
        current, earlier = evals[-1], evals[:-1]
        if any(eval_key(e) >= eval_key(current) for e in earlier):
            return
        tmp = self.folder.with_name(BEST_DIR + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        (tmp / "best.json").write_text(json.dumps({"step": state.global_step, **current}, indent=1))
        shutil.rmtree(self.folder, ignore_errors=True)
        tmp.rename(self.folder)


class StepTiming(TrainerCallback):
    def __init__(self, samples_per_step: int) -> None:
        self.samples_per_step = samples_per_step
        self.last = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = time.perf_counter()

    def on_evaluate(self, args, state, control, **kwargs):
        self.last = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not state.log_history:
            return
        now = time.perf_counter()
        state.log_history[-1]["samples_per_second"] = self.samples_per_step / max(now - self.last, 1e-9)
        self.last = now


class Progress(TrainerCallback):
    def __init__(self, enabled: bool, description: str) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.description = description
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", desc=self.description, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            entry = state.log_history[-1] if state.log_history else {}
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", samples_s=f"{entry.get('samples_per_second', 0.0):.1f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
