"""Issue 12 #1 (metadata): a store extracted with a finetune adapter records the arm; gradient clipping is a setting."""

from __future__ import annotations

import json

import pytest
import torch

from layerprobe import vocab
from layerprobe.errors import LayerprobeError
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.runner import run_extract
from layerprobe.finetune import output
from layerprobe.finetune.config import FinetuneConfig, FinetuneError
from layerprobe.finetune.run import run_finetune
from layerprobe.finetune.train import training_arguments
from layerprobe.store import open_store
from layerprobe.testing.images import make_dataset

torch.set_num_threads(1)


def _extract(model, data, adapter, out):
    return open_store(run_extract(ExtractConfig(model=str(model), adapter=adapter, dataset=str(data), out=out, dtype="float32",
                                                device="cpu", num_workers=0, progress=False)))


def test_store_records_the_fine_tuned_arm(tiny_checkpoint, tmp_path):
    model = tiny_checkpoint("qwen2_vl")
    data = make_dataset(tmp_path / "data", n_per_class=4, size=56)
    adapter = run_finetune(FinetuneConfig(model=str(model), dataset=str(data), out=tmp_path / "lora", dtype="float32", device="cpu",
                                          batch_size=2, max_steps=2, vision_tower=vocab.FROZEN, save_steps=100, progress=False))
    doc = json.loads((adapter / output.METADATA_FILE).read_text())
    facts = _extract(model, data, str(adapter), tmp_path / "sft.zarr").meta.extra["finetune"]
    assert facts["vision_tower"] == vocab.FROZEN and facts["connector"] == vocab.LORA
    assert facts["base_model_id"] == doc["base_model_id"] == str(model) and facts["base_model_hash"] == doc["base_model_hash"]
    assert facts["dataset_name"] == doc["dataset_name"] and facts["manifest_sha256"] == doc["manifest_sha256"]
    assert facts["hyperparameters"] == doc["hyperparameters"] and facts["hyperparameters"]["max_steps"] == 2
    assert "epochs" not in facts and "library_versions" not in facts  # the arm's identity, not its training log
    assert "finetune" not in _extract(model, data, None, tmp_path / "base.zarr").meta.extra
    # a broken metadata file is a one-line error naming it, before anything is written
    (adapter / output.METADATA_FILE).write_text("{not json")
    with pytest.raises(LayerprobeError, match=output.METADATA_FILE) as err:
        _extract(model, data, str(adapter), tmp_path / "broken.zarr")
    assert "\n" not in str(err.value)


def test_no_gradient_clipping_by_default(tmp_path):
    """transformers' Trainer clips at 1.0 unless told otherwise; the paper names no clipping."""
    cpu = torch.device("cpu")
    plain = FinetuneConfig(model="m", dataset="d", out=tmp_path / "a")
    assert plain.max_grad_norm is None and training_arguments(plain, tmp_path / "c", cpu).max_grad_norm == 0.0
    clipped = FinetuneConfig(model="m", dataset="d", out=tmp_path / "a", max_grad_norm=0.5)
    assert training_arguments(clipped, tmp_path / "c", cpu).max_grad_norm == 0.5
    assert clipped.identity()["max_grad_norm"] == 0.5  # it changes the adapter: part of the run's identity
    with pytest.raises(FinetuneError, match="max_grad_norm"):
        FinetuneConfig(model="m", dataset="d", out=tmp_path / "a", max_grad_norm=0.0)
