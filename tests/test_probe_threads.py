"""The sweep sizes torch's thread count from the problem and the cores free, and restores it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from layerprobe import hardware
from layerprobe.errors import ProbeError
from layerprobe.probe import threads
from layerprobe.probe.config import SweepConfig
from layerprobe.probe.sweep import sweep_stores
from layerprobe.testing.stores import synthetic_store

SITES = {"vision/mean": 2, "llm/image_mean": 2}


def _cfg(**kw) -> SweepConfig:
    return SweepConfig(stores=(Path("mem.zarr"),), **{"preset": "fast", "progress": False, **kw})


@pytest.fixture
def busy_two_cores(monkeypatch):
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(hardware, "busy_cores", lambda: 1.3)


@pytest.fixture
def idle_sixteen_cores(monkeypatch):
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(hardware, "busy_cores", lambda: 0.0)


def test_a_small_sweep_runs_on_one_thread_and_restores_torchs_count(monkeypatch, idle_sixteen_cores) -> None:
    store = synthetic_store(60, 16, SITES)
    seen: list[int] = []
    real = threads.sweep_threads

    def spy(cfg, stores):
        n, reason = real(cfg, stores)
        seen.append(n)
        return n, reason

    monkeypatch.setattr(threads, "sweep_threads", spy)
    import layerprobe.probe.engine as engine

    inner: list[int] = []
    real_train = engine.train_mlp_group

    def train(*args, **kw):
        inner.append(torch.get_num_threads())
        return real_train(*args, **kw)

    monkeypatch.setattr("layerprobe.probe.sweep.train_mlp_group", train)
    before = torch.get_num_threads()
    sweep_stores(_cfg(), [store])
    assert seen == [1] and set(inner) == {1}  # tiny: 16 idle cores, still one thread
    assert torch.get_num_threads() == before


def test_the_thread_count_is_restored_when_the_sweep_fails(monkeypatch) -> None:
    before = torch.get_num_threads()

    def boom(*args, **kw):
        assert torch.get_num_threads() == 3
        raise RuntimeError("boom")

    monkeypatch.setattr("layerprobe.probe.sweep.train_mlp_group", boom)
    with pytest.raises(RuntimeError, match="boom"):
        sweep_stores(_cfg(threads=3, kinds=("mlp",)), [synthetic_store(60, 16, SITES)])
    assert torch.get_num_threads() == before


def test_problem_size_sets_the_count(busy_two_cores) -> None:
    small = synthetic_store(60, 16, SITES)
    assert threads.sweep_threads(_cfg(), [small])[0] == 1
    flops_small = threads.sweep_step_flops(_cfg(), [small])
    assert flops_small < hardware.FLOPS_PER_THREAD
    assert threads.sweep_step_flops(_cfg(seeds=(0, 1, 2)), [small]) > flops_small  # more probes per group
    wide = synthetic_store(400, 1024, {"llm/image_mean": 8})
    assert threads.sweep_step_flops(_cfg(), [wide]) > 10 * hardware.FLOPS_PER_THREAD
    assert threads.sweep_threads(_cfg(), [wide])[0] == 1  # but the machine is busy: one core free
    assert threads.sweep_step_flops(_cfg(kinds=("linear",)), [small]) > 0
    assert threads.sweep_step_flops(_cfg(sites=("vision/mean",), layers="-1"), [small]) < flops_small


def test_a_large_problem_gets_the_free_cores(idle_sixteen_cores, monkeypatch) -> None:
    monkeypatch.setattr(threads, "sweep_step_flops", lambda cfg, stores: 1e12)
    assert threads.sweep_threads(_cfg(), [])[0] == 16
    monkeypatch.setattr(hardware, "busy_cores", lambda: 15.2)
    assert threads.sweep_threads(_cfg(), [])[0] == 1
    assert threads.sweep_threads(_cfg(threads=4), [])[0] == 4


def test_threads_must_be_a_positive_integer() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ProbeError, match="threads"):
            _cfg(threads=bad)


def test_cli_passes_threads(monkeypatch, tmp_path) -> None:
    from layerprobe.cli.probe_cmd import probe

    seen = {}

    def fake_run(cfg):
        seen["threads"] = cfg.threads
        raise SystemExit(0)

    monkeypatch.setattr("layerprobe.probe.sweep.run_sweep", fake_run)
    result = CliRunner().invoke(probe, [str(tmp_path), "--out", str(tmp_path / "r.parquet"), "--threads", "2"])
    assert result.exit_code == 0 and seen["threads"] == 2, result.output
    result = CliRunner().invoke(probe, ["--help"])
    assert "--threads" in result.output


def test_a_template_config_without_device_is_refused_in_one_line() -> None:
    """A study's grid is a SweepConfig with device None (made without importing torch); run as is,
    it stops with a ProbeError before any work, not an AttributeError deep in the sweep."""
    store = synthetic_store(40, 8, SITES)
    with pytest.raises(ProbeError, match="no device"):
        sweep_stores(_cfg(device=None), [store])
