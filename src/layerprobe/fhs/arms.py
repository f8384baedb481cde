"""Which arm of the study each run of a results table is, and the numbers Tables 2 and 3 take from it.

A run's arm (:data:`layerprobe.vocab.ARMS`):
- ``base``: a run without an adapter;
- ``sft-frozen`` / ``sft-lora``: a run whose store records the fine-tuning run that made its adapter
  (``RunMeta.extra["finetune"]``, written by ``extract --adapter`` for a ``layerprobe finetune``
  folder), by that run's ``vision_tower``; an adapter trained elsewhere has no arm and is left out;
- ``vision-ce``: rows of kind ``vision_ce`` (``layerprobe finetune --vision-ce``).

Runs are grouped by their BASE model: a fine-tuned run by the ``base_model_id`` its adapter records,
the others by ``model_id`` (``extract`` records the base model's id for an adapter run too), shown by
its short name; and by dataset (the manifest's name, which ``finetune``, ``extract`` and the
vision-CE row all record). Numbers, in percent, on the test split whatever split the profile uses
(the paper's tables are test scores): accuracy and F1 of the run's P_final (the model's own answer,
the same P_final row the profile reads), the vision-CE rows' test accuracy and F1 (mean over
seeds), and P(V,end) of the base run = its last vision-tower layer on the profile's vision site.
Several runs of one (model, dataset, arm) are averaged.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl

from layerprobe import vocab
from layerprobe.fhs.config import FHSConfig
from layerprobe.fhs.curves import LayerPoints, curves_from, layer_points
from layerprobe.fhs.sft_tables import ArmResult
from layerprobe.fhs.stores import store_details
from layerprobe.fhs.tables import short_name
from layerprobe.results import SOURCE, CheckedResults

F1 = "f1"
_TOWER_ARM = {vocab.FROZEN: vocab.ARM_SFT_FROZEN, vocab.LORA: vocab.ARM_SFT_LORA}


def run_extras(runs: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """``RunMeta.extra`` of each run's store where it is reachable (``{}`` where not)."""
    out = {}
    for row in runs.iter_rows(named=True):
        source = row.get(SOURCE)
        details = store_details(row["store"], relative_to=Path(source).parent if source else None)
        out[row["run_id"]] = dict(details.extra) if details else {}
    return out


def arm_of(adapter: str | None, extra: dict[str, Any]) -> tuple[str, str | None] | None:
    """(arm, base model id or None = the run's own) of one run, or None when its arm is unknown."""
    if not adapter:
        return vocab.ARM_BASE, None
    facts = extra.get("finetune")
    if not isinstance(facts, dict) or facts.get("vision_tower") not in _TOWER_ARM:
        return None
    return _TOWER_ARM[facts["vision_tower"]], facts.get("base_model_id")


def arm_results(checked: CheckedResults, points: LayerPoints, extras: dict[str, dict[str, Any]] | None = None) -> list[ArmResult]:
    """One :class:`ArmResult` per (base model, dataset, arm) found in ``checked`` (see the module docstring)."""
    runs = points.runs
    extras = run_extras(runs) if extras is None else extras
    arms = {}
    for row in runs.iter_rows(named=True):
        found = arm_of(row["adapter"], extras.get(row["run_id"], {}))
        if found is not None:
            arms[row["run_id"]] = (short_name(found[1] or row["model_id"]), row["dataset"], found[0])
    if all(arm == vocab.ARM_BASE for _, _, arm in arms.values()):
        return []  # no fine-tuned run: neither table can have a row
    ce = checked.frame.filter(pl.col("kind") == vocab.VISION_CE)
    acc, f1, v_end = _test_numbers(checked, points)
    values: dict[tuple[str, str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for run_id, key in arms.items():
        values[key].append((acc.get(run_id, math.nan), f1.get(run_id, math.nan), v_end.get(run_id, math.nan) if key[2] == vocab.ARM_BASE else math.nan))
    for row in ce.iter_rows(named=True):
        key = (short_name(row["model_id"]), row["dataset"], vocab.ARM_VISION_CE)
        values[key].append((_percent(row[vocab.metric_column(vocab.TEST, vocab.ACCURACY)]), _percent(row[vocab.metric_column(vocab.TEST, F1)]), math.nan))
    return [ArmResult(*key, *(_mean(v[i] for v in group) for i in range(3))) for key, group in values.items()]


def _test_numbers(checked: CheckedResults, points: LayerPoints) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per run: P_final test accuracy, P_final test F1 and P(V,end) test accuracy, in percent."""
    config: FHSConfig = points.config
    on_test = dataclasses.replace(config, split=vocab.TEST, metric=vocab.ACCURACY)
    acc_points = points if on_test == config else layer_points(checked, on_test)
    f1_points = layer_points(checked, dataclasses.replace(on_test, metric=F1))
    curves = curves_from(acc_points).filter(pl.col("module") == "V")
    last = curves.filter(pl.col("layer") == pl.col("layer").max().over("run_id"))
    return _finals(acc_points), _finals(f1_points), dict(zip(last.get_column("run_id"), last.get_column("p_mean"), strict=True))


def _finals(points: LayerPoints) -> dict[str, float]:
    finals = points.finals.group_by("run_id", maintain_order=True).agg(pl.col("p").mean())
    return dict(zip(finals.get_column("run_id"), finals.get_column("p"), strict=True))


def _percent(value: float | None) -> float:
    return math.nan if value is None or not math.isfinite(value) else 100.0 * value


def _mean(values) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
