"""``finetune --dtype auto`` (the default) resolves as extraction resolves it, before the model loads:
printed, recorded in the adapter's metadata (name and reason), compared on resume; the vision-CE
baseline too. The CPU's bf16 capability is patched both ways, so these hold on every CPU kind."""

from __future__ import annotations

import json
import logging

import polars as pl
import pytest
import torch
from click.testing import CliRunner

from layerprobe import hardware, vocab
from layerprobe.finetune import output
from layerprobe.finetune.config import FinetuneConfig, FinetuneError
from layerprobe.finetune.run import resolve_task, run_finetune, run_identity
from layerprobe.finetune.vision_ce import run_vision_ce
from layerprobe.finetune.vision_ce_config import VisionCEConfig
from layerprobe.testing.images import make_dataset
from test_extract_auto_dtype import cpu_kind  # noqa: F401 -- the fixture that patches the CPU's bf16 checks both ways

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("auto-ft"), n_per_class=4, size=56)


def _cfg(model, dataset, out, **overrides) -> FinetuneConfig:
    base = dict(model=str(model), dataset=str(dataset), out=out, device="cpu", batch_size=2, max_steps=1, save_steps=1000, progress=False)
    return FinetuneConfig(**{**base, **overrides})


def _meta(adapter) -> dict:
    return json.loads((adapter / output.METADATA_FILE).read_text())


def test_auto_is_the_default_of_both_configs(tmp_path) -> None:
    assert FinetuneConfig(model="m", dataset="d", out=tmp_path / "a").dtype == vocab.AUTO
    assert VisionCEConfig(model="m", dataset="d", out=tmp_path / "a.parquet").dtype == vocab.AUTO
    with pytest.raises(FinetuneError, match="dtype 'half' is not one of auto"):
        FinetuneConfig(model="m", dataset="d", out=tmp_path / "a", dtype="half")


@pytest.mark.parametrize("native, expected, words", [(True, vocab.BFLOAT16, "AMX"), (False, vocab.FLOAT32, "fit the memory budget")])
def test_the_metadata_records_the_resolved_dtype_and_the_reason(tiny_checkpoint, small_set, tmp_path, cpu_kind, capsys, native, expected, words):
    cpu_kind(native)
    adapter = run_finetune(_cfg(tiny_checkpoint("qwen2_vl"), small_set, tmp_path / "lora", progress=True))
    doc = _meta(adapter)
    assert doc["compute_dtype"] == expected and doc["hyperparameters"]["dtype"] == expected
    assert doc["compute_dtype_reason"].startswith("auto: ") and words in doc["compute_dtype_reason"]
    assert f"lora: compute dtype {expected} (auto: " in capsys.readouterr().err


def test_the_weights_are_sized_before_loading_and_a_small_budget_gives_bf16(tiny_checkpoint, small_set, tmp_path, cpu_kind, monkeypatch, caplog):
    cpu_kind(False)
    monkeypatch.setattr(hardware, "available_memory_bytes", lambda device: 1000)  # far below the checkpoint's fp32 size
    with caplog.at_level(logging.WARNING, logger="layerprobe.hardware"):
        adapter = run_finetune(_cfg(tiny_checkpoint("qwen2_vl"), small_set, tmp_path / "lora"))
    doc = _meta(adapter)
    assert doc["compute_dtype"] == vocab.BFLOAT16 and "exceed the memory budget" in doc["compute_dtype_reason"]
    assert any("will be slow here" in r.getMessage() for r in caplog.records)


def test_resume_with_auto_compares_the_resolved_dtype(tiny_checkpoint, small_set, tmp_path, cpu_kind):
    cfg = _cfg(tiny_checkpoint("qwen2_vl"), small_set, tmp_path / "lora")
    # An unfinished run started with --dtype float32 (its run.json, as run_finetune writes it first).
    output.claim_work_folder(cfg.out, run_identity(cfg, resolve_task(cfg).manifest, vocab.FLOAT32))
    cpu_kind(True)  # auto -> bfloat16: another run
    with pytest.raises(FinetuneError) as info:
        run_finetune(cfg)
    assert "dtype='float32', not 'bfloat16'" in str(info.value) and "\n" not in str(info.value)
    cpu_kind(False)  # auto -> float32: the same run, resumed and finished
    adapter = run_finetune(cfg)
    assert _meta(adapter)["compute_dtype"] == vocab.FLOAT32


def test_vision_ce_resolves_auto_too(tiny_checkpoint, small_set, tmp_path, cpu_kind, capsys):
    cpu_kind(False)
    out = run_vision_ce(VisionCEConfig(model=str(tiny_checkpoint("qwen2_vl")), dataset=str(small_set), out=tmp_path / "ce.parquet", device="cpu",
                                       epochs=1, progress=True))  # fmt: skip
    row = pl.read_parquet(out).row(0, named=True)
    assert row["matmul_dtype"] == vocab.FLOAT32 and json.loads(row["params"])["dtype"] == vocab.FLOAT32
    assert "ce.parquet: compute dtype float32 (auto: " in capsys.readouterr().err


def test_finetune_help_documents_auto() -> None:
    from layerprobe.cli.finetune_cmd import finetune

    text = CliRunner().invoke(finetune, ["--help"]).output
    assert "auto" in text and "native bf16" in text and "[default: auto]" in text
