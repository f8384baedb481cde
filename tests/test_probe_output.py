"""``probe --out``: never written inside a store or over a foreign file, checked before any compute,
kept group by group, and resumed by a rerun to the same table as an uninterrupted sweep."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from layerprobe import vocab
from layerprobe.errors import ProbeError
from layerprobe.probe import output as output_module
from layerprobe.probe import sweep as sweep_module
from layerprobe.probe.config import SweepConfig
from layerprobe.probe.sweep import run_sweep
from layerprobe.testing.stores import synthetic_run, write_synthetic_store

IDENTITY = list(dict.fromkeys([*vocab.PROBE_KEY, "store", "model_id", "dataset", "layer_name", "preset", "status", "error", "n_train", "n_val", "n_test"]))
METRICS = [vocab.metric_column(part, name) for part in vocab.SCORED_SPLITS for name in vocab.METRICS]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = synthetic_run(60, {"vision/mean": (3, 8), "llm/image_mean": (2, 8)})
    return write_synthetic_store(tmp_path_factory.mktemp("out") / "run.zarr", run)


def _config(store: Path, out: Path | None, **kwargs: object) -> SweepConfig:
    defaults = {"preset": "fast", "seeds": (0,), "progress": False}
    return SweepConfig(stores=(store,), out=out, **{**defaults, **kwargs})


@pytest.fixture(scope="module")
def reference(store_path: Path, tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """The table of an uninterrupted sweep."""
    return run_sweep(_config(store_path, tmp_path_factory.mktemp("ref") / "r.parquet"))


def assert_same_table(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Identity columns exactly, metrics to 1e-6 (train_seconds is wall time and differs)."""
    assert got.columns == want.columns and got.height == want.height
    assert got.select(IDENTITY).equals(want.select(IDENTITY))
    np.testing.assert_allclose(got.select(METRICS).to_numpy(), want.select(METRICS).to_numpy(), atol=1e-6, equal_nan=True)


class Counter:
    """Counts the slab groups trained (``prepare_features`` runs once per group and split); raises
    ``error`` on call number ``fail_at``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None, error: BaseException | None = None) -> None:
        self.calls, self.fail_at, self.error = 0, fail_at, error
        real = sweep_module.prepare_features

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.error or KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(sweep_module, "prepare_features", counted)


def test_an_interrupted_sweep_resumes_to_the_same_table(store_path: Path, reference: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.parquet"
    partial = tmp_path / "r.parquet.partial"
    Counter(monkeypatch, fail_at=2)  # the first site's group finishes, the second is interrupted half-way
    with pytest.raises(KeyboardInterrupt):
        run_sweep(_config(store_path, out))
    assert not out.exists()
    parts = sorted(p.name for p in partial.glob("*.parquet"))
    assert len(parts) == 2 and any("answer_logits" in p for p in parts)  # the model rows and one slab group
    (partial / ".x.parquet.tmp-999").write_bytes(b"half a file")  # what a SIGKILL during a write leaves
    monkeypatch.undo()
    counter = Counter(monkeypatch)
    frame = run_sweep(_config(store_path, out))
    assert counter.calls == 1  # only the missing group was trained
    assert_same_table(frame, reference)
    assert_same_table(pl.read_parquet(out), reference)
    assert not partial.exists()
    again = run_sweep(_config(store_path, out))  # a finished sweep: nothing trained, the table as it is
    assert counter.calls == 1 and again.equals(pl.read_parquet(out))


def test_another_sweep_on_an_unfinished_one_is_refused(store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.parquet"
    Counter(monkeypatch, fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(_config(store_path, out))
    monkeypatch.undo()
    with pytest.raises(ProbeError, match=r"unfinished sweep with other settings \(seeds \[0, 1\] here vs \[0\] there\).*--overwrite") as info:
        run_sweep(_config(store_path, out, seeds=(0, 1)))
    assert "\n" not in str(info.value)
    counter = Counter(monkeypatch)
    frame = run_sweep(_config(store_path, out, seeds=(0, 1), overwrite=True))  # discards the old progress
    assert counter.calls == 2 and frame.filter(pl.col("seed") == 1).height == 5  # both slab groups trained again
    assert not (tmp_path / "r.parquet.partial").exists()


def test_out_inside_a_store_is_refused(store_path: Path) -> None:
    for target in (store_path / "zarr.json", store_path / "samples.parquet", store_path / "sites" / "new.parquet"):
        before = target.read_bytes() if target.exists() else None
        with pytest.raises(ProbeError, match=f"lies inside the store {store_path}"):
            run_sweep(_config(store_path, target, kinds=("linear",), overwrite=True))
        assert (target.read_bytes() if target.exists() else None) == before
    assert not any(store_path.rglob("*.partial"))


def test_out_that_is_not_a_results_table_is_never_replaced(store_path: Path, tmp_path: Path) -> None:
    text, data = tmp_path / "notes.txt", tmp_path / "data.parquet"
    text.write_text("keep me")
    pl.DataFrame({"x": [1, 2]}).write_parquet(data)
    for target in (text, data):
        before = target.read_bytes()
        with pytest.raises(ProbeError, match="is not a layerprobe results table; choose another --out"):
            run_sweep(_config(store_path, target, kinds=("linear",), overwrite=True))
        assert target.read_bytes() == before
    with pytest.raises(ProbeError, match="is a folder"):
        run_sweep(_config(store_path, tmp_path, kinds=("linear",)))


def test_replacing_another_sweeps_table_needs_overwrite(store_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.parquet"
    first = run_sweep(_config(store_path, out, kinds=("linear",), layers="-1"))
    with pytest.raises(ProbeError, match=r"already holds the results table of another sweep \(stores \(paths, runs or layers\)\); pass --overwrite"):
        run_sweep(_config(store_path, out, kinds=("linear",)))
    assert pl.read_parquet(out).equals(first)
    second = run_sweep(_config(store_path, out, kinds=("linear",), overwrite=True))
    assert second.height > first.height and pl.read_parquet(out).equals(second)


def test_an_unwritable_out_fails_before_any_compute(store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Counter(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ProbeError, match=r"cannot write the sweep's progress folder .*; choose a writable --out") as info:
        run_sweep(_config(store_path, blocker / "r.parquet"))
    assert "\n" not in str(info.value)

    def read_only(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied", str(args[1]))

    monkeypatch.setattr(output_module, "write_json", read_only)
    with pytest.raises(ProbeError, match="Permission denied; choose a writable --out"):
        run_sweep(_config(store_path, tmp_path / "ro" / "r.parquet"))
    assert counter.calls == 0


def test_a_full_disk_is_one_line_and_loses_nothing(store_path: Path, reference: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.parquet"
    real = output_module.write_parquet
    full_at = {"name": "llm_image_mean"}

    def full_disk(frame: pl.DataFrame, path: Path, metadata: dict | None = None) -> None:
        if full_at["name"] in path.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(frame, path, metadata)

    monkeypatch.setattr(output_module, "write_parquet", full_disk)
    with pytest.raises(ProbeError, match=r"cannot write finished probes to .*: No space left on device; .*rerun the same command to resume \(2 finished"):
        run_sweep(_config(store_path, out))
    full_at["name"] = out.name  # now the parts fit, the final table does not
    with pytest.raises(ProbeError, match=rf"cannot write the results table {out}: No space left on device; the finished probes are kept in") as info:
        run_sweep(_config(store_path, out))
    assert "\n" not in str(info.value) and not out.exists()
    assert not list(tmp_path.glob(".*tmp-*"))  # no temporary file left beside it
    monkeypatch.undo()
    counter = Counter(monkeypatch)
    frame = run_sweep(_config(store_path, out))
    assert counter.calls == 0  # every group was kept: the rerun only writes the table
    assert_same_table(frame, reference)
    assert json.loads(pl.read_parquet_metadata(out)[output_module.METADATA_KEY])["seeds"] == [0]


def test_cli_interrupt_says_resume_and_a_rerun_resumes(store_path: Path, reference: pl.DataFrame, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from layerprobe.cli import main

    out = tmp_path / "r.parquet"
    args = ["probe", str(store_path), "--out", str(out), "--preset", "fast", "--no-progress"]
    Counter(monkeypatch, fail_at=2)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "probe sweep keeps its finished groups (rerun the same command to resume)" in err
    monkeypatch.undo()
    main(args)
    assert_same_table(pl.read_parquet(out), reference)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*args[:-1], "--seeds", "0,1", "--no-progress"])
    assert exit_info.value.code == 1 and "pass --overwrite" in capsys.readouterr().err


def test_a_sigkilled_sweep_resumes_to_the_same_table(store_path: Path, reference: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal
    import subprocess
    import sys
    import textwrap

    out = tmp_path / "r.parquet"
    code = textwrap.dedent(f"""
        import os, signal
        from layerprobe.probe import output
        from layerprobe.probe.config import SweepConfig
        from layerprobe.probe.sweep import run_sweep
        real, kept = output.SweepOutput.add, []
        def add(self, frame):
            real(self, frame)
            kept.append(frame)
            if len(kept) == 2:  # the model rows and the first slab group are on disk
                os.kill(os.getpid(), signal.SIGKILL)
        output.SweepOutput.add = add
        run_sweep(SweepConfig(stores=({str(store_path)!r},), out={str(out)!r}, preset="fast", seeds=(0,), progress=False))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert not out.exists() and len(list((tmp_path / "r.parquet.partial").glob("*.parquet"))) == 2
    counter = Counter(monkeypatch)
    assert_same_table(run_sweep(_config(store_path, out)), reference)
    assert counter.calls == 1
