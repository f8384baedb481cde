"""Table-1-style matrix, CSV flags and the tidy curves table."""

import math

import polars as pl
import pytest
from test_fhs_profile import HAND_RUN, make_results

from layerprobe.errors import LayerprobeError
from layerprobe.fhs import layer_curves, matrix_markdown, profile_frame, profile_runs, write_profile_table
from layerprobe.fhs.tables import run_label, short_name


def _flat_run(run_id, model_id, dataset, level, *, adapter=None, final=0.7):
    # flat curves: every FHS equals its level (GF = 0, VP = 1), so the expected table is known exactly
    curves = {site: [[level] * n] for site, n in (("vision/mean", 3), ("connector/mean", 2), ("llm/image_mean", 4), ("llm/final_token", 4))}
    return dict(run_id=run_id, model_id=model_id, adapter=adapter, dataset=dataset, final=final, curves=curves)


@pytest.fixture
def frame():
    runs = [
        _flat_run("a", "org/alpha", "busi", 0.60, final=0.70),
        _flat_run("b", "org/alpha", "busi", 0.80, adapter="ft/lora-busi", final=0.90),
        _flat_run("c", "org/beta", "busi", 0.70, final=0.50),
        _flat_run("d", "org/alpha", "covid", 0.65, final=0.60),
    ]
    return profile_frame(profile_runs(make_results(runs)))


def test_matrix_marks_dataset_best_and_worst(frame):
    text = matrix_markdown(frame)
    lines = text.splitlines()
    assert lines[0] == "| model | busi | covid |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:5]}
    assert rows["alpha"] == "| alpha | <ins>60.00</ins> -> <ins>60.00</ins> -> <ins>60.00</ins> -> 70.00 | 65.00 -> 65.00 -> 65.00 -> 60.00 |"
    assert rows["alpha + lora-busi"].startswith("| alpha + lora-busi | **80.00** -> **80.00** -> **80.00** -> **90.00** |")
    assert rows["beta"].startswith("| beta | 70.00 -> 70.00 -> 70.00 -> <ins>50.00</ins> |")
    assert "**Bold**: dataset best" in text


def test_csv_has_flags_and_numbers(frame, tmp_path):
    path = write_profile_table(frame, tmp_path / "t.csv")
    back = pl.read_csv(path)
    a = back.filter(pl.col("run_id") == "a").row(0, named=True)
    assert a["fhs_v"] == pytest.approx(60.0) and a["fhs_v_worst"] is True and a["fhs_v_best"] is False
    assert a["p_final_best"] is False and a["p_final_worst"] is False  # 70 is neither max (90) nor min (50)
    assert a["profile"] == "60.00 -> 60.00 -> 60.00 -> 70.00"
    d = back.filter(pl.col("run_id") == "d").row(0, named=True)
    assert not any(d[f"{s}_{w}"] for s in ("fhs_v", "fhs_c", "fhs_l", "p_final") for w in ("best", "worst"))  # alone in covid
    assert a["fhs_v_std"] is None  # one seed: no spread, an empty cell rather than NaN
    assert (tmp_path / "t.csv").read_text().count("\n") == 5
    md = write_profile_table(frame, tmp_path / "t.md").read_text()
    assert md == matrix_markdown(frame)
    with pytest.raises(LayerprobeError, match=".md .*or .csv"):
        write_profile_table(frame, tmp_path / "t.xlsx")


def test_undefined_scores_show_as_na_and_are_never_marked():
    runs = [_flat_run("a", "org/alpha", "busi", 0.60), _flat_run("b", "org/beta", "busi", 0.0), _flat_run("c", "org/gamma", "busi", 0.7)]
    frame = profile_frame(profile_runs(make_results(runs)))
    b = frame.filter(pl.col("run_id") == "b").row(0, named=True)
    assert math.isnan(b["fhs_v"]) and not b["fhs_v_best"] and not b["fhs_v_worst"]
    assert "P_end is 0" in b["notes"]
    assert "| beta | n/a -> n/a -> n/a -> 70.00 |" in matrix_markdown(frame)


def test_labels_fall_back_to_run_id_on_clash():
    runs = [_flat_run("x1", "org/alpha", "busi", 0.6), _flat_run("x2", "other/alpha", "busi", 0.7)]
    frame = profile_frame(profile_runs(make_results(runs)))
    assert sorted(frame.get_column("label")) == ["x1", "x2"]
    assert short_name("google/medgemma-4b-it") == "medgemma-4b-it" and short_name("./ckpt/") == "ckpt"
    assert run_label("org/alpha", "/tmp/lora-7/") == "alpha + lora-7"


def test_curves_parquet_round_trip(tmp_path):
    curves = layer_curves(make_results([HAND_RUN]))
    curves.write_parquet(tmp_path / "c.parquet")
    back = pl.read_parquet(tmp_path / "c.parquet")
    assert back.columns == ["run_id", "model_id", "adapter", "dataset", "store", "module", "site", "layer", "layer_name", "metric", "split", "p_mean", "p_std", "n_seeds"]
    assert back.height == 3 + 2 + 3 + 3 + 1  # V, C, L and L_alt without the embed layer, P_final
