"""Probe recipes: presets and how a recipe adapts to the size of the training set."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from layerprobe import vocab
from layerprobe.errors import ProbeError
from layerprobe.probe.config import PRESETS, SweepConfig
from layerprobe.probe.sweep import sweep_stores
from layerprobe.testing.stores import synthetic_store


def test_min_steps_shrinks_the_batch_and_scales_the_lr_on_small_training_sets() -> None:
    fast = PRESETS["fast"]
    assert fast.min_steps == 8
    assert fast.for_rows(2048) is fast  # exactly 256 * 8 rows: the preset as written
    small = fast.for_rows(468)
    assert small.batch_size == 59 and math.ceil(468 / small.batch_size) == 8
    assert small.lr == pytest.approx(1e-3 * math.sqrt(59 / 256))
    assert small.for_rows(468) == small  # idempotent
    assert fast.for_rows(10).batch_size == 4  # never below the paper's batch
    paper = PRESETS["paper"]
    assert paper.for_rows(10) is paper  # min_steps 0: fixed batch
    with pytest.raises(ProbeError, match="min_steps"):
        replace(fast, min_steps=-1)


def test_max_steps_grows_the_batch_and_scales_the_lr_on_large_training_sets() -> None:
    fast = PRESETS["fast"]
    assert fast.max_steps == 8
    big = fast.for_rows(5216)  # Chest-Xray's training rows
    assert big.batch_size == 652 and math.ceil(5216 / big.batch_size) == 8
    assert big.lr == pytest.approx(1e-3 * math.sqrt(652 / 256))
    assert big.for_rows(5216) == big
    no_cap = replace(fast, max_steps=0).for_rows(5216)
    assert no_cap.batch_size == 256 and math.ceil(5216 / 256) == 21
    with pytest.raises(ProbeError, match="max_steps"):
        replace(fast, max_steps=4)  # below min_steps


def test_the_fast_preset_trains_8_steps_an_epoch_wherever_the_batch_allows() -> None:
    for n_train in [*range(1, 300), 2040, 2047, 2048, 2049, 2055, 4100, 5216, 99_999]:
        spec = PRESETS["fast"].for_rows(n_train)
        steps = math.ceil(n_train / spec.batch_size)
        if spec.batch_size == 4:  # the floor: up to 32 rows
            assert steps <= 8, n_train
        else:  # a batch of ceil(n / 8) rows can leave 7 steps on 33-49 rows (33 = 7 x 5 - 2)
            assert steps == 8 or (steps == 7 and n_train < 50), n_train
        assert spec.for_rows(n_train) == spec, n_train  # applying it twice changes nothing more
        assert spec.lr == pytest.approx(1e-3 * math.sqrt(spec.batch_size / 256)), n_train


def test_a_fast_sweep_records_the_batch_and_lr_it_trained_with() -> None:
    store = synthetic_store(100, 16, {"llm/image_mean": 2})
    cfg = SweepConfig(stores=(Path("x.zarr"),), preset=vocab.PRESET_FAST, kinds=(vocab.MLP,), progress=False, threads=1)
    frame = sweep_stores(cfg, [store])
    params = [json.loads(p) for p in frame.filter(pl.col("kind") == vocab.MLP).get_column("params")]
    n_train = int(frame.get_column("n_train")[0])
    want = PRESETS["fast"].for_rows(n_train)
    assert want.batch_size < 256
    assert {(p["batch_size"], p["lr"], p["min_steps"]) for p in params} == {(want.batch_size, want.lr, 8)}
