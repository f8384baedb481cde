"""The results table has one owner: vocab's columns and probe key, read and checked once by layerprobe.results."""

from __future__ import annotations

import typing

import polars as pl
import pytest
from test_fhs_profile import HAND_RUN, make_results

from layerprobe import results, vocab
from layerprobe.errors import LayerprobeError
from layerprobe.fhs import RESULT_COLUMNS, build_report, curves, profile_runs, scores
from layerprobe.probe.config import PRESETS
from layerprobe.probe.metrics import Metrics
from layerprobe.probe.table import SCHEMA, Outcome, TableBuilder


def test_the_probe_table_and_fhs_share_one_contract() -> None:
    assert list(SCHEMA) == [*vocab.RESULT_CONTRACT, *vocab.RESULT_EXTRA] and SCHEMA == vocab.results_polars_schema()
    assert RESULT_COLUMNS == tuple(vocab.RESULT_CONTRACT)
    assert Metrics._fields == vocab.METRICS
    assert tuple(PRESETS) == vocab.PRESET_NAMES and all(name == spec.name for name, spec in PRESETS.items())
    assert typing.get_args(scores.MissingPolicy) == vocab.MISSING_POLICIES


def _identity(**over: object) -> dict[str, object]:
    row = {"run_id": "r", "store": "s.zarr", "model_id": "m", "adapter": None, "dataset": "d", "site": vocab.VISION,
           "layer": 0, "layer_name": "block_0", "kind": vocab.MLP, "seed": 0, "preset": vocab.PRESET_FAST, "params": "{}"}  # fmt: skip
    return {**row, **over}


def test_the_table_builder_folds_by_the_probe_key() -> None:
    metrics = dict.fromkeys(vocab.METRICS, 0.5)
    builder = TableBuilder()
    for identity in (_identity(), _identity(), _identity(seed=1), _identity(preset=vocab.PRESET_PAPER)):
        builder.add(identity, Outcome(metrics, metrics, 8, 2, 2, 0.1))
    frame = builder.frame()
    assert frame.height == 3 and frame.get_column("n_folds").to_list() == [2, 1, 1]
    assert not frame.select(vocab.PROBE_KEY).is_duplicated().any()
    results.check_results(frame)  # what the engine builds is what fhs reads


def test_check_results_checks_once_and_refuses_a_probe_twice() -> None:
    table = make_results([HAND_RUN])
    checked = results.check_results(table)
    assert isinstance(checked, results.CheckedResults) and checked.frame.schema["layer"] == pl.Int64
    assert results.check_results(checked) is checked and checked.sources == ()
    with pytest.raises(LayerprobeError, match="appears twice \\(in the table given\\)"):
        results.check_results(pl.concat([table, table.head(1)]))


def test_a_report_checks_each_table_once_and_computes_points_once(tmp_path, monkeypatch) -> None:
    calls = {"cast": 0, "points": 0}
    real_cast, real_points = results._cast, curves._probe_points

    def cast(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["cast"] += 1
        return real_cast(*args, **kwargs)

    def points(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["points"] += 1
        return real_points(*args, **kwargs)

    monkeypatch.setattr(results, "_cast", cast)
    monkeypatch.setattr(curves, "_probe_points", points)
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    make_results([HAND_RUN]).write_parquet(paths[0])
    make_results([{**HAND_RUN, "run_id": "r2"}]).write_parquet(paths[1])
    build_report(paths, tmp_path / "report", html_page=False)
    assert calls == {"cast": 2, "points": 1}
    calls.update(cast=0, points=0)
    profile_runs(results.load_results(paths))
    assert calls == {"cast": 2, "points": 1}
