"""``run_vision_ce(cfg)``: the vision-tower CE baseline (Table 3), trained and scored into one results-table row.

Steps: resolve the dataset and its splits as fine-tuning does (the probe sweep's split), load the
model as extraction does, make the tower trainable (:mod:`.vision_tower`), train tower + head with
cross-entropy (AdamW, cosine with warmup, one optimizer step per batch), evaluate on val every
epoch, keep the last or best epoch's weights, score val and test with the probe engine's metrics
(:func:`~layerprobe.probe.metrics.classification_metrics`: the same definitions as probe rows), and
write one row in the results-table contract (``kind = vision_ce``, site ``vision/mean``, layer =
the last block) to a parquet ``fhs``/``report`` load beside probe tables.

Why a hand-written loop, not the ``Trainer``: this is a classifier on pooled features, a dozen
lines of loop; the Trainer's value for SFT (resumable checkpoints, token-count loss normalisation)
does not apply to a run that writes one row, and a run killed midway leaves nothing (the row is
written last, atomically), so a rerun starts over.

The row: ``run_id`` = ``vision_ce-`` + 12 hex of the run's identity (a hub id, the model's weight
and config hashes, manifest hash, params, seed; a local folder's path is not part of it);
``store`` and ``adapter`` empty (no store is read, nothing is saved);
``preset`` = ``paper`` or ``custom`` (:attr:`VisionCEConfig.preset`), ``params`` = JSON of the
settings; ``best_epoch`` = the kept epoch (1-based); ``matmul_dtype`` = the load dtype (``auto``
resolved as extraction resolves it, :mod:`.dtype`; the reason is printed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

from layerprobe import vocab
from layerprobe.devices import parse_device
from layerprobe.finetune.config import FinetuneError
from layerprobe.finetune.dtype import resolve_dtype
from layerprobe.finetune.vision_ce_config import VisionCEConfig
from layerprobe.store.fields import source_identity


def run_vision_ce(cfg: VisionCEConfig) -> Path:
    """Train and score the baseline ``cfg`` describes; return the results parquet (one row)."""
    from layerprobe.finetune.run import resolve_task

    if cfg.out.exists():
        raise FinetuneError(f"results table {cfg.out} already exists; pass a new --out path (rows are never appended to a table)")
    task = resolve_task(cfg)  # duck-typed: dataset, candidates and prompt are all it reads
    if cfg.keep == vocab.KEEP_BEST and task.val.size == 0:
        raise FinetuneError(f"dataset {task.manifest.name!r} has no val samples to choose the best epoch on; use keep 'last' or add a val split")
    device = parse_device(cfg.device, FinetuneError)
    dtype = resolve_dtype(cfg, device).name
    started = time.perf_counter()
    trained = _train(cfg, task, device, dtype)
    row = _row(cfg, task, trained, time.perf_counter() - started, dtype)
    _write_row(row, cfg.out)
    return cfg.out


class Trained(NamedTuple):
    """What a finished run hands to its row."""

    loaded: Any
    """The ``LoadedModel`` (its id and hash name the run)."""
    n_blocks: int
    """Vision blocks; the row's layer is the last one."""
    epoch: int
    """The kept epoch (1-based)."""
    scores: dict[str, Any]
    """Split name (``vocab.SCORED_SPLITS``) -> :class:`~layerprobe.finetune.vision_ce_loop.Scores` with the kept weights."""


def _train(cfg: VisionCEConfig, task: Any, device: Any, dtype: str) -> Trained:
    """Load (in the resolved compute ``dtype``), prepare, train; the kept epoch's val/test metrics and what the row needs."""
    import torch
    from transformers import get_cosine_schedule_with_warmup, set_seed

    from layerprobe.extract.model.adapters import get_adapter
    from layerprobe.dtypes import compute_dtype
    from layerprobe.extract.model.loading import load_model
    from layerprobe.finetune.vision_ce_loop import Loop
    from layerprobe.finetune.vision_tower import TowerFeatures, make_head, prepare_tower, tower_parts

    set_seed(cfg.seed)
    loaded = load_model(cfg.model, dtype=compute_dtype(dtype), device=device, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    adapter = get_adapter(loaded, site_spec=cfg.site_spec)
    parts = tower_parts(loaded, adapter)
    trainable = prepare_tower(loaded.model, parts, cfg.tower, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout)
    features = TowerFeatures(loaded.model, adapter)
    loop = Loop(cfg, task, loaded, adapter, features, device)
    head = make_head(loop.width(), len(task.manifest.class_names), cfg.head, cfg.head_hidden).to(device)
    params = trainable + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(task.train.size / cfg.batch_size)
    schedule = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * steps), steps)
    best: tuple[tuple[float, float], int, list[Any]] | None = None
    for epoch in range(1, cfg.epochs + 1):
        loop.train_epoch(head, optimizer, schedule, params, epoch)
        val = loop.evaluate(head, task.val)
        key = (val.accuracy, -val.loss)
        if cfg.keep == vocab.KEEP_LAST or best is None or key > best[0]:
            snapshot = [p.detach().clone() for p in params] if cfg.keep == vocab.KEEP_BEST else []
            best = (key, epoch, snapshot)
    assert best is not None
    if cfg.keep == vocab.KEEP_BEST:
        with torch.no_grad():
            for p, saved in zip(params, best[2]):
                p.copy_(saved)
    scores = {split: loop.evaluate(head, getattr(task, split)) for split in vocab.SCORED_SPLITS}
    return Trained(loaded, features.n_blocks, best[1], scores)


def _row(cfg: VisionCEConfig, task: Any, trained: Trained, seconds: float, dtype: str) -> dict[str, Any]:
    loaded = trained.loaded
    params = json.dumps({**cfg.params(), "dtype": dtype}, sort_keys=True)  # the resolved dtype, never "auto"
    # as probe rows' run_id: a local folder counts by its weights and config files, not its path
    identity = json.dumps([source_identity(loaded.model_id), loaded.model_hash, loaded.model_config_hash, task.manifest.sha256, params, cfg.seed])
    n_blocks = trained.n_blocks
    row: dict[str, Any] = {
        "run_id": "vision_ce-" + hashlib.sha256(identity.encode()).hexdigest()[:12], "store": "", "model_id": loaded.model_id,
        "adapter": "", "dataset": task.manifest.name, "site": vocab.VISION, "layer": n_blocks - 1,
        "layer_name": vocab.vision_layer_names(n_blocks)[-1], "kind": vocab.VISION_CE, "seed": cfg.seed, "preset": cfg.preset,
        "params": params, "status": vocab.STATUS_OK, "error": None,
        "n_train": int(task.train.size), "n_val": int(task.val.size), "n_test": int(task.test.size), "train_seconds": float(seconds),
    }  # fmt: skip
    for split in vocab.SCORED_SPLITS:
        for metric in vocab.METRICS:
            row[vocab.metric_column(split, metric)] = float(getattr(trained.scores[split], metric))
    fractions = "/".join(f"{f:g}" for f in vocab.SPLIT_FRACTIONS)
    split = f"stratified seed={vocab.SPLIT_SEED} fractions={fractions}" if task.split_source == "stratified" else "store"
    row.update({"split": split, "n_folds": 1, "matmul_dtype": dtype, "best_epoch": trained.epoch, "chosen_c": None, "converged": None})
    return row


def _write_row(row: dict[str, Any], out: Path) -> None:
    """One row in the results-table schema, checked, written atomically (a temporary file, then a rename)."""
    import polars as pl

    from layerprobe.results import check_results

    frame = pl.DataFrame([row], schema=vocab.results_polars_schema(), orient="row")
    check_results(frame, source=f"vision-CE row for {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, out)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise FinetuneError(f"cannot write {out} ({err.strerror or err}); free space or choose another --out") from None

