"""The generated-answer P_final rows of a sweep (``site = answer_text``, ``kind = model``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from layerprobe import vocab
from layerprobe.answers import parse_answer
from layerprobe.probe import sweep as sweep_module
from layerprobe.probe.config import SweepConfig
from layerprobe.probe.sweep import _generated_metrics, run_sweep
from layerprobe.store import StoreWriter, open_store
from layerprobe.testing.stores import synthetic_batch, synthetic_run

N = 60


def answer(i: int, label: int) -> str:
    """Right, wrong, naming nothing, naming both: every fifth sample is unparsed."""
    kinds = (f"class_{label}", f"The answer is: class_{label}.", f"class_{1 - label}", "", f"class_{label}")
    return kinds[i % 5] if i % 7 else "class_0 or class_1"


def generated_store(path: Path, tokens: int = 8) -> Path:
    run = synthetic_run(N, n_classes=2, seed=3)
    run = dataclasses.replace(run, meta=dataclasses.replace(run.meta, answer_tokens=tokens))
    with StoreWriter.open(path, run.meta, run.sites, run.samples, 16) as w:
        for start, stop in w.pending_blocks():
            b = synthetic_batch(run, start, stop)
            texts = [answer(i, int(run.samples.labels[i])) for i in range(start, stop)]
            w.write(b.start, b.acts, b.answer_logits, b.sha256, b.skipped, answer_text=texts)
    return path


def sweep_cfg(store: Path, **kw) -> SweepConfig:
    return SweepConfig(stores=(store,), **{"kinds": ("linear",), "layers": "-1", "sites": ("vision/mean",), "progress": False, **kw})


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    return generated_store(tmp_path_factory.mktemp("gen") / "g.zarr")


def test_generated_row_beside_the_forced_one(store_path: Path) -> None:
    frame = run_sweep(sweep_cfg(store_path))
    model = frame.filter(pl.col("kind") == vocab.MODEL_KIND)
    assert sorted(model.get_column("site")) == sorted([vocab.ANSWER_SITE, vocab.ANSWER_TEXT_SITE])
    row = model.filter(pl.col("site") == vocab.ANSWER_TEXT_SITE).row(0, named=True)
    assert (row["layer"], row["layer_name"], row["status"]) == (0, vocab.GENERATED_LAYER_NAME, vocab.STATUS_OK)
    store = open_store(store_path)
    test = np.flatnonzero(np.asarray(store.splits) == vocab.TEST)
    pred = np.array([-1 if (k := parse_answer(t, store.meta.candidates)) is None else k for t in store.answer_text()])
    y = np.asarray(store.labels)
    assert row["test_accuracy"] == pytest.approx(float((pred[test] == y[test]).mean()))
    params = json.loads(row["params"])
    assert params["answer_tokens"] == 8
    assert params["unparsed_test"] == pytest.approx(float((pred[test] < 0).mean())) and params["unparsed_test"] > 0
    assert row["n_test"] == len(test)


def test_metrics_follow_sklearn_with_unparsed_as_wrong() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    pred = np.where(rng.random(50) < 0.7, y, rng.integers(-1, 3, 50))
    got = _generated_metrics(pred, y, 3)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
    for name, fn in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
        assert got[name] == pytest.approx(fn(y, pred, labels=[0, 1, 2], average="macro", zero_division=0)), name
    scores = np.where(pred[:, None] < 0, 1 / 3, (pred[:, None] == np.arange(3)).astype(float))
    assert got["auc"] == pytest.approx(roc_auc_score(y, scores, multi_class="ovr", average="macro"))
    # an unparsed answer is never right, even for class 0 (argmax of a uniform score would say 0)
    assert _generated_metrics(np.array([-1, -1]), np.array([0, 0]), 2)["accuracy"] == 0.0


def test_a_store_without_answers_has_only_the_forced_row(tmp_path: Path) -> None:
    from layerprobe.testing.stores import write_synthetic_store

    path = write_synthetic_store(tmp_path / "plain.zarr", synthetic_run(N, n_classes=2))
    model = run_sweep(sweep_cfg(path)).filter(pl.col("kind") == vocab.MODEL_KIND)
    assert model.get_column("site").to_list() == [vocab.ANSWER_SITE]


def test_kfold_folds_into_one_generated_row(store_path: Path) -> None:
    frame = run_sweep(sweep_cfg(store_path, kfold=3))
    rows = frame.filter(pl.col("site") == vocab.ANSWER_TEXT_SITE)
    assert rows.height == 1 and rows.get_column("n_folds")[0] == 3


def test_a_resumed_sweep_keeps_the_generated_row(store_path: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "r.parquet"
    real_groups = sweep_module._site_groups

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_module, "_site_groups", die)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep_cfg(store_path, out=out))
    monkeypatch.setattr(sweep_module, "_site_groups", real_groups)
    calls = []
    monkeypatch.setattr(sweep_module, "_generated_rows", lambda *a: calls.append(a))
    frame = run_sweep(sweep_cfg(store_path, out=out))
    assert not calls  # kept from the first run, not computed again
    assert frame.filter(pl.col("site") == vocab.ANSWER_TEXT_SITE).height == 1
    assert frame.get_column("site").to_list()[:2] == [vocab.ANSWER_SITE, vocab.ANSWER_TEXT_SITE]
