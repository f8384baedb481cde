"""`layerprobe study --engine ray`: the same bytes as the local engine, through a worker killed mid-extraction.

One local Ray instance (the engine's own local options, 2 CPUs) serves the whole module; the engine
finds it started and uses it. Its workers carry the fault hook of ``layerprobe.testing.faults``,
idle until the kill test arms it. Each study variant writes to its own output root beside the one tiny study, so model
and dataset paths (recorded in stores) are the same for every engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from layerprobe import vocab
from layerprobe.study import run_study
from layerprobe.testing import faults

ray = pytest.importorskip("ray")

from test_store_bytes_golden import store_digest  # noqa: E402
from test_study_plan import build_tiny_study, variant  # noqa: E402

WORKERS = 2


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray-faults")


@pytest.fixture(scope="module")
def ray_instance(fault_dir):
    from layerprobe.study.engines.ray_engine import local_instance_options

    started = time.perf_counter()
    ray.init(**local_instance_options(WORKERS), runtime_env=faults.kill_runtime_env(fault_dir))
    print(f"ray.init: {time.perf_counter() - started:.1f} s")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    study = build_tiny_study(tmp_path_factory.mktemp("ray-study"))
    result = run_study(variant(study, "local.toml", out="local-out"), echo=None)
    assert set(result.states.values()) == {vocab.STATE_DONE}
    return study, result


def _outputs(result, kind: str) -> dict[str, Path]:
    return {s.out.name: s.out for s in result.plan.steps if s.kind == kind}


def _assert_same_outputs(local, other) -> None:
    stores, theirs = _outputs(local, vocab.STEP_EXTRACT), _outputs(other, vocab.STEP_EXTRACT)
    assert stores.keys() == theirs.keys()
    # An SFT arm's store records its adapter's path, which is under each run's own output root.
    roots = {str(other.plan.study.out): str(local.plan.study.out)}
    for name, path in stores.items():
        assert store_digest(path) == store_digest(theirs[name], same=roots), name
    tables, theirs = _outputs(local, vocab.STEP_PROBE), _outputs(other, vocab.STEP_PROBE)
    rows = {n: p for n, p in _outputs(local, vocab.STEP_FINETUNE).items() if p.suffix == ".parquet"}  # vision-ce rows
    tables.update(rows)
    theirs.update({n: p for n, p in _outputs(other, vocab.STEP_FINETUNE).items() if p.suffix == ".parquet"})
    assert rows and tables.keys() == theirs.keys()
    key = list(vocab.PROBE_KEY)
    for name, path in tables.items():
        # store and adapter paths are under each run's own output root; everything else is equal
        a, b = (pl.read_parquet(p).drop("store", "adapter", "train_seconds").sort(key) for p in (path, theirs[name]))
        assert a.select(key).equals(b.select(key))  # the same rows
        for column in a.columns:
            if column in vocab.METRIC_COLUMNS:
                np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), atol=1e-6, equal_nan=True)
            else:
                assert a[column].equals(b[column]), column


def test_ray_with_two_workers_writes_what_the_local_engine_writes(ray_instance, local_run):
    study, local = local_run
    started = time.perf_counter()
    result = run_study(variant(study, "ray.toml", out="ray-out"), engine=vocab.ENGINE_RAY, workers=WORKERS, echo=None)
    print(f"tiny study on ray: {time.perf_counter() - started:.1f} s")
    assert set(result.states.values()) == {vocab.STATE_DONE}, json.loads(result.status.read_text())["steps"]
    _assert_same_outputs(local, result)
    again = run_study(variant(study, "ray.toml", out="ray-out"), engine=vocab.ENGINE_RAY, workers=WORKERS, echo=None)
    assert again.ran == ()


def test_a_worker_killed_during_extraction_is_retried_to_the_same_bytes(ray_instance, local_run, fault_dir):
    study, local = local_run
    faults.arm(fault_dir)
    result = run_study(variant(study, "kill.toml", out="kill-out"), engine=vocab.ENGINE_RAY, workers=WORKERS, echo=None)
    assert faults.killed(fault_dir)  # a shard's worker did die after a committed block
    assert set(result.states.values()) == {vocab.STATE_DONE}, json.loads(result.status.read_text())["steps"]
    _assert_same_outputs(local, result)
