"""The run's folders and what it leaves behind: the adapter folder, its metadata, table and plot.

Folders (``out`` = ``lora/busi``):
- ``lora/busi.partial/`` while the run is unfinished: ``run.json`` (the run's identity),
  ``checkpoints/checkpoint-N/`` (the Trainer's, each marked complete once whole), ``best/``
  (``keep=best``) and finally ``final/``, assembled in full;
- ``final/`` is then renamed to ``lora/busi`` (one ``rename``, so the adapter folder appears
  complete or not at all) and the ``.partial`` folder removed.
A rerun of the same command resumes from ``.partial``'s last complete checkpoint; a different run
into the same ``out`` is refused with the first identity field that differs, as is an ``out`` that
exists already.

The adapter folder holds peft's ``adapter_config.json`` + ``adapter_model.safetensors`` (what
``extract --adapter`` loads) and:
- ``layerprobe-finetune.json``: :func:`metadata` (base model id + hash, dataset + manifest hash,
  modes, hyperparameters, per-epoch metrics, library versions);
- ``steps.parquet``: one row per optimizer step (``step, epoch, loss, lr, samples_per_second``);
- ``training_curve.png``: train loss per step, val loss and val accuracy per epoch.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from layerprobe import vocab
from layerprobe.extract.model.peft_adapter import FINETUNE_FORMAT
from layerprobe.extract.model.peft_adapter import FINETUNE_METADATA as METADATA_FILE  # the folder layout's name for it
from layerprobe.finetune.config import FinetuneError

# Here rather than in .callbacks: extract reads arm facts from this module, and .callbacks imports
# transformers' Trainer modules (and peft) that an extraction never uses.
COMPLETE_MARKER = "layerprobe-complete"
"""File written last into a checkpoint folder: the checkpoint is whole."""
EVAL_ACCURACY = f"eval_{vocab.ACCURACY}"
STEPS_FILE = "steps.parquet"
CURVE_FILE = "training_curve.png"
RUN_FILE = "run.json"
FORMAT_VERSION = 1
_TRAINING_PACKAGES = ("accelerate", "safetensors")
"""Packages that shape a trained adapter besides those a store records."""

T = TypeVar("T")


def work_folder(out: Path) -> Path:
    """The unfinished run's folder beside ``out``."""
    return out.with_name(out.name + ".partial")


def claim_work_folder(out: Path, identity: Mapping[str, Any]) -> Path:
    """Create (or reopen, for the same run) ``<out>.partial``; refuse an existing ``out`` or another run."""
    if out.exists():
        raise FinetuneError(f"adapter folder {out} already exists; remove it or choose another --out")
    work = work_folder(out)
    run_file = work / RUN_FILE
    if run_file.is_file():
        recorded = json.loads(run_file.read_text())
        for key in sorted(set(recorded) | set(identity)):
            if recorded.get(key) != identity.get(key):
                raise FinetuneError(
                    f"{work} holds an unfinished run with {key}={recorded.get(key)!r}, not {identity.get(key)!r}; "
                    "rerun that command to resume it, or remove the folder"
                )
        return work
    if work.exists():
        raise FinetuneError(f"{work} exists but is not a layerprobe fine-tuning run (no {RUN_FILE}); remove it or choose another --out")
    work.mkdir(parents=True)
    guard_disk(lambda: _write_atomic(run_file, json.dumps(dict(identity), indent=1, sort_keys=True)), run_file)
    return work


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """The highest-step checkpoint that is marked complete; unmarked (half-written) ones are removed."""
    if not checkpoints.is_dir():
        return None
    found = []
    for folder in checkpoints.glob("checkpoint-*"):
        if (folder / COMPLETE_MARKER).is_file():
            found.append((int(folder.name.rpartition("-")[2]), folder))
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return max(found)[1] if found else None


def guard_disk(action: Callable[[], T], where: Path) -> T:
    """Run ``action``; a full disk (or quota) becomes a one-line FinetuneError naming ``where``."""
    try:
        return action()
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FinetuneError(f"disk full while writing {where}; free space and rerun the same command to resume from the last complete checkpoint") from None
        raise
    except RuntimeError as err:  # torch.save and safetensors wrap the OSError
        if "No space left" in str(err) or "ENOSPC" in str(err):
            raise FinetuneError(f"disk full while writing {where}; free space and rerun the same command to resume from the last complete checkpoint") from None
        raise


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def library_versions() -> dict[str, str]:
    """The store's library versions (python, layerprobe, torch, transformers, peft, ...) plus the trainer's own."""
    from importlib import metadata as _metadata

    from layerprobe.store.versions import library_versions as store_versions

    out = store_versions()
    for name in _TRAINING_PACKAGES:
        try:
            out[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            continue
    return out


def step_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-step table's rows from the Trainer's log history (training entries only)."""
    return [
        {"step": int(e["step"]), "epoch": float(e.get("epoch", 0.0)), "loss": float(e["loss"]),
         "lr": float(e.get("learning_rate", 0.0)), "samples_per_second": float(e.get("samples_per_second", float("nan")))}
        for e in log_history if "loss" in e and "step" in e
    ]


def epoch_rows(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-evaluation metrics: epoch, step, mean train loss since the previous evaluation, val loss, val accuracy."""
    rows, losses = [], []
    for e in log_history:
        if "loss" in e:
            losses.append(float(e["loss"]))
        if EVAL_ACCURACY in e:
            rows.append({"epoch": round(float(e.get("epoch", 0.0)), 6), "step": int(e["step"]),
                         "train_loss": sum(losses) / len(losses) if losses else None,
                         "val_loss": float(e["eval_loss"]), f"val_{vocab.ACCURACY}": float(e[EVAL_ACCURACY])})
            losses = []
    return rows


def write_steps_table(rows: list[dict[str, Any]], path: Path) -> None:
    import polars as pl

    schema = {"step": pl.Int64, "epoch": pl.Float64, "loss": pl.Float64, "lr": pl.Float64, "samples_per_second": pl.Float64}
    pl.DataFrame(rows, schema=schema).write_parquet(path)


def plot_curve(steps: list[dict[str, Any]], epochs: list[dict[str, Any]], path: Path, title: str) -> None:
    """Train loss per step and val loss per epoch (left axis), val accuracy (right axis); Agg, no global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], color="#4c72b0", lw=1, label="train loss")
    if epochs:
        ax.plot([r["step"] for r in epochs], [r["val_loss"] for r in epochs], "o-", color="#dd8452", label="val loss")
        acc = ax.twinx()
        acc.plot([r["step"] for r in epochs], [r[f"val_{vocab.ACCURACY}"] for r in epochs], "s--", color="#55a868", label="val accuracy")
        acc.set_ylim(0, 1)
        acc.set_ylabel("val accuracy (forced choice)")
        acc.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (answer tokens)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=10, loc="left")
    fig.savefig(path, format="png", dpi=110)


def metadata(**fields: Any) -> dict[str, Any]:
    """The metadata document: the given fields plus format, version, library versions and the time."""
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"format": FINETUNE_FORMAT, "format_version": FORMAT_VERSION, **fields, "library_versions": library_versions(), "created_at": now}


def publish(work: Path, final: Path, out: Path) -> Path:
    """Rename the assembled ``final`` folder to ``out`` and drop the work folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(final, out)
    shutil.rmtree(work, ignore_errors=True)
    return out
