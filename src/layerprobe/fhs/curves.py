"""From probe rows to layer-wise curves: which rows count, per seed and averaged over seeds.

Choices, in order of application (each documented on :class:`~layerprobe.fhs.config.FHSConfig`):

1. Rows of ``config.probe_kind`` on the module sites; one preset per run (``config.preset`` picks one,
   else several presets in one run are refused rather than silently mixed).
2. ``P = 100 x <split>_<metric>`` of rows with status ``ok`` and a finite value; anything else is a
   missing layer.
3. Several hyperparameter settings (``params``) for the same (run, site, layer, seed) are a grid:
   the one with the best ``val_<metric>`` is kept (ties: the first ``params`` string), and its
   ``<split>_<metric>`` is used. A grid without validation scores is refused.
4. Seeds are paired across layers by rank (the r-th smallest seed of every layer is replicate r),
   so engines that derive a seed per probe still give one curve per replicate.
5. Module C is ``connector_inner_site`` (where a run has it) followed by ``connector_site``, numbered
   on: Qwen-style connectors then read ``inner, output`` like every other MLP connector.
6. The layers of a module are its selection (parsed once by the config) resolved against
   ``n = 1 + the largest layer index in the table`` for that run and module: the table alone decides, so results never depend on whether the
   store is reachable. Selected layers without a usable row stay in the curve as missing (null).

The points are computed once per (table, config) by :func:`layer_points`; the profile
(:func:`~layerprobe.fhs.profile.profiles_from`) and the curves (:func:`curves_from`) are both made of them.
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from layerprobe import vocab
from layerprobe.errors import LayerprobeError
from layerprobe.fhs.config import FHSConfig
from layerprobe.results import SOURCE, CheckedResults, check_results

RUN_INFO: tuple[str, ...] = ("run_id", "model_id", "adapter", "dataset", "store")
MODULE_ORDER: tuple[str, ...] = ("V", "C", "L", "L_alt", "P_final")
MODULE_NAMES: dict[str, str] = {"V": "vision", "C": "connector", "L": "LLM", "L_alt": "LLM (alt. site)", "P_final": "answer"}


class LayerPoints(NamedTuple):
    """What every score, table and figure of one (results table, config) is made of."""

    config: FHSConfig
    """The settings the points were selected with."""
    runs: pl.DataFrame
    """One row per run: run_id, model_id, adapter, dataset, store (and source when present)."""
    probes: pl.DataFrame
    """Per-replicate points: run_id, module, site, layer, layer_name, replicate, p (percent or null).
    Every selected layer of every module appears for every replicate of its run, so a missing probe
    is an explicit null rather than an absent row."""
    finals: pl.DataFrame
    """P_final rows (kind ``model``) of the kind ``config.p_final`` chooses per run: run_id, p
    (percent or null), p_final_kind (``generated`` or ``forced``)."""


def layer_points(results: CheckedResults | pl.DataFrame, config: FHSConfig | None = None) -> LayerPoints:
    """The points of every run (checking ``results`` first unless it is a :class:`CheckedResults`)."""
    config = config or FHSConfig()
    frame = check_results(results).frame
    return LayerPoints(config, _run_info(frame), _probe_points(frame, config), _final_points(frame, config))


def _run_info(frame: pl.DataFrame) -> pl.DataFrame:
    """The runs of probe and model rows: other kinds (``vision_ce``) have no profile of their own."""
    cols = [*RUN_INFO, *([SOURCE] if SOURCE in frame.columns else [])]
    profiled = frame.filter(pl.col("kind").is_in([*vocab.PROBE_KINDS, vocab.MODEL_KIND]))
    return profiled.select(cols).unique(subset=["run_id"], keep="first", maintain_order=True)


def _probe_points(results: pl.DataFrame, config: FHSConfig) -> pl.DataFrame:
    sites = config.module_sites()
    site_module = pl.DataFrame(
        [(site, module, rank) for module, group in sites.items() for rank, site in enumerate(group)],
        schema={"site": pl.String, "module": pl.String, "site_rank": pl.Int64},
        orient="row",
    )
    rows = results.filter(pl.col("kind") == config.probe_kind).join(site_module, on="site")
    if rows.is_empty():
        kinds = sorted(results.get_column("kind").drop_nulls().unique().to_list())
        raise LayerprobeError(
            f"no '{config.probe_kind}' probe rows on {', '.join(s for g in sites.values() for s in g)}; "
            f"kinds present: {', '.join(kinds) or 'none'} (choose one with --kind)"
        )
    rows = _module_layers(rows)
    rows = _one_preset(rows, config.preset, config.probe_kind)
    rows = rows.with_columns(_percent(config), pl.col("seed").fill_null(0))
    rows = _best_of_grid(rows, config)
    rows = rows.with_columns(pl.col("seed").rank("dense").over("run_id", "site", "layer").cast(pl.Int64).sub(1).alias("replicate"))
    return _full_grid(rows, config)


def _final_points(results: pl.DataFrame, config: FHSConfig) -> pl.DataFrame:
    """The model rows of the P_final kind each run uses (``FHSConfig.p_final``; ``auto``: generated
    where the run has a generated-answer row, else forced)."""
    kind_of_site = {site: kind for kind, site in vocab.P_FINAL_SITES.items()}
    rows = results.filter((pl.col("kind") == vocab.MODEL_KIND) & pl.col("site").is_in(list(kind_of_site)))
    rows = rows.with_columns(pl.col("site").replace_strict(kind_of_site, return_dtype=pl.String).alias("p_final_kind"))
    if config.p_final == vocab.P_FINAL_AUTO:
        has_generated = (pl.col("p_final_kind") == vocab.P_FINAL_GENERATED).any().over("run_id")
        wanted = pl.when(has_generated).then(pl.lit(vocab.P_FINAL_GENERATED)).otherwise(pl.lit(vocab.P_FINAL_FORCED))
    else:
        wanted = pl.lit(config.p_final)
    return rows.filter(pl.col("p_final_kind") == wanted).select("run_id", _percent(config), "p_final_kind")


def layer_curves(results: CheckedResults | pl.DataFrame, config: FHSConfig | None = None) -> pl.DataFrame:
    """Tidy per-run layer-wise curves of a results table (see :func:`curves_from`)."""
    return curves_from(layer_points(results, config))


def curves_from(points: LayerPoints) -> pl.DataFrame:
    """Tidy per-run layer-wise curves, one row per (run, module, layer) plus one ``P_final`` row.

    Columns: run info, module, site, layer, layer_name, metric, split, p_mean, p_std (sample std over
    seeds; null for one seed), n_seeds (seeds with a usable probe; 0 = missing layer).
    """
    config, probes = points.config, points.probes.drop("replicate")
    names = {vocab.P_FINAL_GENERATED: vocab.GENERATED_LAYER_NAME, vocab.P_FINAL_FORCED: vocab.ANSWER_LAYER_NAME}
    finals = points.finals.with_columns(
        pl.lit("P_final").alias("module"), pl.col("p_final_kind").replace_strict(vocab.P_FINAL_SITES, return_dtype=pl.String).alias("site"),
        pl.lit(0, pl.Int64).alias("layer"), pl.col("p_final_kind").replace_strict(names, return_dtype=pl.String).alias("layer_name"),
    )  # fmt: skip
    both = pl.concat([probes, finals.select(probes.columns)])
    curves = (
        both.group_by("run_id", "module", "site", "layer", "layer_name", maintain_order=True)
        .agg(pl.col("p").mean().alias("p_mean"), pl.col("p").std(ddof=1).alias("p_std"), pl.col("p").count().cast(pl.Int64).alias("n_seeds"))
        .with_columns(
            pl.lit(config.metric).alias("metric"),
            pl.lit(config.split).alias("split"),
            pl.col("module").replace_strict({m: i for i, m in enumerate(MODULE_ORDER)}, return_dtype=pl.Int64).alias("_order"),
        )
    )
    info = points.runs.select(RUN_INFO)
    return (
        info.join(curves, on="run_id", how="inner")
        .sort("run_id", "_order", "layer")
        .drop("_order")
        .select(*RUN_INFO, "module", "site", "layer", "layer_name", "metric", "split", "p_mean", "p_std", "n_seeds")
    )


def _percent(config: FHSConfig) -> pl.Expr:
    """P in percent from a usable row (status ok, finite metric); null marks a missing layer."""
    value = pl.col(config.column)
    return pl.when((pl.col("status") == vocab.STATUS_OK) & value.is_not_null() & value.is_finite()).then(100.0 * value).otherwise(None).alias("p")


def _module_layers(rows: pl.DataFrame) -> pl.DataFrame:
    """Number layers within a module: a site's layers follow those of the module's earlier sites.

    Single-site modules keep the table's layer indices (so ``-1`` and ``1:`` mean what they mean in
    the store); module C becomes ``inner, output`` also where ``inner`` is a site of its own.
    """
    size = rows.group_by("run_id", "module", "site_rank").agg((pl.col("layer").max() + 1).alias("n"))
    offset = (
        size.sort("site_rank")
        .with_columns(pl.col("n").cum_sum().over("run_id", "module").sub(pl.col("n")).alias("offset"))
        .select("run_id", "module", "site_rank", "offset")
    )
    return rows.join(offset, on=["run_id", "module", "site_rank"]).with_columns((pl.col("layer") + pl.col("offset")).alias("layer")).drop("offset", "site_rank")


def _one_preset(rows: pl.DataFrame, preset: str | None, kind: str) -> pl.DataFrame:
    if preset is not None:
        chosen = rows.filter(pl.col("preset") == preset)
        if chosen.is_empty():
            present = sorted(rows.get_column("preset").drop_nulls().unique().to_list())
            raise LayerprobeError(f"no '{kind}' probes with preset {preset!r}; presets present: {', '.join(present) or 'none'}")
        return chosen
    per_run = rows.group_by("run_id").agg(pl.col("preset").unique().sort().alias("presets")).filter(pl.col("presets").list.len() > 1)
    if per_run.height:
        run_id, presets = per_run.row(0)
        raise LayerprobeError(f"run {run_id} has '{kind}' probes from several presets ({', '.join(map(str, presets))}); choose one with --preset")
    return rows


def _best_of_grid(rows: pl.DataFrame, config: FHSConfig) -> pl.DataFrame:
    key = ["run_id", "site", "layer", "seed"]
    val = f"val_{config.metric}"
    grid = rows.group_by(key).agg(pl.col("params").n_unique().alias("n_params"), pl.col(val).is_not_null().any().alias("has_val"))
    blind = grid.filter((pl.col("n_params") > 1) & ~pl.col("has_val"))
    if blind.height:
        run_id, site, layer, _seed, n_params, _ = blind.row(0)
        raise LayerprobeError(
            f"run {run_id} {site} layer {layer} has {n_params} hyperparameter settings but no {val} to choose one; "
            "probe with a validation split or pass a table with one setting per layer"
        )
    # Usable rows first, then best validation score, then a stable tie-break on params.
    ranked = rows.sort([pl.col("p").is_null(), pl.col(val), pl.col("params")], descending=[False, True, False], nulls_last=True)
    return ranked.unique(subset=key, keep="first", maintain_order=True)


def _full_grid(rows: pl.DataFrame, config: FHSConfig) -> pl.DataFrame:
    parts: list[pl.DataFrame] = []
    for (run_id, module), group in rows.group_by("run_id", "module", maintain_order=True):
        n_layers = int(group.get_column("layer").max()) + 1
        selection = config.module_layers(module)
        label = " + ".join(group.get_column("site").unique(maintain_order=True).to_list())
        try:
            layers = selection.resolve(n_layers)
        except LayerprobeError as err:
            raise LayerprobeError(f"run {run_id} {label}: {err}") from None
        if not layers:
            raise LayerprobeError(f"layer selection {selection.spec!r} picks no layer of {label} in run {run_id} ({n_layers} layers in the table); change it")
        known = {layer: (site, name) for layer, site, name in group.select("layer", "site", "layer_name").unique(subset=["layer"]).iter_rows()}
        fallback = config.module_sites()[module][-1]
        n_rep = int(group.get_column("replicate").max()) + 1
        grid = pl.DataFrame(
            {
                "layer": [layer for layer in layers for _ in range(n_rep)],
                "replicate": [r for _ in layers for r in range(n_rep)],
                "site": [known.get(layer, (fallback, None))[0] for layer in layers for _ in range(n_rep)],
                "layer_name": [known.get(layer, (None, None))[1] or str(layer) for layer in layers for _ in range(n_rep)],
            },
            schema={"layer": pl.Int64, "replicate": pl.Int64, "site": pl.String, "layer_name": pl.String},
        )
        parts.append(
            grid.join(group.select("layer", "replicate", "p"), on=["layer", "replicate"], how="left").with_columns(
                pl.lit(run_id).alias("run_id"), pl.lit(module).alias("module")
            )
        )
    return pl.concat(parts).select("run_id", "module", "site", "layer", "layer_name", "replicate", "p")
