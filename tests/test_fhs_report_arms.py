"""Issue 12 #5: the report writes Tables 2 and 3 from results tables + store metadata, and the overlay pairs
fine-tuned runs with their base model by what finetune records."""

from __future__ import annotations

import dataclasses
import math

import polars as pl
import pytest
from test_fhs_profile import make_results, make_row, synthetic_run

from layerprobe import vocab
from layerprobe.fhs import build_report
from layerprobe.fhs.arms import arm_results
from layerprobe.fhs.curves import layer_points
from layerprobe.results import load_results
from layerprobe.testing import stores

BASE_ID = "/models/org/tiny-gemma"


def _store(path, extra):
    run = stores.synthetic_run(10, {"vision/mean": (2, 8)})
    meta = dataclasses.replace(run.meta, model_id=BASE_ID, extra=extra)
    stores.write_synthetic_store(path, dataclasses.replace(run, meta=meta))
    return str(path)


def _facts(tower):
    return {"finetune": {"base_model_id": BASE_ID, "base_model_hash": "ab" * 32, "vision_tower": tower, "connector": vocab.LORA,
                         "dataset_name": "busi", "manifest_sha256": "cd" * 32, "hyperparameters": {"lora_r": 8}}}


@pytest.fixture()
def arm_tables(tmp_path):
    runs = [
        (synthetic_run("base", BASE_ID, "busi", final=0.70), _store(tmp_path / "base.zarr", {})),
        (synthetic_run("lora", BASE_ID, "busi", adapter="/ad/lora", final=0.80, shift=0.02, rng=1), _store(tmp_path / "lora.zarr", _facts(vocab.LORA))),
        (synthetic_run("frozen", BASE_ID, "busi", adapter="/ad/frozen", final=0.76, rng=2), _store(tmp_path / "frozen.zarr", _facts(vocab.FROZEN))),
    ]
    probes = make_results([{**run, "store": store} for run, store in runs])
    ce_run = dict(run_id="vision_ce-123", model_id=BASE_ID, adapter="", dataset="busi", store="")
    ce = pl.DataFrame([make_row(ce_run, vocab.VISION, 7, "vision.block7", vocab.VISION_CE, 0, 0.9)], schema_overrides={"error": pl.String}).select(probes.columns)
    paths = [tmp_path / "probes.parquet", tmp_path / "ce.parquet"]
    probes.write_parquet(paths[0])
    ce.write_parquet(paths[1])
    return paths


def test_arm_results_from_tables_and_store_metadata(arm_tables):
    checked = load_results(arm_tables)
    got = {(r.model, r.dataset, r.arm): r for r in arm_results(checked, layer_points(checked))}
    assert set(got) == {("tiny-gemma", "busi", arm) for arm in vocab.ARMS}
    assert got["tiny-gemma", "busi", vocab.ARM_SFT_LORA].accuracy == pytest.approx(80.0)
    assert got["tiny-gemma", "busi", vocab.ARM_SFT_FROZEN].f1 == pytest.approx(71.0)  # the fixture's f1 = accuracy - 0.05
    assert got["tiny-gemma", "busi", vocab.ARM_VISION_CE].accuracy == pytest.approx(90.0)
    base = got["tiny-gemma", "busi", vocab.ARM_BASE]
    vision = checked.frame.filter((pl.col("run_id") == "base") & (pl.col("site") == vocab.VISION) & (pl.col("layer") == 5))
    assert base.p_v_end == pytest.approx(100 * vision.get_column("test_accuracy").mean())
    assert math.isnan(got["tiny-gemma", "busi", vocab.ARM_SFT_LORA].p_v_end)


def test_report_writes_tables_2_and_3(arm_tables, tmp_path):
    rep = build_report(arm_tables, tmp_path / "report")
    text = rep.markdown.read_text()
    assert "## Frozen vs LoRA-tuned vision tower (Table 2)" in text and "(Table 3)" in text
    t2 = (rep.folder / "table2.md").read_text()
    assert "| tiny-gemma | LoRA | 80.00 | 75.00 | |" in t2 and "| | frozen | 76.00 | 71.00 | -5.17% |" in t2
    assert t2 in text
    t3 = pl.read_csv(rep.folder / "table3.csv")
    assert t3.row(0, named=True)["mllm_sft"] == pytest.approx(80.0) and t3.row(0, named=True)["vision_tower_sft"] == pytest.approx(90.0)
    assert pl.read_csv(rep.folder / "table2.csv").height == 2
    assert "Table 2" in rep.html.read_text() and "- `table3.csv`" in text
    # the overlay: base and both fine-tuned runs in one panel, matched by the base model
    svg = (rep.folder / "figures" / "pipeline_busi.svg").read_text()
    assert "base model" in svg and "+ lora" in svg and "+ frozen" in svg


def test_no_fine_tuned_run_no_tables(arm_tables, tmp_path):
    only_base = load_results(arm_tables[:1]).frame.filter(pl.col("run_id") == "base")
    rep = build_report(only_base, tmp_path / "report")
    assert "Table 2" not in rep.markdown.read_text() and not (rep.folder / "table2.md").exists()


def test_vision_ce_rows_are_not_profiled(arm_tables, tmp_path):
    rep = build_report(arm_tables, tmp_path / "report")
    assert "vision_ce-123" not in rep.profile_md.read_text()
    assert pl.read_csv(rep.profile_csv).height == 3
