"""The vision-tower CE baseline (Table 3): tower modes, the results row, fhs beside it, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

from layerprobe import vocab
from layerprobe.extract.model.adapters import get_adapter
from layerprobe.extract.model.loading import load_model
from layerprobe.finetune.config import FinetuneError
from layerprobe.finetune.targets import lora_modules
from layerprobe.finetune.vision_ce import run_vision_ce
from layerprobe.finetune.vision_ce_config import VisionCEConfig
from layerprobe.finetune.vision_tower import prepare_tower, tower_parts
from layerprobe.results import check_results, load_results
from layerprobe.testing.easy import make_easy_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def easy_set(tmp_path_factory):
    return make_easy_dataset(tmp_path_factory.mktemp("easy"), n_per_class=10, size=56)


def _cfg(model, dataset, out, **overrides):
    base = dict(model=str(model), dataset=str(dataset), out=out, dtype="float32", device="cpu", epochs=2, learning_rate=1e-3, progress=False)
    return VisionCEConfig(**{**base, **overrides})


def _one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("family,tower", [("qwen2_vl", vocab.LORA), ("llava", vocab.FULL)])
def test_one_row_in_the_results_contract(family, tower, tiny_checkpoint, easy_set, tmp_path):
    model = tiny_checkpoint(family)
    out = run_vision_ce(_cfg(model, easy_set, tmp_path / "ce.parquet", tower=tower, keep=vocab.KEEP_BEST))
    frame = pl.read_parquet(out)
    assert frame.columns == list(vocab.RESULT_COLUMNS) and frame.height == 1
    check_results(frame)
    row = load_results([out]).frame.row(0, named=True)
    n_blocks = json.loads((model / "config.json").read_text())
    assert row["kind"] == vocab.VISION_CE and row["site"] == vocab.VISION and row["status"] == vocab.STATUS_OK
    assert row["layer"] == 1 and row["layer_name"] == vocab.vision_layer_names(2)[-1]  # the tiny towers have 2 blocks
    assert row["model_id"] == str(model) and row["dataset"] == easy_set.name and row["seed"] == 0 and n_blocks
    assert (row["n_train"], row["n_val"], row["n_test"]) == (12, 4, 4)  # the probe sweep's 60/20/20 split of 20
    assert row["preset"] == "custom" and json.loads(row["params"])["tower"] == tower
    assert 1 <= row["best_epoch"] <= 2 and row["split"].startswith("stratified seed=0")
    for split in vocab.SCORED_SPLITS:
        assert 0 <= row[vocab.metric_column(split, vocab.ACCURACY)] <= 1


def test_the_run_id_is_the_same_wherever_the_model_folder_is(tiny_checkpoint, easy_set, tmp_path):
    import shutil

    model = tiny_checkpoint("llava")
    moved = shutil.copytree(model, tmp_path / "elsewhere" / model.name)
    ids = [pl.read_parquet(run_vision_ce(_cfg(m, easy_set, tmp_path / f"ce{i}.parquet", epochs=1)))["run_id"][0] for i, m in enumerate((model, moved))]
    assert ids[0] == ids[1]
    doc = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**doc, "vision_feature_layer": -1}))  # same weights, another config
    assert pl.read_parquet(run_vision_ce(_cfg(moved, easy_set, tmp_path / "ce2.parquet", epochs=1)))["run_id"][0] != ids[0]


def test_paper_preset_is_named_so():
    cfg = VisionCEConfig(model="m", dataset="d", out="r.parquet")
    assert cfg.preset == vocab.PRESET_PAPER and (cfg.tower, cfg.head, cfg.learning_rate, cfg.epochs, cfg.batch_size) == (vocab.LORA, vocab.LINEAR, 1e-4, 20, 4)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "gemma3"])
def test_tower_modes_train_the_tower_only(family, tiny_checkpoint):
    for mode in vocab.VISION_CE_TOWER_MODES:
        loaded = load_model(tiny_checkpoint(family), dtype="float32")
        parts = tower_parts(loaded, get_adapter(loaded))
        model = loaded.model
        params = prepare_tower(model, parts, mode, r=8, alpha=32, dropout=0.0)
        trained = {n for n, p in model.named_parameters() if p.requires_grad}
        assert {id(p) for p in params} == {id(p) for n, p in model.named_parameters() if p.requires_grad}
        if mode == vocab.LORA:
            wrapped = lora_modules(model)
            assert wrapped and all(parts.part_of(n) == "vision" for n in wrapped)
            assert trained and all("lora_" in n and parts.part_of(n) == "vision" for n in trained)
        else:
            assert not lora_modules(model)
            tower = {n for n, _ in model.named_parameters() if parts.part_of(n) == "vision"}
            assert trained == tower and all(p.dtype == torch.float32 for p in params)


def test_bad_input(tiny_checkpoint, easy_set, tmp_path):
    model = tiny_checkpoint("llava")
    (tmp_path / "old.parquet").write_bytes(b"x")
    with pytest.raises(FinetuneError) as err:
        run_vision_ce(_cfg(model, easy_set, tmp_path / "old.parquet"))
    assert "already exists" in _one_line(err)
    with pytest.raises(FinetuneError) as err:
        _cfg(model, easy_set, tmp_path / "folder")
    assert ".parquet" in _one_line(err)
    with pytest.raises(FinetuneError) as err:
        _cfg(model, easy_set, tmp_path / "r.parquet", tower="frozen")
    assert "tower 'frozen' is not one of" in _one_line(err)
    images = sorted(easy_set.rglob("*.png"))
    table = easy_set / "no-train.csv"
    table.write_text("path,label,split\n" + "".join(f"{p.relative_to(easy_set)},{p.parent.name},{'test' if i % 2 else 'val'}\n" for i, p in enumerate(images)))
    with pytest.raises(FinetuneError) as err:
        run_vision_ce(_cfg(model, table, tmp_path / "r.parquet"))
    assert "no train split" in _one_line(err)
    assert not (tmp_path / "r.parquet").exists()


def test_fhs_loads_it_beside_a_probe_table(tiny_checkpoint, easy_set, tmp_path):
    """The probe run's profile is the same with the vision-CE table loaded beside it."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_fhs_profile import make_results, synthetic_run

    from layerprobe.fhs import profile_runs

    probes = tmp_path / "probes.parquet"
    make_results([synthetic_run("run-a", "m", "ds")]).write_parquet(probes)
    ce = run_vision_ce(_cfg(tiny_checkpoint("llava"), easy_set, tmp_path / "ce.parquet", epochs=1))
    both = load_results([probes, ce])
    assert sorted(set(both.frame.get_column("kind"))) == sorted({vocab.MLP, vocab.MODEL_KIND, vocab.VISION_CE})
    alone = {p.run_id: p for p in profile_runs(load_results([probes]))}
    beside = {p.run_id: p for p in profile_runs(both)}
    assert beside["run-a"] == alone["run-a"]


def test_cli(tiny_checkpoint, easy_set, tmp_path, capsys):
    from layerprobe.cli import main

    base = ["finetune", "--vision-ce", "--model", str(tiny_checkpoint("llava")), "--dataset", str(easy_set), "--dtype", "float32",
            "--device", "cpu", "--epochs", "1", "--no-progress"]
    main([*base, "--out", str(tmp_path / "ce.parquet"), "--ce-head", "mlp", "--ce-head-hidden", "16", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["kind"] == vocab.VISION_CE and summary["results"] == str(tmp_path / "ce.parquet")
    assert json.loads(pl.read_parquet(tmp_path / "ce.parquet")["params"][0])["head_hidden"] == 16
    for extra, message in (([ "--connector", "full"], "--connector do not apply to --vision-ce"),):
        with pytest.raises(SystemExit):
            main([*base, "--out", str(tmp_path / "x.parquet"), *extra])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["finetune", "--model", "m", "--dataset", "d", "--out", "o", "--ce-head", "mlp"])
    assert "--ce-head only apply with --vision-ce" in capsys.readouterr().err
