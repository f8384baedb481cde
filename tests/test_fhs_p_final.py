"""Which P_final a profile uses (``FHSConfig.p_final``), and runs listed only from probe and model rows."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from layerprobe import vocab
from layerprobe.errors import LayerprobeError
from layerprobe.fhs import FHSConfig, layer_curves, matrix_markdown, profile_frame, profile_runs
from layerprobe.fhs.tables import details_markdown
from layerprobe.probe.config import SweepConfig
from layerprobe.probe.sweep import run_sweep
from layerprobe.testing.stores import synthetic_run, write_synthetic_store
from test_probe_generated import generated_store


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(a run with generated answers, a run without), each swept with linear probes."""
    root = tmp_path_factory.mktemp("pfinal")
    gen = generated_store(root / "gen.zarr")
    plain = write_synthetic_store(root / "plain.zarr", synthetic_run(60, n_classes=2, seed=5))
    sweep = lambda store: run_sweep(SweepConfig(stores=(store,), kinds=("linear",), progress=False))  # noqa: E731
    return sweep(gen), sweep(plain)


def _model_p(table: pl.DataFrame, site: str) -> float:
    return 100 * table.filter((pl.col("kind") == vocab.MODEL_KIND) & (pl.col("site") == site)).get_column("test_accuracy")[0]


def test_auto_takes_the_generated_answer_where_present(tables) -> None:
    gen, plain = tables
    cfg = FHSConfig(probe_kind=vocab.LINEAR)
    by_store = {p.store: p for p in profile_runs(pl.concat([gen, plain]), cfg)}
    p_gen, p_plain = (next(p for s, p in by_store.items() if s.endswith(name)) for name in ("gen.zarr", "plain.zarr"))
    assert p_gen.p_final_kind == vocab.P_FINAL_GENERATED and p_gen.p_final == pytest.approx(_model_p(gen, vocab.ANSWER_TEXT_SITE))
    assert p_plain.p_final_kind == vocab.P_FINAL_FORCED and p_plain.p_final == pytest.approx(_model_p(plain, vocab.ANSWER_SITE))
    frame = profile_frame(list(by_store.values()))
    assert sorted(frame.get_column("p_final_kind")) == [vocab.P_FINAL_FORCED, vocab.P_FINAL_GENERATED]
    line = matrix_markdown(frame).strip().splitlines()[-1]
    assert line.startswith("P_final: ") and "generated answer for" in line and "forced choice for" in line


def test_forced_and_generated_on_request(tables) -> None:
    gen, plain = tables
    forced = profile_runs(gen, FHSConfig(probe_kind=vocab.LINEAR, p_final=vocab.P_FINAL_FORCED))[0]
    assert forced.p_final_kind == vocab.P_FINAL_FORCED and forced.p_final == pytest.approx(_model_p(gen, vocab.ANSWER_SITE))
    assert "P_final: forced choice." in matrix_markdown(profile_frame([forced]))
    generated = profile_runs(gen, FHSConfig(probe_kind=vocab.LINEAR, p_final=vocab.P_FINAL_GENERATED))[0]
    assert "P_final: generated answer." in matrix_markdown(profile_frame([generated]))
    assert f"{vocab.ANSWER_TEXT_SITE} (generated answer)" in details_markdown([generated])
    missing = profile_runs(plain, FHSConfig(probe_kind=vocab.LINEAR, p_final=vocab.P_FINAL_GENERATED))[0]
    assert missing.p_final != missing.p_final and missing.p_final_kind == vocab.P_FINAL_GENERATED
    assert any(vocab.ANSWER_TEXT_SITE in note for note in missing.notes())
    curves = layer_curves(gen, FHSConfig(probe_kind=vocab.LINEAR))
    final = curves.filter(pl.col("module") == "P_final")
    assert final.select("site", "layer_name").row(0) == (vocab.ANSWER_TEXT_SITE, vocab.GENERATED_LAYER_NAME)
    with pytest.raises(LayerprobeError, match="p_final"):
        FHSConfig(p_final="sampled")


def test_vision_ce_rows_add_no_empty_profile(tables) -> None:
    gen, _ = tables
    ce = gen.head(1).with_columns(pl.lit(vocab.VISION_CE).alias("kind"), pl.lit("ce-run").alias("run_id"))
    profiles = profile_runs(pl.concat([gen, ce]), FHSConfig(probe_kind=vocab.LINEAR))
    assert [p.run_id for p in profiles] == [gen.get_column("run_id")[0]]


def test_cli_p_final(tables, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from layerprobe.cli.fhs_cmd import fhs

    gen, _ = tables
    path = tmp_path / "g.parquet"
    gen.write_parquet(path)
    result = CliRunner().invoke(fhs, [str(path), "--kind", "linear", "--p-final", "forced"])
    assert result.exit_code == 0, result.output
    assert "P_final: forced choice." in result.output
    assert "--p-final" in CliRunner().invoke(fhs, ["--help"]).output
