"""``run_sweep``: a whole probe sweep, from stores to the results table.

Order of work (each slab is read once)::

    for each store:  the model row (answer logits), then
      for each site, for each slab group (consecutive layers that fit the memory budget):
        read_slabs once
        for each split (one, or K folds):
          standardise on the training rows
          linear probes: every layer x every C, batched L-BFGS (cache-sized layer groups)
          MLP probes: every layer x seed x recipe, batched training (memory-sized groups)
          metrics for all of them, batched

The sweep reads stores only through ``layerprobe.store.StoreLike`` (what ``open_store`` returns
satisfies it, and so does the in-memory store of ``layerprobe.testing``), so it runs wherever the
stores are, without the models.
A layer whose slab holds NaN/Inf gets failed rows naming the count; other layers are unaffected.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import torch

from layerprobe import vocab
from layerprobe.answers import parse_answer
from layerprobe.dtypes import dtype_name
from layerprobe.hardware import last_level_cache_bytes
from layerprobe.probe.config import ProbeSpec, SweepConfig, params_json
from layerprobe.probe.engine import Stream, matmul_dtype, train_mlp_group
from layerprobe.probe.features import Features, balanced_class_weight, prepare_features
from layerprobe.probe.grid import SitePlan, StorePlan, count_probes, group_cache_bytes, layer_chunks, plan_stores, probes_per_layer, streams_per_group
from layerprobe.probe.linear import fit_linear_group
from layerprobe.probe.metrics import auc_ovr, classification_metrics
from layerprobe.probe.output import SweepOutput
from layerprobe.probe.splits import Split
from layerprobe.probe.table import SCHEMA, Outcome, TableBuilder, metric_values
from layerprobe.probe.threads import sized_threads

if TYPE_CHECKING:
    from layerprobe.store.protocol import StoreLike

log = logging.getLogger(__name__)


def run_sweep(cfg: SweepConfig) -> pl.DataFrame:
    """Train and score every probe of ``cfg``; write the table to ``cfg.out`` if set, and return it.

    With ``cfg.out``, finished probe groups are kept beside it as they complete, and a rerun of the
    same sweep resumes from them (:mod:`layerprobe.probe.output`)."""
    from layerprobe.store import open_store

    return sweep_stores(cfg, [open_store(path) for path in cfg.stores])


@sized_threads  # torch threads sized to the problem, restored after (probe/threads.py)
def sweep_stores(cfg: SweepConfig, stores: list[StoreLike]) -> pl.DataFrame:
    """:func:`run_sweep` on stores already open (one per ``cfg.stores`` entry, same order), e.g.
    in-memory test stores."""
    from tqdm.auto import tqdm

    if len(stores) != len(cfg.stores):
        raise ValueError("one open store per cfg.stores entry")
    plans = plan_stores(cfg, stores)
    output = SweepOutput(cfg, plans)  # checks --out and creates the progress folder before any compute
    if output.finished is not None:
        log.info("%s already holds this sweep's results; nothing to train", cfg.out)
        return output.finished
    show = cfg.progress and sys.stderr.isatty()
    with tqdm(total=count_probes(cfg, plans), unit="probe", disable=not show, dynamic_ncols=True) as bar:
        for plan in plans:
            if output.todo(plan.run_id, vocab.ANSWER_SITE, (0,)):
                table = TableBuilder()
                _model_rows(plan, cfg, table)
                output.add(table.frame())
            if plan.store.meta.answer_tokens and output.todo(plan.run_id, vocab.ANSWER_TEXT_SITE, (0,)):
                table = TableBuilder()
                _generated_rows(plan, cfg, table)
                output.add(table.frame())
            for site in plan.sites:
                _site_groups(cfg, plan, site, output, bar)
    return output.finish(SCHEMA)


def _site_groups(cfg: SweepConfig, plan: StorePlan, site: SitePlan, output: SweepOutput, bar: Any) -> None:
    """Every probe of one site, slab group by slab group; layers a resumed sweep holds are skipped."""
    per_layer = 10 * plan.store.n_samples * site.hidden  # raw slab + fp32 parts + bf16 copy
    for group in layer_chunks(site.layers, per_layer, cfg.max_memory // 2):
        layers = output.todo(plan.run_id, site.name, group)
        bar.update(probes_per_layer(cfg) * (len(group) - len(layers)))
        if not layers:
            continue
        bar.set_description(f"{plan.path.name} {site.name} layers {layers[0]}-{layers[-1]}")
        table = TableBuilder()
        x_lnd = plan.store.read_slabs(site.name, list(layers))
        for split in plan.splits:
            features = prepare_features(x_lnd, plan.store.labels, split, cfg.device)
            job = _SlabProbes(cfg, plan, site, layers, split, features, table, lambda n: bar.update(n / len(plan.splits)))
            if vocab.LINEAR in cfg.kinds:
                job.linear()
            if vocab.MLP in cfg.kinds:
                job.mlp()
        del x_lnd
        output.add(table.frame())


def _identity(cfg: SweepConfig, plan: StorePlan, site: str, layer: int, layer_name: str, kind: str) -> dict[str, Any]:
    meta = plan.store.meta
    return {
        "run_id": plan.run_id, "store": str(plan.path), "model_id": meta.model_id,
        "adapter": meta.adapter, "dataset": meta.dataset_name,
        "site": site, "layer": layer, "layer_name": layer_name, "kind": kind, "seed": None,
        "preset": None if kind == vocab.MODEL_KIND else cfg.preset, "params": "{}", "split": _split_label(cfg, plan.splits),
        "matmul_dtype": None,
    }  # fmt: skip


def _split_label(cfg: SweepConfig, splits: tuple[Split, ...]) -> str:
    if cfg.kfold:
        return f"{cfg.kfold}-fold seed={cfg.split_seed}"
    if splits[0].name == "stratified":
        return f"stratified seed={cfg.split_seed} fractions={'/'.join(f'{f:g}' for f in cfg.split_fractions)}"
    return "store"


def _model_rows(plan: StorePlan, cfg: SweepConfig, table: TableBuilder) -> None:
    """P_final: the model's own answer (argmax over candidate logits; softmax for AUC) on each split."""
    identity = _identity(cfg, plan, vocab.ANSWER_SITE, 0, vocab.ANSWER_LAYER_NAME, vocab.MODEL_KIND)
    logits_nc = plan.store.answer_logits().float()
    problem = None
    if logits_nc.shape[1] != plan.n_classes:
        problem = f"answer_logits has {logits_nc.shape[1]} candidates but the store has {plan.n_classes} classes; candidate i must be class i (re-extract)"
    for split in plan.splits:
        sizes = (len(split.train), len(split.val), len(split.test))
        rows = torch.from_numpy(split.val), torch.from_numpy(split.test)
        if problem is None and not bool(torch.isfinite(logits_nc[torch.cat(rows)]).all()):
            problem = "answer_logits has NaN/Inf for samples in the split; run `layerprobe verify` on the store and re-extract"
        if problem is not None:
            table.add(identity, Outcome(None, None, *sizes, 0.0, error=problem))
            continue
        y = torch.tensor(np.asarray(plan.store.labels), dtype=torch.int64)
        val, test = (classification_metrics(torch.softmax(logits_nc[r], dim=-1)[None], y[r]) for r in rows)
        table.add(identity, Outcome(metric_values(val, 0), metric_values(test, 0), *sizes, 0.0))


def _generated_rows(plan: StorePlan, cfg: SweepConfig, table: TableBuilder) -> None:
    """P_final by generation, the paper's: the stored generated answer parsed to a candidate.

    Site ``vocab.ANSWER_TEXT_SITE``, layer 0, ``layer_name`` ``vocab.GENERATED_LAYER_NAME``, kind
    ``model``, one row per store with generated answers (``answer_tokens > 0``) beside the forced
    choice's. Choices:
    - An answer naming no candidate or two (``layerprobe.answers.parse_answer``) is *unparsed* and
      counts as wrong: it matches no class, so it lowers accuracy and its true class's recall, and
      predicts no class (macro precision/recall/F1 average over the classes among the true labels
      or the parsed answers, otherwise as ``probe/metrics.py``).
    - AUC scores each sample with the one-hot of its parsed answer; an unparsed one gets the uniform
      score ``1/C`` for every class (it ranks between the samples that named the class and those
      that named another), so a model that often answers off-list is not rewarded with a high AUC.
    - The unparsed rates are recorded in ``params`` (JSON: ``answer_tokens``, ``unparsed_val``,
      ``unparsed_test``, fractions over every split's val / test rows; null where there are none),
      one value per row, so k-fold outcomes still fold into one row.
    """
    store = plan.store
    identity = _identity(cfg, plan, vocab.ANSWER_TEXT_SITE, 0, vocab.GENERATED_LAYER_NAME, vocab.MODEL_KIND)
    n_classes = plan.n_classes
    pred_n = np.array([-1 if (k := parse_answer(t, store.meta.candidates)) is None else k for t in store.answer_text()], dtype=np.int64)
    y_n = np.asarray(store.labels, dtype=np.int64)

    def rate(rows: list[np.ndarray]) -> float | None:
        chosen = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return float((pred_n[chosen] < 0).mean()) if chosen.size else None

    identity["params"] = params_json({"answer_tokens": store.meta.answer_tokens, "unparsed_val": rate([s.val for s in plan.splits]),
                                      "unparsed_test": rate([s.test for s in plan.splits])})
    for split in plan.splits:
        sizes = (len(split.train), len(split.val), len(split.test))
        val, test = (_generated_metrics(pred_n[r], y_n[r], n_classes) for r in (split.val, split.test))
        table.add(identity, Outcome(val, test, *sizes, 0.0))


def _generated_metrics(pred_n: np.ndarray, y_n: np.ndarray, n_classes: int) -> dict[str, float]:
    """The metrics of parsed answers (``-1`` = unparsed, always wrong; see :func:`_generated_rows`)."""
    if not y_n.size:
        return {name: float("nan") for name in vocab.METRICS}
    classes = np.arange(n_classes)
    is_pred, is_true = pred_n[:, None] == classes, y_n[:, None] == classes
    tp, n_pred, n_true = (is_pred & is_true).sum(0), is_pred.sum(0), is_true.sum(0)
    present = (n_pred + n_true) > 0

    def macro(num: np.ndarray, den: np.ndarray) -> float:
        value = np.where(den > 0, num / np.maximum(den, 1), 0.0)
        return float(value[present].mean())

    score_nc = np.where(pred_n[:, None] < 0, 1.0 / n_classes, is_pred.astype(np.float64))
    auc = float(auc_ovr(torch.from_numpy(score_nc)[None], torch.from_numpy(y_n))[0])
    # in the order of vocab.METRICS (accuracy, f1, precision, recall, auc), as probe/metrics.py's Metrics
    values = (float((pred_n == y_n).mean()), macro(2 * tp, n_pred + n_true), macro(tp, n_pred), macro(tp, n_true), auc)
    return dict(zip(vocab.METRICS, values, strict=True))


class _SlabProbes:
    """Every probe of one slab group on one split: the shared context, one method per probe kind."""

    def __init__(self, cfg: SweepConfig, plan: StorePlan, site: SitePlan, layers: tuple[int, ...], split: Split,
                 features: Features, table: TableBuilder, advance: Any) -> None:  # fmt: skip
        self.cfg, self.plan, self.site, self.layers, self.features = cfg, plan, site, layers, features
        self.table, self.advance = table, advance
        self.names = dict(zip(site.layers, site.layer_names))
        self.sizes = (len(split.train), len(split.val), len(split.test))
        self.weight = balanced_class_weight(features.y_train, plan.n_classes) if cfg.class_weight == vocab.CLASS_WEIGHT_BALANCED else None
        self.good = [i for i in range(len(layers)) if bool(features.finite[i])]
        self.bad_error = {
            i: f"slab {site.name} layer {layers[i]} has {int(features.n_bad[i])} NaN/Inf values in the samples used; "
            f"run `layerprobe verify` on the store and re-extract that layer"
            for i in range(len(layers)) if i not in self.good
        }  # fmt: skip

    def identity(self, i: int, kind: str, **extra: Any) -> dict[str, Any]:
        layer = self.layers[i]
        return {**_identity(self.cfg, self.plan, self.site.name, layer, self.names[layer], kind), **extra}

    def add(self, identity: dict[str, Any], metrics: tuple[Any, Any], p: int, test_prob: torch.Tensor, seconds: float, **extra: Any) -> None:
        """Record probe ``p`` of a batch; a probe with non-finite outputs diverged and is marked failed."""
        if bool(torch.isfinite(test_prob).all()):
            outcome = Outcome(metric_values(metrics[0], p), metric_values(metrics[1], p), *self.sizes, seconds, **extra)
        else:
            outcome = Outcome(None, None, *self.sizes, seconds, error="training diverged (non-finite outputs); lower the learning rate or check the features")
        self.table.add(identity, outcome)

    def linear(self) -> None:
        params = params_json({**self.cfg.linear.params(), "class_weight": self.cfg.class_weight})
        for i, error in self.bad_error.items():
            self.table.add(self.identity(i, vocab.LINEAR, params=params), Outcome(None, None, *self.sizes, 0.0, error=error))
        self.advance(len(self.bad_error))
        for chunk in _linear_chunks(self.good, self.features, self.cfg):
            result = fit_linear_group(self.features.select(chunk), self.cfg.linear, n_classes=self.plan.n_classes, class_weight=self.weight)
            metrics = (classification_metrics(result.val_prob, self.features.y_val), classification_metrics(result.test_prob, self.features.y_test))
            for j, i in enumerate(chunk):
                identity = self.identity(i, vocab.LINEAR, params=params, matmul_dtype=vocab.FLOAT32)
                extra = {"chosen_c": float(result.chosen_c[j]), "converged": bool(result.converged[j])}
                self.add(identity, metrics, j, result.test_prob[j], result.seconds / len(chunk), **extra)
            self.advance(len(chunk))

    def mlp(self) -> None:
        cfg, features = self.cfg, self.features
        for variants in _by_structure(cfg.mlp_specs(features.train.shape[1])):
            spec = variants[0]
            dtype, reason = matmul_dtype(features.train.device, spec.batch_size, cfg.dtype)
            name = dtype_name(dtype)
            log.info("MLP probes (%s) train with %s matmuls: %s", spec.name, name, reason)

            def identity(i: int, seed: int, v: ProbeSpec) -> dict[str, Any]:
                params = params_json({**v.params(), "class_weight": cfg.class_weight})
                return self.identity(i, vocab.MLP, seed=seed, params=params, matmul_dtype=name)

            for i, error in self.bad_error.items():
                for seed in cfg.seeds:
                    for v in variants:
                        self.table.add(identity(i, seed, v), Outcome(None, None, *self.sizes, 0.0, error=error))
            self.advance(len(self.bad_error) * len(cfg.seeds) * len(variants))
            lowp = features.to(dtype)
            streams = [Stream(i, seed) for seed in cfg.seeds for i in self.good]
            per_group = streams_per_group(
                spec, len(variants), features.train.shape[2], features.val.shape[1] + features.test.shape[1],
                budget=cfg.max_memory // 2, low_precision=dtype != torch.float32, cap=cfg.group_probes,
                cache_bytes=group_cache_bytes(features.train.device),
            )  # fmt: skip
            for lo in range(0, len(streams), per_group):
                group = streams[lo : lo + per_group]
                result = train_mlp_group(lowp, group, variants, n_classes=self.plan.n_classes, class_weight=self.weight)
                metrics = (classification_metrics(result.val_prob, features.y_val), classification_metrics(result.test_prob, features.y_test))
                seconds = result.seconds / (len(group) * len(variants))
                for g, stream in enumerate(group):
                    for q, v in enumerate(variants):
                        p = g * len(variants) + q
                        self.add(identity(stream.layer, stream.seed, v), metrics, p, result.test_prob[p], seconds, best_epoch=int(result.best_epoch[p]))
                self.advance(len(group) * len(variants))


def _by_structure(specs: Iterable[ProbeSpec]) -> list[list[ProbeSpec]]:
    """Recipes that can train in one group (same structure, differing in lr/decay/dropout)."""
    groups: dict[tuple[Any, ...], list[ProbeSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.structure(), []).append(spec)
    return list(groups.values())


def _linear_chunks(layers: list[int], features: Features, cfg: SweepConfig) -> list[tuple[int, ...]]:
    """Layers fitted together: on a CPU, as many as keep the training features in half the cache."""
    if not layers:
        return []
    per_layer = 4 * features.train.shape[1] * features.train.shape[2]
    budget = last_level_cache_bytes() // 2 if features.train.device.type == "cpu" else cfg.max_memory // 4
    return layer_chunks(layers, per_layer, budget)
