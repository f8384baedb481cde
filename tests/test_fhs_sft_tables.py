"""Tables 2 and 3 of the fine-tuning arm, checked on the paper's own numbers."""

from __future__ import annotations

import math

import pytest

from layerprobe.fhs.sft_tables import ArmResult, gap, table2, table2_markdown, table3, table3_markdown
from layerprobe.vocab import ARM_BASE, ARM_SFT_FROZEN, ARM_SFT_LORA, ARM_VISION_CE

DATASETS = ("BUSI", "COVID19-CT", "Chest-Xray")
# The paper's Table 2 (accuracy, F1 per dataset; LoRA-tuned tower, then frozen) and its stated gaps.
PAPER_T2 = {
    "HuatuoGPT-Vision-7B": ((84.00, 83.19, 78.82, 78.82, 78.53, 85.31), (82.67, 80.92, 78.33, 78.22, 80.29, 86.32), -0.38),
    "MedGemma-4B": ((84.00, 83.34, 80.79, 80.98, 70.51, 80.91), (83.33, 82.51, 78.82, 78.39, 74.84, 83.24), 0.27),
}


def _arms(model, lora, frozen):
    out = []
    for i, d in enumerate(DATASETS):
        out.append(ArmResult(model, d, ARM_SFT_LORA, lora[2 * i], lora[2 * i + 1]))
        out.append(ArmResult(model, d, ARM_SFT_FROZEN, frozen[2 * i], frozen[2 * i + 1]))
    return out


def test_table2_gap_reproduces_the_paper() -> None:
    results = [r for model, (lora, frozen, _) in PAPER_T2.items() for r in _arms(model, lora, frozen)]
    rows = table2(results)
    assert [r.model for r in rows] == list(PAPER_T2)
    for row in rows:
        assert row.datasets == DATASETS
        assert round(row.gap, 2) == PAPER_T2[row.model][2]
    text = table2_markdown(rows)
    assert "-0.38%" in text and "+0.27%" in text and text.count("| frozen |") == 2


def test_gap_kinds() -> None:
    assert gap((90.0,), (100.0,)) == pytest.approx(-10.0)
    assert gap((90.0,), (100.0,), "absolute") == pytest.approx(-10.0)
    assert gap((45.0,), (50.0,), "absolute") == pytest.approx(-5.0)
    with pytest.raises(ValueError):
        gap((1.0,), (1.0,), "other")


def test_table3_needs_all_three_paradigms() -> None:
    # the paper's Table 3, MedGemma-1.5-4B on BUSI: SFT 89.33, probing 86.00, vision-tower SFT 93.33
    results = [
        ArmResult("MedGemma-1.5-4B", "BUSI", ARM_SFT_LORA, 89.33, math.nan),
        ArmResult("MedGemma-1.5-4B", "BUSI", ARM_BASE, 70.0, 65.0, p_v_end=86.00),
        ArmResult("MedGemma-1.5-4B", "BUSI", ARM_VISION_CE, 93.33, math.nan),
        ArmResult("MedGemma-1.5-4B", "COVID19-CT", ARM_SFT_LORA, 83.74, math.nan),  # no base or CE run: no column
    ]
    rows = table3(results)
    assert [(r.model, r.dataset, r.mllm_sft, r.feature_probing, r.vision_tower_sft) for r in rows] == [
        ("MedGemma-1.5-4B", "BUSI", 89.33, 86.00, 93.33)
    ]
    text = table3_markdown(rows)
    assert "| MLLM SFT | 89.33 |" in text and "| Vision Tower SFT | 93.33 |" in text


def test_unknown_arm_is_refused() -> None:
    with pytest.raises(ValueError, match="arm"):
        table2([ArmResult("m", "d", "sft-maybe", 1.0, 1.0)])
