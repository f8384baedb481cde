"""MLP groups on a CPU are sized so their per-step state stays in cache, whatever the batch size."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from layerprobe import vocab
from layerprobe.probe import engine, grid, sweep
from layerprobe.probe.config import PRESETS, SweepConfig
from layerprobe.probe.sweep import sweep_stores
from layerprobe.testing.stores import synthetic_store

MIB = 1 << 20


def test_a_cpu_groups_working_set_is_the_measured_bound_and_a_gpus_is_unbounded() -> None:
    assert grid.group_cache_bytes(torch.device("cpu")) == grid.CPU_WORKING_SET_BYTES
    assert grid.group_cache_bytes(torch.device("cuda")) is None


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_a_cpu_group_holds_as_many_probes_as_fit_the_working_set(preset: str) -> None:
    spec = PRESETS[preset]
    # one 4096-wide probe: (4096 + 1) x 256 weights x (16 B fp32 state + 4 B bf16 casts) = 20 MiB
    memory_only = grid.streams_per_group(spec, 1, 4096, 200, budget=8 << 30, low_precision=True, cache_bytes=None, cap=None)
    cached = grid.streams_per_group(spec, 1, 4096, 200, budget=8 << 30, low_precision=True, cache_bytes=48 * MIB, cap=None)
    assert memory_only > 10
    assert cached == 2
    fp32 = grid.streams_per_group(spec, 1, 4096, 200, budget=8 << 30, low_precision=False, cache_bytes=48 * MIB, cap=None)
    assert fp32 == 2  # 16 B x (4096 + 1) x 256 is just over 16 MiB: 3 probes do not fit 48 MiB
    assert grid.streams_per_group(spec, 4, 4096, 200, budget=8 << 30, low_precision=True, cache_bytes=48 * MIB, cap=None) == 1
    assert grid.streams_per_group(spec, 1, 256, 200, budget=8 << 30, low_precision=True, cache_bytes=48 * MIB, cap=None) == 38


def test_the_memory_budget_counts_each_streams_batch_rows() -> None:
    big = PRESETS["fast"].for_rows(100_000)  # max_steps: 8 steps an epoch, batch 12,500
    assert big.batch_size == 12_500 and grid.batch_bytes(big, 4096, True) == 12_500 * 4096 * 2
    per_stream = grid.mlp_probe_bytes(big, 4096, 200, True) + grid.batch_bytes(big, 4096, True)
    count = grid.streams_per_group(big, 1, 4096, 200, budget=1 << 30, low_precision=True, cache_bytes=None, cap=None)
    assert count == (1 << 30) // per_stream
    assert count < (1 << 30) // grid.mlp_probe_bytes(big, 4096, 200, True)


def test_a_sweep_trains_in_groups_that_fit_and_the_results_do_not_depend_on_them(monkeypatch) -> None:
    store = synthetic_store(120, 64, {"llm/image_mean": 6})
    cfg = SweepConfig(stores=(Path("mem.zarr"),), preset="fast", kinds=(vocab.MLP,), seeds=(0, 1), progress=False, threads=1)
    sizes: list[int] = []
    real = engine.train_mlp_group

    def spy(features, streams, variants, **kw):  # type: ignore[no-untyped-def]
        sizes.append(len(streams))
        return real(features, streams, variants, **kw)

    monkeypatch.setattr(sweep, "train_mlp_group", spy)
    one_probe = (64 + 1) * 256 * 16  # fp32 state of one probe (64 features: fp32 matmuls)
    monkeypatch.setattr(grid, "CPU_WORKING_SET_BYTES", 3 * one_probe)
    small = sweep_stores(cfg, [store])
    assert sizes and max(sizes) == 3 and sum(sizes) == 12
    sizes.clear()
    monkeypatch.setattr(grid, "CPU_WORKING_SET_BYTES", 1 << 40)
    large = sweep_stores(cfg, [store])
    assert max(sizes) == 12
    cols = ["layer", "seed", *vocab.METRIC_COLUMNS]
    keep = pl.col("kind") == vocab.MLP
    assert small.filter(keep).sort(["layer", "seed"]).select(cols).equals(large.filter(keep).sort(["layer", "seed"]).select(cols))
