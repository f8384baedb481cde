"""Store-backed sweeps: the results-table contract, the model row, bad input, the CLI, imports."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from layerprobe.errors import ProbeError
from layerprobe.probe.config import SweepConfig
from layerprobe.probe.metrics import classification_metrics
from layerprobe.probe.reference import compare_linear_to_sklearn
from layerprobe.probe.sweep import run_sweep
from layerprobe.testing.stores import synthetic_answer_logits, synthetic_labels, synthetic_site, tensor_run, write_synthetic_store
from layerprobe.store import open_store

CONTRACT = (
    "run_id", "store", "model_id", "adapter", "dataset", "site", "layer", "layer_name", "kind", "seed", "preset",
    "params", "status", "error", "val_accuracy", "val_f1", "val_precision", "val_recall", "val_auc",
    "test_accuracy", "test_f1", "test_precision", "test_recall", "test_auc", "n_train", "n_val", "n_test", "train_seconds",
)  # fmt: skip
"""docs/architecture.md, "layerprobe.probe -> results table", in order."""
SITES = {"vision/mean": 3, "llm/image_mean": 2}
HIDDEN = 16


def make_store(path: Path, labels: np.ndarray, *, class_names: tuple[str, ...] = ("benign", "malignant"), seed: int = 0,
               splits: tuple[str, ...] | None = None, nan_at: tuple[str, int] | None = None, dataset: str = "synthetic") -> Path:  # fmt: skip
    """A complete store written through StoreWriter, with synthetic activations (one NaN at ``nan_at``)."""
    acts = {name: synthetic_site(labels, n_layers, HIDDEN, seed=seed + k, peak=1.5).x_lnd for k, (name, n_layers) in enumerate(SITES.items())}
    if nan_at is not None:
        acts[nan_at[0]][nan_at[1], 3, 5] = float("nan")
    logits = synthetic_answer_logits(labels, len(class_names), seed=seed)
    run = tensor_run(acts, labels, class_names, answer_logits=logits, splits=splits, dataset_name=dataset)
    return write_synthetic_store(path, run, chunk_samples=32)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("stores") / "run.zarr", synthetic_labels(150, 2, seed=0))


def _config(store: Path, **kwargs: object) -> SweepConfig:
    defaults = {"preset": "fast", "seeds": (0, 1), "progress": False}
    return SweepConfig(stores=(store,), **{**defaults, **kwargs})


def test_results_table_contract(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "r.parquet"
    frame = run_sweep(_config(store_path, out=out))
    assert frame.columns[: len(CONTRACT)] == list(CONTRACT)
    assert frame.equals(pl.read_parquet(out))
    n_layers = sum(SITES.values())
    assert frame.height == 1 + n_layers * (2 + 1)  # model row + (2 MLP seeds + 1 linear) per layer
    assert frame.filter(pl.col("status") != "ok").height == 0
    model = frame.filter(pl.col("kind") == "model")
    assert model.select("site", "layer", "seed", "preset").row(0) == ("answer_logits", 0, None, None)
    probes = frame.filter(pl.col("kind") != "model")
    assert set(probes.get_column("site")) == set(SITES)
    assert probes.filter(pl.col("kind") == "mlp").get_column("seed").to_list().count(1) == n_layers
    assert set(frame.get_column("layer_name")) == {"block_0", "block_1", "block_2", "embed", "layer_1", "answer"}  # vocab's layer names
    metrics = [c for c in CONTRACT if c.startswith(("val_", "test_"))]
    values = frame.select(metrics).to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    assert (frame.get_column("n_train") + frame.get_column("n_val") + frame.get_column("n_test") == 150).all()
    params = json.loads(probes.filter(pl.col("kind") == "mlp").get_column("params")[0])
    # the fast preset on 90 training rows: 8 steps per epoch (ProbeSpec.min_steps)
    assert params["hidden"] == 256 and params["batch_size"] == math.ceil(90 / 8) and params["min_steps"] == 8 and params["class_weight"] == "none"
    assert frame.get_column("run_id").n_unique() == 1 and frame.get_column("store")[0] == str(store_path)
    # The signal grows with depth in the synthetic data: the deepest vision layer beats chance clearly.
    deepest = probes.filter((pl.col("site") == "vision/mean") & (pl.col("layer") == 2))
    assert deepest.get_column("test_accuracy").min() > 0.7


def test_model_row_is_the_models_own_answer(store_path: Path) -> None:
    frame = run_sweep(_config(store_path, kinds=("linear",), layers="-1"))
    model = frame.filter(pl.col("kind") == "model").row(0, named=True)
    store = open_store(store_path)
    from layerprobe.probe.splits import make_splits

    split = make_splits(store.labels, store.splits, store.valid, class_names=store.class_names)[0]
    test = torch.from_numpy(split.test)
    expected = classification_metrics(torch.softmax(store.answer_logits()[test], dim=-1)[None], torch.tensor(store.labels)[test])
    assert model["test_accuracy"] == pytest.approx(float(expected.accuracy[0]))
    assert model["test_auc"] == pytest.approx(float(expected.auc[0]))
    assert 0.5 < model["test_accuracy"] < 0.95  # synthetic answers are right ~65% of the time


def test_nan_in_a_slab_fails_only_that_layers_probes(tmp_path: Path) -> None:
    path = make_store(tmp_path / "nan.zarr", synthetic_labels(100, 2, seed=1), nan_at=("vision/mean", 1))
    frame = run_sweep(_config(path, seeds=(0,)))
    failed = frame.filter(pl.col("status") == "failed")
    assert set(zip(failed.get_column("site"), failed.get_column("layer"))) == {("vision/mean", 1)}
    assert failed.height == 2  # one MLP seed + one linear probe
    assert failed.get_column("error").str.contains("1 NaN/Inf values").all()
    assert failed.get_column("test_accuracy").is_null().all()
    assert frame.filter(pl.col("status") == "ok").height == frame.height - 2


def test_kfold_gives_one_row_per_probe(store_path: Path) -> None:
    frame = run_sweep(_config(store_path, kfold=3, seeds=(0,), layers="-1", sites=("vision/mean",)))
    assert frame.height == 3 and (frame.get_column("n_folds") == 3).all()
    assert frame.get_column("split")[0] == "3-fold seed=0"
    assert (frame.get_column("n_test") == 50).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sites": ("connector/mean",)}, "has no site 'connector/mean'"),
        ({"layers": "5"}, "site vision/mean: layer 5 is out of range"),
        ({"kfold": 200}, "kfold=200 needs at least 200 valid samples"),
        ({"device": "cuda:7"} if not torch.cuda.is_available() else {"device": "nonsense"}, "device"),
    ],
)
def test_bad_settings_raise_one_line_probe_errors(store_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ProbeError, match=message) as err:
        run_sweep(_config(store_path, **kwargs))
    assert "\n" not in str(err.value)


def test_single_class_training_split_is_refused(tmp_path: Path) -> None:
    labels = np.zeros(40, dtype=np.int64)
    labels[-4:] = 1
    splits = ("train",) * 30 + ("val",) * 5 + ("test",) * 5
    path = make_store(tmp_path / "one.zarr", labels, splits=splits)
    with pytest.raises(ProbeError, match="single class \\('benign'\\)"):
        run_sweep(_config(path))


def test_labels_disagreeing_between_stores_are_refused(tmp_path: Path, store_path: Path) -> None:
    labels = synthetic_labels(150, 2, seed=0)
    other = labels.copy()
    other[17] = 1 - other[17]
    path = make_store(tmp_path / "other.zarr", other, seed=3)
    with pytest.raises(ProbeError, match="labels disagree between stores .*sample 's000017'"):
        run_sweep(SweepConfig(stores=(store_path, path), progress=False))
    # Another dataset may reuse the same ids with other labels: no conflict.
    elsewhere = make_store(tmp_path / "elsewhere.zarr", other, seed=3, dataset="other-dataset")
    frame = run_sweep(SweepConfig(stores=(store_path, elsewhere), kinds=("linear",), layers="-1", sites=("vision/mean",), progress=False))
    assert frame.get_column("dataset").unique().sort().to_list() == ["other-dataset", "synthetic"]


def test_two_stores_of_one_dataset_share_splits(tmp_path: Path, store_path: Path) -> None:
    path = make_store(tmp_path / "ft.zarr", synthetic_labels(150, 2, seed=0), seed=9)
    frame = run_sweep(SweepConfig(stores=(store_path, path), kinds=("linear",), layers="-1", progress=False))
    assert frame.get_column("store").n_unique() == 2
    assert frame.group_by("store").agg(pl.col("n_test").first()).get_column("n_test").n_unique() == 1


def test_linear_probe_matches_sklearn_on_a_store(store_path: Path) -> None:
    agreement = compare_linear_to_sklearn(open_store(store_path), "vision/mean", 2)
    assert abs(agreement.accuracy - agreement.accuracy_sklearn) <= 0.01
    assert abs(agreement.auc - agreement.auc_sklearn) <= 0.01


def test_cli_probe_writes_the_table(store_path: Path, tmp_path: Path) -> None:
    from layerprobe.cli.probe_cmd import probe

    out = tmp_path / "cli.parquet"
    args = [str(store_path), "--out", str(out), "--preset", "fast", "--sites", "vision/mean", "--layers", "-2:", "--kinds", "linear", "--json"]
    result = CliRunner().invoke(probe, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == 3 and summary["failed"] == 0 and out.exists()
    assert {b["layer"] for b in summary["best"] if b["kind"] == "linear"} <= {1, 2}
    help_text = CliRunner().invoke(probe, ["--help"]).output
    assert "Example" in help_text and "layerprobe probe runs/medgemma-busi.zarr" in help_text


def test_cli_errors_are_one_line(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from layerprobe.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["probe", str(store_path), "--out", str(tmp_path / "x.parquet"), "--sites", "nope/site"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: store") and "nope/site" in err and "\n" not in err


def test_probe_never_imports_extract_or_transformers(store_path: Path, tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        import layerprobe.cli.probe_cmd
        from layerprobe.probe import SweepConfig, run_sweep
        run_sweep(SweepConfig(stores=({str(store_path)!r},), out={str(tmp_path / 'i.parquet')!r}, layers="-1", seeds=(0,), preset="fast", progress=False))
        bad = sorted(m for m in sys.modules if m.startswith(("layerprobe.extract", "transformers", "peft")))
        print("BAD", bad)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "BAD []" in result.stdout, result.stdout + result.stderr


def test_diverged_probes_are_marked_failed_not_reported() -> None:
    from layerprobe.probe.sweep import sweep_stores
    from layerprobe.testing.stores import synthetic_store

    store = synthetic_store(100, 16, {"vision/mean": 2}, n_classes=2)
    frame = sweep_stores(SweepConfig(stores=("in-memory",), kinds=("mlp",), preset="fast", lrs=(1e30,), progress=False), [store])
    mlp = frame.filter(pl.col("kind") == "mlp")
    assert mlp.height == 2 and (mlp.get_column("status") == "failed").all()
    assert mlp.get_column("error").str.starts_with("training diverged").all()
    assert mlp.get_column("test_accuracy").is_null().all()
