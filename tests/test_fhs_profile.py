"""The four-score profile end to end from small results tables built here (the probe table contract).

``make_results`` is also imported by the other test_fhs_* files.
"""

import math

import numpy as np
import polars as pl
import pytest

from layerprobe.errors import LayerprobeError
from layerprobe.fhs import RESULT_COLUMNS, FHSConfig, layer_curves, load_results, profile_runs

METRICS = ("accuracy", "f1", "precision", "recall", "auc")


def make_row(run: dict, site: str, layer: int, name: str, kind: str, seed: int, value: float | None, **over) -> dict:
    ok = value is not None
    row = {
        "run_id": run["run_id"],
        "store": run.get("store"),
        "model_id": run["model_id"],
        "adapter": run.get("adapter"),
        "dataset": run["dataset"],
        "site": site,
        "layer": layer,
        "layer_name": name,
        "kind": kind,
        "seed": seed,
        "preset": "paper",
        "params": '{"lr": 0.0001}',
        "status": "ok" if ok else "failed",
        "error": None if ok else "diverged",
        # f1 is made a little lower than accuracy so a wrong column shows up in the numbers
        **{f"{split}_{m}": (None if not ok else (value if m != "f1" else max(value - 0.05, 0.0))) for split in ("val", "test") for m in METRICS},
        "n_train": 40,
        "n_val": 10,
        "n_test": 20,
        "train_seconds": 0.01,
    }
    row.update(over)
    return row


def make_results(runs: list[dict]) -> pl.DataFrame:
    """A results table: run["curves"][site] = one list of fractions per seed (None = failed probe)."""
    rows = []
    for run in runs:
        for site, seeds in run["curves"].items():
            names = run.get("names", {}).get(site)
            for seed, curve in enumerate(seeds):
                for layer, value in enumerate(curve):
                    rows.append(make_row(run, site, layer, names[layer] if names else str(layer), run.get("kind", "mlp"), seed, value))
        if run.get("final") is not None:
            rows.append(make_row(run, "answer_logits", 0, "answer", "model", 0, run["final"]))
    schema = {"adapter": pl.String, "store": pl.String, "error": pl.String}
    return pl.DataFrame(rows, schema_overrides=schema).select(RESULT_COLUMNS)


def synthetic_run(run_id, model_id, dataset, *, adapter=None, n_v=6, n_c=2, n_l=6, seeds=2, shift=0.0, final=0.8, rng=0):
    """Plausible curves: vision rises, connector keeps it, the LLM dips then recovers, final token starts at chance."""
    r = np.random.default_rng(rng)
    v = 0.5 + 0.3 * (1 - np.exp(-np.arange(n_v) / 2)) + shift
    c = v[-1] + np.linspace(0.01, -0.01, n_c)
    li = np.concatenate([[c[-1]], c[-1] - 0.12 + 0.1 * (1 - np.exp(-np.arange(n_l - 1) / 2))])
    lf = np.concatenate([[0.34], 0.34 + (li[1:] - 0.3) * (1 - np.exp(-np.arange(n_l - 1) / 3))])

    def noisy(base):
        return [np.clip(base + r.normal(0, 0.01, base.shape), 0, 1).tolist() for _ in range(seeds)]

    curves = {"vision/mean": noisy(v), "connector/mean": noisy(c), "llm/image_mean": noisy(li), "llm/final_token": noisy(lf)}
    return dict(run_id=run_id, model_id=model_id, adapter=adapter, dataset=dataset, final=final, curves=curves, names={"connector/mean": ["inner", "output"][-n_c:]})


HAND_RUN = dict(
    run_id="r1",
    model_id="org/tiny-llava",
    dataset="busi",
    final=0.74,
    names={"connector/mean": ["inner", "output"]},
    curves={
        "vision/mean": [[0.50, 0.60, 0.80], [0.54, 0.62, 0.78]],
        "connector/mean": [[0.80, 0.78]],
        "llm/image_mean": [[0.78, 0.60, 0.70, 0.75]],  # layer 0 = embed, left out by default
        "llm/final_token": [[0.33, 0.40, 0.60, 0.76]],
    },
)


def test_profile_end_to_end_against_hand_values():
    (prof,) = profile_runs(make_results([HAND_RUN]))
    # V, seed mean curve 52, 61, 79: GF = ln(79/52) = 0.418204133885594139, TV 27,
    # VP = exp(-0.2*27/79) = 0.933929401957162567, FHS = 104.635700550423430
    assert prof.vision.score.gf == pytest.approx(0.418204133885594139, rel=1e-9)
    assert prof.vision.score.vp == pytest.approx(0.933929401957162567, rel=1e-9)
    assert prof.fhs_v == pytest.approx(104.635700550423430, rel=1e-9)
    # per-seed FHS 109.102903352965136 (50,60,80) and 100.315375666350864 (54,62,78): sample std 6.21372041706948511
    assert prof.vision.fhs_std == pytest.approx(6.21372041706948511, rel=1e-9)
    assert prof.vision.n_seeds == 2
    # C: 80, 78: GF = 0.5 ln(78/80) = -0.0126589039921449377, VP = exp(-0.4/78), FHS = 76.6186799789224055
    assert prof.fhs_c == pytest.approx(76.6186799789224055, rel=1e-9)
    assert math.isnan(prof.connector.fhs_std)
    # L (decoder layers 1..3): 60, 70, 75: GF = ln(1.25), VP = exp(-0.04), FHS = 88.1387555002470341
    assert prof.llm.layers == (1, 2, 3)
    assert prof.fhs_l == pytest.approx(88.1387555002470341, rel=1e-9)
    # L_alt (final token) 40, 60, 76: FHS = 113.502234048358241
    assert prof.llm_alt.site == "llm/final_token"
    assert prof.llm_alt.fhs == pytest.approx(113.502234048358241, rel=1e-9)
    assert prof.p_final == pytest.approx(74.0)
    assert prof.notes() == ()


def test_profile_options_change_what_is_scored():
    results = make_results([HAND_RUN])
    # mean of per-seed scores: (109.102903352965136 + 100.315375666350864) / 2 = 104.709139509658000
    (by_score,) = profile_runs(results, FHSConfig(seed_agg="mean_score"))
    assert by_score.fhs_v == pytest.approx(104.709139509658000, rel=1e-9)
    # embed included: 78, 60, 70, 75: start 78, min 60, end 75, TV 33 -> FHS 74.9981659863879540
    (with_embed,) = profile_runs(results, FHSConfig(llm_layers=None))
    assert with_embed.fhs_l == pytest.approx(74.9981659863879540, rel=1e-9)
    # only the connector output counts: a one-layer module scores its value
    (last_only,) = profile_runs(results, FHSConfig(connector_layers="-1", llm_alt_site=None))
    assert last_only.fhs_c == pytest.approx(78.0) and last_only.llm_alt is None
    # the final token feeds FHS_L and the image mean becomes the alternative
    (swapped,) = profile_runs(results, FHSConfig(llm_site="llm/final_token", llm_alt_site="llm/image_mean"))
    assert swapped.fhs_l == pytest.approx(113.502234048358241, rel=1e-9)
    # f1 columns (built as accuracy - 0.05): P_final = 69
    (f1,) = profile_runs(results, FHSConfig(metric="f1"))
    assert f1.p_final == pytest.approx(69.0)


def test_connector_inner_site_precedes_the_output():
    # Qwen-style: the merger's hidden layer is a site of its own; module C still reads inner, output = 80, 78
    curves = {**HAND_RUN["curves"], "connector/inner_mean": [[0.80]], "connector/mean": [[0.78]]}
    run = {**HAND_RUN, "curves": curves, "names": {"connector/inner_mean": ["inner"], "connector/mean": ["output"]}}
    results = make_results([run])
    (prof,) = profile_runs(results)
    assert prof.connector.layers == (0, 1) and prof.connector.site == "connector/inner_mean + connector/mean"
    assert prof.fhs_c == pytest.approx(76.6186799789224055, rel=1e-9)
    connector = layer_curves(results).filter(pl.col("module") == "C")
    assert connector.select("site", "layer", "layer_name").rows() == [("connector/inner_mean", 0, "inner"), ("connector/mean", 1, "output")]
    (output_only,) = profile_runs(results, FHSConfig(connector_inner_site=None))
    assert output_only.fhs_c == pytest.approx(78.0)


def test_failed_probes_are_missing_layers():
    run = {**HAND_RUN, "curves": {**HAND_RUN["curves"], "vision/mean": [[0.50, None, 0.40, 0.80]], "connector/mean": [[0.80, None]]}}
    (prof,) = profile_runs(make_results([run]))
    # 50, -, 40, 80 -> bridged: FHS 111.658831682458720 (see test_fhs_scores)
    assert prof.fhs_v == pytest.approx(111.658831682458720, rel=1e-9)
    assert prof.vision.score.n_missing == 1
    assert math.isnan(prof.fhs_c) and "last layer missing" in prof.connector.score.reason
    assert any(n.startswith("C (connector/mean)") for n in prof.notes())
    with pytest.raises(LayerprobeError, match="layer\\(s\\) 1"):
        profile_runs(make_results([run]), FHSConfig(missing="error"))


def test_missing_model_row_and_module():
    run = {**HAND_RUN, "final": None, "curves": {k: v for k, v in HAND_RUN["curves"].items() if k != "connector/mean"}}
    (prof,) = profile_runs(make_results([run]))
    assert math.isnan(prof.p_final) and math.isnan(prof.fhs_c)
    assert "no 'mlp' probes on connector/inner_mean or connector/mean" in prof.connector.score.reason
    assert len(prof.notes()) == 2


def test_grid_is_reduced_by_validation_score():
    results = make_results([HAND_RUN])
    worse = results.filter(pl.col("site") == "connector/mean").with_columns(
        pl.lit('{"lr": 0.01}').alias("params"), pl.col("val_accuracy") - 0.2, pl.lit(0.99).alias("test_accuracy")
    )
    (prof,) = profile_runs(pl.concat([results, worse]))
    assert prof.fhs_c == pytest.approx(76.6186799789224055, rel=1e-9)  # the better-on-val setting wins
    blind = pl.concat([results, worse.with_columns(pl.lit(None, pl.Float64).alias("val_accuracy"))]).with_columns(pl.lit(None, pl.Float64).alias("val_accuracy"))
    with pytest.raises(LayerprobeError, match="hyperparameter settings but no val_accuracy"):
        profile_runs(blind)


def test_presets_and_kinds_are_never_mixed():
    results = make_results([HAND_RUN])
    other = results.filter(pl.col("kind") == "mlp").with_columns(pl.lit("fast").alias("preset"), pl.lit(0.5).alias("test_accuracy"))
    both = pl.concat([results, other])
    with pytest.raises(LayerprobeError, match="several presets .*--preset"):
        profile_runs(both)
    (prof,) = profile_runs(both, FHSConfig(preset="fast"))
    assert prof.fhs_v == pytest.approx(50.0)  # a flat curve at 50
    with pytest.raises(LayerprobeError, match="kinds present: mlp, model"):
        profile_runs(results, FHSConfig(probe_kind="linear"))


def test_layer_curves_are_tidy_with_explicit_gaps():
    run = {**HAND_RUN, "curves": {**HAND_RUN["curves"], "vision/mean": [[0.50, None, 0.80], [0.54, None, 0.78]]}}
    curves = layer_curves(make_results([run]))
    vision = curves.filter(pl.col("module") == "V").sort("layer")
    assert vision.get_column("p_mean").to_list()[0] == pytest.approx(52.0)
    assert vision.get_column("p_mean").to_list()[1] is None and vision.get_column("n_seeds").to_list() == [2, 0, 2]
    assert vision.get_column("p_std").to_list()[0] == pytest.approx(math.sqrt(8.0))  # 50 and 54
    assert curves.filter(pl.col("module") == "C").get_column("layer_name").to_list() == ["inner", "output"]
    assert curves.filter(pl.col("module") == "P_final").get_column("p_mean").to_list() == [pytest.approx(74.0)]
    assert curves.get_column("module").unique(maintain_order=True).to_list() == ["V", "C", "L", "L_alt", "P_final"]


def test_load_results_checks_files(tmp_path):
    table = make_results([HAND_RUN])
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    table.write_parquet(a)
    table.with_columns(pl.lit("r2").alias("run_id")).write_parquet(b)
    loaded = load_results([a, b])
    assert loaded.frame.height == 2 * table.height and set(loaded.frame.get_column("source")) == {str(a), str(b)}
    with pytest.raises(LayerprobeError, match="appears twice"):
        load_results([a, a])
    with pytest.raises(LayerprobeError, match="does not exist"):
        load_results([tmp_path / "nope.parquet"])
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(LayerprobeError, match="not a readable parquet"):
        load_results([tmp_path / "junk.parquet"])
    table.drop("val_auc").write_parquet(tmp_path / "old.parquet")
    with pytest.raises(LayerprobeError, match="lacks column\\(s\\) val_auc"):
        load_results([tmp_path / "old.parquet"])
    table.with_columns(pl.col("test_accuracy") * 100).write_parquet(tmp_path / "pct.parquet")
    with pytest.raises(LayerprobeError, match="fractions, not percents"):
        load_results([tmp_path / "pct.parquet"])


def test_config_validation():
    with pytest.raises(LayerprobeError, match="metric"):
        FHSConfig(metric="mcc")
    with pytest.raises(LayerprobeError, match="lambda"):
        FHSConfig(lambda_=-1)
    with pytest.raises(LayerprobeError, match="llm_alt_site equals llm_site"):
        FHSConfig(llm_alt_site="llm/image_mean")
    assert FHSConfig(vision_layers=[0, -1]).vision_layers == (0, -1)
    with pytest.raises(LayerprobeError, match="picks no layer"):
        profile_runs(make_results([HAND_RUN]), FHSConfig(llm_layers="9:"))
