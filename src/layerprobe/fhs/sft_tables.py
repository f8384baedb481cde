"""The fine-tuning arm's tables: Table 2 (frozen vs LoRA vision tower) and Table 3 (MLLM SFT vs
the vision-tower probe vs a vision tower trained with cross-entropy), as the paper lays them out.

Input is one row per (model, dataset, arm) with the numbers each table needs, so the tables do not
care where the numbers came from (the report builds the rows from results tables and store metadata):
``model`` (the base model's name), ``dataset``, ``arm`` (:data:`ARMS`), ``accuracy`` and ``f1``
(percent, test split; for the SFT arms the model's own answer, P_final), and ``p_v_end`` (percent:
the last vision-tower layer's probe accuracy, P(V,end), for the ``base`` arm).

Table 2's gap is what the paper's numbers imply (checked against its Table 2: HuatuoGPT-Vision-7B
-0.38%, MedGemma-4B +0.27%): the mean, over every dataset and both metrics (accuracy, F1), of the
frozen tower's relative difference to the LoRA-tuned tower, ``100 * (frozen - lora) / lora``. A
negative gap means freezing the tower cost accuracy. ``gap_kind="absolute"`` takes plain point
differences instead; the paper's text does not state its formula, so the choice is a parameter.

Table 3 rows, per model and dataset: MLLM SFT = the ``sft`` arm's accuracy (the tower arm the
run used, ``sft-lora`` preferred as in the paper's main SFT runs, else ``sft-frozen``), Feature
Probing = P(V,end) of the ``base`` arm (the vision tower as released), Vision Tower SFT = the
``vision-ce`` arm's accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

from layerprobe.vocab import ARM_BASE, ARM_SFT_FROZEN, ARM_SFT_LORA, ARM_VISION_CE, ARMS

GapKind = Literal["relative", "absolute"]


class ArmResult(NamedTuple):
    """The numbers of one (model, dataset, arm); percent; nan where not measured."""

    model: str
    dataset: str
    arm: str
    accuracy: float
    f1: float
    p_v_end: float = math.nan


class Table2Row(NamedTuple):
    model: str
    datasets: tuple[str, ...]
    lora: tuple[float, ...]
    """accuracy, F1 per dataset, in ``datasets`` order, tower tuned with LoRA."""
    frozen: tuple[float, ...]
    """the same with the tower frozen."""
    gap: float
    """percent (see the module docstring)."""


class Table3Row(NamedTuple):
    model: str
    dataset: str
    mllm_sft: float
    feature_probing: float
    vision_tower_sft: float


def _index(results: Sequence[ArmResult]) -> dict[tuple[str, str, str], ArmResult]:
    out: dict[tuple[str, str, str], ArmResult] = {}
    for r in results:
        if r.arm not in ARMS:
            raise ValueError(f"arm {r.arm!r} is not one of {ARMS}")
        out[r.model, r.dataset, r.arm] = r
    return out


def table2(results: Sequence[ArmResult], *, gap_kind: GapKind = "relative") -> list[Table2Row]:
    """One row per model that has both tower arms on at least one dataset (datasets in first-seen order)."""
    index = _index(results)
    rows = []
    for model in dict.fromkeys(r.model for r in results):
        datasets = tuple(d for d in dict.fromkeys(r.dataset for r in results if r.model == model)
                         if (model, d, ARM_SFT_LORA) in index and (model, d, ARM_SFT_FROZEN) in index)
        if not datasets:
            continue
        lora = tuple(v for d in datasets for v in (index[model, d, ARM_SFT_LORA].accuracy, index[model, d, ARM_SFT_LORA].f1))
        frozen = tuple(v for d in datasets for v in (index[model, d, ARM_SFT_FROZEN].accuracy, index[model, d, ARM_SFT_FROZEN].f1))
        rows.append(Table2Row(model, datasets, lora, frozen, gap(frozen, lora, gap_kind)))
    return rows


def gap(frozen: Sequence[float], lora: Sequence[float], kind: GapKind = "relative") -> float:
    """Mean difference of ``frozen`` to ``lora`` over paired values (see the module docstring)."""
    if kind == "relative":
        diffs = [100.0 * (f - t) / t if t else math.nan for f, t in zip(frozen, lora)]
    elif kind == "absolute":
        diffs = [f - t for f, t in zip(frozen, lora)]
    else:
        raise ValueError(f"gap_kind {kind!r} is not 'relative' or 'absolute'")
    return sum(diffs) / len(diffs) if diffs else math.nan


def table3(results: Sequence[ArmResult]) -> list[Table3Row]:
    """One row per (model, dataset) holding an SFT arm, the base arm's P(V,end) and a vision-CE arm."""
    index = _index(results)
    rows = []
    for model, dataset in dict.fromkeys((r.model, r.dataset) for r in results):
        sft = index.get((model, dataset, ARM_SFT_LORA)) or index.get((model, dataset, ARM_SFT_FROZEN))
        base = index.get((model, dataset, ARM_BASE))
        ce = index.get((model, dataset, ARM_VISION_CE))
        if sft and base and ce:
            rows.append(Table3Row(model, dataset, sft.accuracy, base.p_v_end, ce.accuracy))
    return rows


def _num(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"


def table2_markdown(rows: Sequence[Table2Row], escape=lambda s: s) -> str:
    """Table 2 as markdown: per model a LoRA row and a frozen row, accuracy and F1 per dataset, the gap."""
    if not rows:
        return ""
    datasets = rows[0].datasets
    head = "| model | tower | " + " | ".join(f"{escape(d)} Acc | {escape(d)} F1" for d in datasets) + " | gap |"
    lines = [head, "|" + "---|" * (3 + 2 * len(datasets))]
    for row in rows:
        lines.append(f"| {escape(row.model)} | LoRA | " + " | ".join(map(_num, row.lora)) + " | |")
        lines.append(f"| | frozen | " + " | ".join(map(_num, row.frozen)) + f" | {row.gap:+.2f}% |")
    return "\n".join(lines) + "\n"


def table3_markdown(rows: Sequence[Table3Row], escape=lambda s: s) -> str:
    """Table 3 as markdown: one row per training paradigm, one column per (model, dataset)."""
    if not rows:
        return ""
    head = "| paradigm | " + " | ".join(f"{escape(r.model)} {escape(r.dataset)}" for r in rows) + " |"
    lines = [head, "|" + "---|" * (1 + len(rows))]
    for title, field in (("MLLM SFT", "mllm_sft"), ("Feature Probing P(V,end)", "feature_probing"), ("Vision Tower SFT", "vision_tower_sft")):
        lines.append(f"| {title} | " + " | ".join(_num(getattr(r, field)) for r in rows) + " |")
    return "\n".join(lines) + "\n"
