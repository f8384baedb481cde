"""The four-score profile FHS_V -> FHS_C -> FHS_L -> P_final of each run (paper section 3.3).

A run is one store (model + adapter, dataset, prompt) in the results table. Its modules are scored
with :func:`~layerprobe.fhs.scores.module_score` on the curves of :mod:`layerprobe.fhs.curves`;
P_final is a ``kind = "model"`` row, the model's own answer scored on the same split and metric:
its generated answer parsed to a candidate (the paper's) where the run has one, else the forced
choice over the candidates' first-token logits (``FHSConfig.p_final``; ``p_final_kind`` says which).
The second LLM site (final token by default) is scored too and reported beside FHS_L.

Seeds: with ``seed_agg="mean_curve"`` the profile scores the seed-averaged curve (what the plots
show); with ``"mean_score"`` it averages the per-seed scores. Either way ``fhs_std`` is the sample
standard deviation of the per-seed FHS (nan with fewer than two scoreable seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from layerprobe import vocab
from layerprobe.errors import LayerprobeError
from layerprobe.fhs.config import FHSConfig
from layerprobe.fhs.curves import LayerPoints, layer_points
from layerprobe.fhs.scores import ModuleScore, module_score
from layerprobe.results import CheckedResults

__all__ = ["FHSConfig", "ModuleProfile", "RunProfile", "profile_runs", "profiles_from"]

P_FINAL_LABELS: dict[str, str] = {vocab.P_FINAL_GENERATED: "generated answer", vocab.P_FINAL_FORCED: "forced choice"}
"""How reports name each P_final kind ("P_final: generated answer")."""


@dataclass(frozen=True)
class ModuleProfile:
    """One module of one run: its score and how it was obtained."""

    module: str
    """``V``, ``C``, ``L`` or ``L_alt``."""
    site: str
    """Store site the curve comes from (``a + b`` where module C spans two sites)."""
    layers: tuple[int, ...]
    """Layer indices of the curve, in order (missing ones included)."""
    score: ModuleScore
    """GF, VP, FHS and the curve's start/min/end (seed-aggregated as configured)."""
    fhs_std: float
    """Sample std over seeds of the per-seed FHS; nan with fewer than two scoreable seeds."""
    n_seeds: int
    """Seeds with at least one usable probe on this module."""

    @property
    def fhs(self) -> float:
        return self.score.fhs


@dataclass(frozen=True)
class RunProfile:
    """The four-score profile of one run, plus the alternative LLM site."""

    run_id: str
    model_id: str
    adapter: str | None
    dataset: str
    store: str | None
    vision: ModuleProfile
    connector: ModuleProfile
    llm: ModuleProfile
    llm_alt: ModuleProfile | None
    """The second LLM site (``FHSConfig.llm_alt_site``), or None when not configured."""
    p_final: float
    """The model's own answer, percent (mean over its rows); nan if the table has none."""
    p_final_std: float
    """Sample std over P_final rows (nan for one row)."""
    p_final_kind: str = vocab.P_FINAL_FORCED
    """Which P_final this is: ``generated`` (the parsed generated answer) or ``forced`` (forced choice)."""

    @property
    def p_final_label(self) -> str:
        """``generated answer`` or ``forced choice``, for reports."""
        return P_FINAL_LABELS[self.p_final_kind]

    @property
    def fhs_v(self) -> float:
        return self.vision.fhs

    @property
    def fhs_c(self) -> float:
        return self.connector.fhs

    @property
    def fhs_l(self) -> float:
        return self.llm.fhs

    def modules(self) -> tuple[ModuleProfile, ...]:
        """Scored modules in pipeline order."""
        return tuple(m for m in (self.vision, self.connector, self.llm, self.llm_alt) if m is not None)

    def notes(self) -> tuple[str, ...]:
        """Why any score is nan, one line per module."""
        out = [f"{m.module} ({m.site}): {m.score.reason}" for m in self.modules() if m.score.reason]
        if math.isnan(self.p_final):
            site = vocab.P_FINAL_SITES[self.p_final_kind]
            out.append(f"P_final: no usable '{vocab.MODEL_KIND}' row (site {site}, {self.p_final_label}) for run {self.run_id}")
        return tuple(out)


def profile_runs(results: CheckedResults | pl.DataFrame, config: FHSConfig | None = None) -> tuple[RunProfile, ...]:
    """Four-score profile of every run in a results table (see :func:`profiles_from`)."""
    return profiles_from(layer_points(results, config))


def profiles_from(points: LayerPoints) -> tuple[RunProfile, ...]:
    """Four-score profile of every run of ``points``, ordered by dataset, model, adapter."""
    config = points.config
    out = []
    for info in points.runs.sort("dataset", "model_id", "adapter", "run_id", nulls_last=False).iter_rows(named=True):
        run_points = points.probes.filter(pl.col("run_id") == info["run_id"])
        modules = {m: _module_profile(run_points, m, sites, config, info["run_id"]) for m, sites in config.module_sites().items()}
        finals = points.finals.filter(pl.col("run_id") == info["run_id"])
        p_final_n = finals.get_column("p").drop_nulls().to_numpy()
        fallback = vocab.P_FINAL_FORCED if config.p_final == vocab.P_FINAL_AUTO else config.p_final
        kind = finals.get_column("p_final_kind")[0] if finals.height else fallback
        out.append(
            RunProfile(
                run_id=info["run_id"],
                model_id=info["model_id"],
                adapter=info["adapter"] or None,
                dataset=info["dataset"],
                store=info["store"],
                vision=modules["V"],
                connector=modules["C"],
                llm=modules["L"],
                llm_alt=modules.get("L_alt"),
                p_final=float(p_final_n.mean()) if p_final_n.size else math.nan,
                p_final_std=float(p_final_n.std(ddof=1)) if p_final_n.size > 1 else math.nan,
                p_final_kind=kind,
            )
        )
    return tuple(out)


def _module_profile(run_points: pl.DataFrame, module: str, sites: tuple[str, ...], config: FHSConfig, run_id: str) -> ModuleProfile:
    rows = run_points.filter(pl.col("module") == module)
    if rows.is_empty():
        nan = math.nan
        reason = f"no '{config.probe_kind}' probes on {' or '.join(sites)} for run {run_id}"
        return ModuleProfile(module, sites[-1], (), ModuleScore(nan, nan, nan, nan, nan, nan, nan, 0, 0, reason), nan, 0)
    site = " + ".join(rows.get_column("site").unique(maintain_order=True).to_list())
    wide = rows.pivot(on="replicate", index="layer", values="p", sort_columns=True).sort("layer")
    layers = tuple(int(v) for v in wide.get_column("layer"))
    p_lr = wide.drop("layer").to_numpy().astype(np.float64).T  # (replicate, layer), nan = missing
    if config.missing == vocab.MISSING_ERROR and np.isnan(p_lr).any():
        bad = sorted({layers[j] for j in np.flatnonzero(np.isnan(p_lr).any(axis=0))})
        raise LayerprobeError(f"run {run_id} {site}: no usable '{config.probe_kind}' probe at layer(s) {', '.join(map(str, bad[:8]))}; rerun them or use missing='interpolate'")
    kw = {"lambda_": config.lambda_, "eps": config.eps, "missing": config.missing, "layer_ids": layers}
    used_lr = p_lr[~np.isnan(p_lr).all(axis=1)]
    per_seed = [module_score(curve, **kw) for curve in used_lr]
    fhs_s = np.array([s.fhs for s in per_seed if math.isfinite(s.fhs)])
    fhs_std = float(fhs_s.std(ddof=1)) if fhs_s.size > 1 else math.nan
    if config.seed_agg == vocab.MEAN_CURVE or not per_seed:
        mean_curve = np.array([col[~np.isnan(col)].mean() if (~np.isnan(col)).any() else math.nan for col in p_lr.T])
        score = module_score(mean_curve, **kw)
    else:
        score = _mean_of_scores(per_seed)
    return ModuleProfile(module, site, layers, score, fhs_std, len(used_lr))


def _mean_of_scores(scores: list[ModuleScore]) -> ModuleScore:
    undefined = next((s for s in scores if s.reason), None)
    if undefined is not None:
        return undefined._replace(reason=f"a seed's score is undefined: {undefined.reason}")
    averaged = ("fhs", "gf", "vp", "p_start", "p_min", "p_end", "total_variation")
    mean = {name: float(np.mean([getattr(s, name) for s in scores])) for name in averaged}
    return scores[0]._replace(**mean, n_missing=max(s.n_missing for s in scores))
