"""run_finetune end to end on a tiny model: the adapter folder, its metadata, extract --adapter, bad input."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import polars as pl
import pytest
import torch

from layerprobe import vocab
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.model.loading import load_model
from layerprobe.extract.runner import run_extract
from layerprobe.testing.images import make_dataset
from layerprobe.finetune import output
from layerprobe.finetune.callbacks import COMPLETE_MARKER
from layerprobe.finetune.config import FinetuneConfig, FinetuneError
from layerprobe.finetune.run import resolve_task, run_finetune, run_identity
from layerprobe.probe.config import SweepConfig
from layerprobe.store import open_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synthetic"), n_per_class=4, size=56)


def _cfg(model, dataset, out, **overrides):
    base = dict(model=str(model), dataset=str(dataset), out=out, dtype="float32", device="cpu", batch_size=2, epochs=2,
                learning_rate=1e-2, save_steps=2, progress=False)
    return FinetuneConfig(**{**base, **overrides})


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_adapter_folder_and_extract_with_it(tiny_checkpoint, small_set, tmp_path):
    model = tiny_checkpoint("qwen2_vl")
    out = run_finetune(_cfg(model, small_set, tmp_path / "lora", keep=vocab.KEEP_BEST))
    assert out == tmp_path / "lora" and not output.work_folder(out).exists()
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", output.METADATA_FILE, output.STEPS_FILE, output.CURVE_FILE} <= names
    doc = json.loads((out / output.METADATA_FILE).read_text())
    base = load_model(model, dtype="float32")
    assert doc["base_model_hash"] == base.model_hash and doc["model_type"] == "qwen2_vl"
    assert doc["vision_tower"] == vocab.LORA and doc["connector"] == vocab.LORA and doc["kept"]["mode"] == vocab.KEEP_BEST
    assert len(doc["epochs"]) == 2 and {"train_loss", "val_loss", f"val_{vocab.ACCURACY}"} <= set(doc["epochs"][0])
    assert doc["splits"]["source"] == "stratified" and doc["hyperparameters"]["lora_r"] == 8
    assert {"torch", "transformers", "peft"} <= set(doc["library_versions"])
    steps = pl.read_parquet(out / output.STEPS_FILE)
    assert steps.columns == ["step", "epoch", "loss", "lr", "samples_per_second"]
    assert steps["step"].to_list() == list(range(1, steps.height + 1)) and steps.height == 6  # 2 epochs x 3 batches of 2
    assert (out / output.CURVE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # extract --adapter reads the folder: the store records it, and the answers differ from the base model's
    stores = {}
    for name, adapter in (("base", None), ("sft", str(out))):
        stores[name] = open_store(run_extract(ExtractConfig(model=str(model), adapter=adapter, dataset=str(small_set), out=tmp_path / f"{name}.zarr",
                                                            dtype="float32", device="cpu", num_workers=0, progress=False)))
    assert stores["sft"].meta.adapter == str(out) and stores["sft"].meta.adapter_hash
    assert stores["sft"].meta.candidate_token_ids == tuple(doc["candidate_token_ids"])
    assert stores["sft"].meta.prompt_template == doc["prompt_template"]
    assert not np.array_equal(stores["sft"].answer_logits().numpy(), stores["base"].answer_logits().numpy())


def test_split_defaults_are_the_probe_sweeps():
    fields = SweepConfig.__dataclass_fields__
    assert (fields["split_seed"].default, fields["split_fractions"].default) == (vocab.SPLIT_SEED, vocab.SPLIT_FRACTIONS)


def test_existing_output_is_refused(tiny_checkpoint, small_set, tmp_path):
    (tmp_path / "lora").mkdir()
    with pytest.raises(FinetuneError) as err:
        run_finetune(_cfg(tiny_checkpoint("llava"), small_set, tmp_path / "lora"))
    assert "already exists" in _one_line(err)


def test_another_runs_unfinished_folder_is_refused(tiny_checkpoint, small_set, tmp_path):
    cfg = _cfg(tiny_checkpoint("llava"), small_set, tmp_path / "lora")
    output.claim_work_folder(cfg.out, {**run_identity(cfg, resolve_task(cfg).manifest, cfg.dtype), "lora_r": 4})
    with pytest.raises(FinetuneError) as err:
        run_finetune(cfg)
    assert "lora_r=4" in _one_line(err)


def _table(root, rows, name="table.csv"):
    path = root / name
    path.write_text("path,label,split\n" + "".join(f"{p},{label},{split}\n" for p, label, split in rows))
    return path


def test_dataset_without_train_split(tiny_checkpoint, small_set, tmp_path):
    images = sorted(small_set.rglob("*.png"))
    table = _table(small_set, [(p.relative_to(small_set), p.parent.name, "test" if i % 2 else "val") for i, p in enumerate(images)])
    with pytest.raises(FinetuneError) as err:
        run_finetune(_cfg(tiny_checkpoint("llava"), table, tmp_path / "lora"))
    assert "no train split" in _one_line(err)
    assert not (tmp_path / "lora").exists() and not output.work_folder(tmp_path / "lora").exists()


def test_class_without_candidate(tiny_checkpoint, small_set, tmp_path):
    with pytest.raises(FinetuneError) as err:
        run_finetune(_cfg(tiny_checkpoint("llava"), small_set, tmp_path / "lora", candidates=("Normal", "Benign")))
    message = _one_line(err)
    assert "without a candidate: normal" in message or "malignant" in message


def test_template_that_cannot_place_an_image(tiny_checkpoint, small_set, tmp_path):
    model = tmp_path / "text-only-template"
    shutil.copytree(tiny_checkpoint("llava"), model)
    (model / "chat_template.jinja").write_text(
        "{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %} {% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    with pytest.raises(FinetuneError) as err:
        run_finetune(_cfg(model, small_set, tmp_path / "lora"))
    assert "does not place the image" in _one_line(err)
    assert not (tmp_path / "lora").exists()


def test_disk_full_during_a_checkpoint(tiny_checkpoint, small_set, tmp_path, monkeypatch):
    """The second checkpoint fails half-written: one-line error, no adapter folder, the half checkpoint
    unmarked; the rerun resumes from the first checkpoint and finishes."""
    from transformers import Trainer

    saves = []
    real = Trainer._save_optimizer_and_scheduler

    def failing(self, output_dir):
        saves.append(output_dir)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", failing)
    cfg = _cfg(tiny_checkpoint("llava"), small_set, tmp_path / "lora")
    with pytest.raises(FinetuneError) as err:
        run_finetune(cfg)
    assert "disk full" in _one_line(err)
    checkpoints = output.work_folder(cfg.out) / "checkpoints"
    assert not cfg.out.exists()
    assert (checkpoints / "checkpoint-2" / COMPLETE_MARKER).is_file()
    assert (checkpoints / "checkpoint-4").is_dir() and not (checkpoints / "checkpoint-4" / COMPLETE_MARKER).exists()
    assert output.last_complete_checkpoint(checkpoints).name == "checkpoint-2"
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", real)
    assert (run_finetune(cfg) / "adapter_model.safetensors").is_file()


def test_cli_finetune_json(tiny_checkpoint, small_set, tmp_path, capsys):
    from layerprobe.cli import main

    out = tmp_path / "lora"
    main(["finetune", "--model", str(tiny_checkpoint("llava")), "--dataset", str(small_set), "--out", str(out), "--dtype", "float32",
          "--device", "cpu", "--max-steps", "2", "--batch-size", "2", "--vision-tower", "frozen", "--json", "--no-progress"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["adapter"] == str(out) and summary["steps"] == 2
    assert json.loads((out / output.METADATA_FILE).read_text())["vision_tower"] == vocab.FROZEN
