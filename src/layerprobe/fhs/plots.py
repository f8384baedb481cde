"""Figures: the probe curve through the whole pipeline (paper Fig. 3) and comprehension vs
utilisation in the LLM (Fig. 5), from the tidy curves of :func:`layerprobe.fhs.curves.layer_curves`.

One figure per dataset, one panel per model; runs of the same model that differ only by adapter
share a panel (before/after fine-tuning overlaid), which is possible because they share layers.
Seed spread (one std) is drawn as a band when a layer has two or more seeds.

Design choices:
- matplotlib is imported inside the functions and figures are built on ``Figure`` with an Agg canvas,
  never through ``pyplot``: no backend is set globally, nothing happens at import, and plotting works
  headless and from threads.
- In the pipeline plot each module gets a horizontal span proportional to its layer count, but at
  least ``MIN_SPAN`` of the total: a connector with two layers next to a 32-block vision tower would
  otherwise be a sliver that no label fits. Ticks therefore name layers, not positions.
- P_final has no layers; it is drawn as a star in its own "answer" slot after the LLM.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import polars as pl

from layerprobe.errors import LayerprobeError
from layerprobe.fhs.config import FHSConfig
from layerprobe.fhs.tables import short_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FORMATS: tuple[str, ...] = ("png", "svg")
PIPELINE_MODULES: tuple[str, ...] = ("V", "C", "L")
MODULE_TITLES: dict[str, str] = {"V": "vision tower", "C": "connector", "L": "LLM", "P_final": "answer"}
MIN_SPAN = 0.2  # smallest share of the x axis one module gets
PANEL_SIZE = (6.4, 3.9)  # inches per panel
DPI = 150


class Figures(NamedTuple):
    """Files written for one kind of figure: one (png, svg, ...) tuple per dataset."""

    dataset: tuple[str, ...]
    paths: tuple[tuple[Path, ...], ...]


def plot_pipeline(
    curves: pl.DataFrame,
    out_dir: str | Path,
    *,
    config: FHSConfig | None = None,
    error_bands: bool = True,
    formats: Sequence[str] = FORMATS,
) -> Figures:
    """Layer-wise curves across vision | connector | LLM with module boundaries and P_final (Fig. 3)."""
    config = config or FHSConfig()
    draw = functools.partial(_draw_pipeline, config=config, error_bands=error_bands)
    return _per_dataset(curves, Path(out_dir), ("pipeline", "probe performance through the pipeline"), formats, draw, config)


def plot_llm_sites(
    curves: pl.DataFrame,
    out_dir: str | Path,
    *,
    config: FHSConfig | None = None,
    error_bands: bool = True,
    formats: Sequence[str] = FORMATS,
) -> Figures:
    """Comprehension (``llm_site``) vs utilisation (``llm_alt_site``) per LLM layer (Fig. 5).

    Datasets whose runs have neither LLM site are skipped.
    """
    config = config or FHSConfig()
    llm = curves.filter(pl.col("module").is_in(["L", "L_alt"]))
    if llm.is_empty():
        return Figures((), ())
    keep = curves.filter(pl.col("dataset").is_in(llm.get_column("dataset").unique().implode()))
    draw = functools.partial(_draw_llm_sites, config=config, error_bands=error_bands)
    return _per_dataset(keep, Path(out_dir), ("llm_sites", "comprehension vs utilisation in the LLM"), formats, draw, config)


def _per_dataset(curves: pl.DataFrame, out_dir: Path, name: tuple[str, str], formats: Sequence[str], draw, config: FHSConfig) -> Figures:
    """One figure per dataset, one panel per model; ``name`` = (file stem, title); ``draw(ax, rows)``."""
    stem, what = name
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad or not formats:
        raise LayerprobeError(f"figure formats {list(formats)} not supported; use png, svg and/or pdf")
    if curves.is_empty():
        raise LayerprobeError("no curves to plot; the results table has no probe rows for the chosen settings")
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir.mkdir(parents=True, exist_ok=True)
    datasets, written, used = [], [], set()
    for dataset in dict.fromkeys(curves.get_column("dataset").to_list()):
        part = curves.filter(pl.col("dataset") == dataset)
        models = list(dict.fromkeys(part.get_column("model_id").to_list()))
        n_cols = min(2, len(models))
        n_rows = math.ceil(len(models) / n_cols)
        fig = Figure(figsize=(PANEL_SIZE[0] * n_cols, PANEL_SIZE[1] * n_rows + 0.4), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for ax, model_id in zip(axes.flat, models, strict=False):
            draw(ax, part.filter(pl.col("model_id") == model_id))
            ax.set_title(plain(short_name(model_id)), fontsize=11, loc="left", fontweight="bold")
        for ax in list(axes.flat)[len(models) :]:
            ax.set_visible(False)
        fig.suptitle(plain(f"{dataset}: {what} ({config.split} {config.metric})"), fontsize=12)
        slug = _slug(dataset, used)
        paths = tuple(out_dir / f"{stem}_{slug}.{fmt}" for fmt in formats)
        # SVG text stays text (searchable, editable) and carries no date, so reruns are byte-stable.
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "layerprobe"}):
            for path, fmt in zip(paths, formats, strict=True):
                fig.savefig(path, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
        datasets.append(dataset)
        written.append(paths)
    return Figures(tuple(datasets), tuple(written))


class _Axis(NamedTuple):
    x_of: dict[tuple[str, int], float]  # (module, layer) -> x
    spans: dict[str, tuple[float, float]]  # module -> (left edge, right edge)
    ticks: list[tuple[float, str]]


def _pipeline_axis(group: pl.DataFrame) -> _Axis:
    layers = {m: _layers_of(group, m) for m in PIPELINE_MODULES}
    names = dict(zip(zip(group.get_column("module"), group.get_column("layer")), group.get_column("layer_name"), strict=True))
    present = [m for m in PIPELINE_MODULES if layers[m]]
    min_span = max(1.0, MIN_SPAN * sum(len(layers[m]) for m in present))
    x_of, spans, ticks, left = {}, {}, [], 0.0
    for module in present:
        mod_layers = layers[module]
        # Each layer sits at the centre of an equal cell, so end points keep clear of the boundaries.
        cell = max(len(mod_layers), min_span) / len(mod_layers)
        for i, layer in enumerate(mod_layers):
            x_of[(module, layer)] = left + (i + 0.5) * cell
        spans[module] = (left, left + cell * len(mod_layers))
        for layer in _tick_layers(mod_layers):
            ticks.append((x_of[(module, layer)], plain(names.get((module, layer), str(layer))) if module == "C" else str(layer)))
        left = spans[module][1]
    answer = max(2.0, 0.5 * min_span)
    spans["P_final"] = (left, left + answer)
    x_of[("P_final", 0)] = left + answer / 2
    return _Axis(x_of, spans, ticks)


def _draw_pipeline(ax: Axes, group: pl.DataFrame, config: FHSConfig, error_bands: bool) -> None:
    axis = _pipeline_axis(group)
    _module_backdrop(ax, axis.spans)
    for colour, (label, run) in zip(_colours(), _runs(group), strict=False):
        for module in PIPELINE_MODULES:
            part = run.filter(pl.col("module") == module).sort("layer")
            if part.is_empty():
                continue
            x = np.array([axis.x_of[(module, layer)] for layer in part.get_column("layer")])
            _line(ax, x, part, colour, label if module == "V" else None, "-", "o", error_bands)
        final = run.filter(pl.col("module") == "P_final").get_column("p_mean").drop_nulls()
        if final.len():
            ax.plot([axis.x_of[("P_final", 0)]], [final[0]], marker="*", markersize=14, color=colour, markeredgecolor="black", markeredgewidth=0.6, linestyle="none", zorder=5)
    ax.set_xticks([t[0] for t in axis.ticks], [t[1] for t in axis.ticks], fontsize=8)
    ax.set_xlim(min(s[0] for s in axis.spans.values()), max(s[1] for s in axis.spans.values()))
    ax.set_xlabel("layer", fontsize=9)
    _finish(ax, group.filter(pl.col("module").is_in([*PIPELINE_MODULES, "P_final"])), config, error_bands)


def _draw_llm_sites(ax: Axes, group: pl.DataFrame, config: FHSConfig, error_bands: bool) -> None:
    layers = sorted(set(_layers_of(group, "L")) | set(_layers_of(group, "L_alt")))
    final_x = (layers[-1] + max(1.0, 0.08 * len(layers))) if layers else 0.0
    for colour, (label, run) in zip(_colours(), _runs(group), strict=False):
        for module, style, marker in (("L", "-", "o"), ("L_alt", "--", "s")):
            part = run.filter(pl.col("module") == module).sort("layer")
            if not part.is_empty():
                _line(ax, part.get_column("layer").to_numpy().astype(float), part, colour, None, style, marker, error_bands)
        final = run.filter(pl.col("module") == "P_final").get_column("p_mean").drop_nulls()
        if final.len():
            ax.plot([final_x], [final[0]], marker="*", markersize=14, color=colour, markeredgecolor="black", markeredgewidth=0.6, linestyle="none", zorder=5)
        ax.plot([], [], color=colour, linewidth=6, solid_capstyle="butt", label=label)
    sites = dict(zip(group.get_column("module"), group.get_column("site"), strict=True))
    if "L" in sites:
        ax.plot([], [], color="black", linestyle="-", marker="o", markersize=4, label=plain(f"comprehension ({sites['L']})"))
    if "L_alt" in sites:
        ax.plot([], [], color="black", linestyle="--", marker="s", markersize=4, label=plain(f"utilisation ({sites['L_alt']})"))
    if layers:
        ax.axvline((layers[-1] + final_x) / 2, color="0.6", linestyle=":", linewidth=1)
        ax.set_xticks([*_tick_layers(layers), final_x], [*map(str, _tick_layers(layers)), "answer"], fontsize=8)
    ax.set_xlabel("LLM layer" + (" (0 = embeddings)" if layers and layers[0] == 0 else ""), fontsize=9)
    _finish(ax, group.filter(pl.col("module").is_in(["L", "L_alt", "P_final"])), config, error_bands)


def _line(ax: Axes, x: np.ndarray, part: pl.DataFrame, colour: str, label: str | None, style: str, marker: str, error_bands: bool) -> None:
    y = part.get_column("p_mean").cast(pl.Float64).fill_null(np.nan).to_numpy()
    ax.plot(x, y, linestyle=style, marker=marker, markersize=3.5, linewidth=1.6, color=colour, label=label)
    std = part.get_column("p_std").cast(pl.Float64).fill_null(np.nan).to_numpy()
    if error_bands and np.isfinite(std).any():
        ax.fill_between(x, y - std, y + std, color=colour, alpha=0.18, linewidth=0)


def _module_backdrop(ax: Axes, spans: dict[str, tuple[float, float]]) -> None:
    edges = sorted({edge for span in spans.values() for edge in span})
    for module, (lo, hi) in spans.items():
        if module in ("C", "P_final"):
            ax.axvspan(lo, hi, color="0.93", zorder=0, linewidth=0)
    for edge in edges[1:-1]:
        ax.axvline(edge, color="0.55", linestyle="--", linewidth=0.9, zorder=1)
    top = ax.secondary_xaxis("top")
    top.set_xticks([(lo + hi) / 2 for lo, hi in spans.values()], [MODULE_TITLES[m] for m in spans], fontsize=9)
    top.tick_params(length=0)


def _finish(ax: Axes, group: pl.DataFrame, config: FHSConfig, error_bands: bool) -> None:
    ax.plot([], [], marker="*", markersize=11, color="white", markeredgecolor="black", linestyle="none", label="P_final (model's answer)")
    spread = pl.col("p_std").fill_null(0.0) if error_bands else pl.lit(0.0)
    bounds = group.select((pl.col("p_mean") - spread).min().alias("lo"), (pl.col("p_mean") + spread).max().alias("hi")).row(0)
    lo, hi = (bounds[0], bounds[1]) if bounds[0] is not None else (0.0, 100.0)
    pad = max(3.0, 0.08 * (hi - lo))
    ax.set_ylim(max(lo - pad, -pad / 4), min(hi + pad, 100.0 + pad / 4))
    ax.set_ylabel(plain(config.metric_label), fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", color="0.88", linewidth=0.7)
    ax.legend(fontsize=8, loc="best", framealpha=0.92)


def _runs(group: pl.DataFrame) -> list[tuple[str, pl.DataFrame]]:
    """Runs of one model: the base model first, then adapters by name."""
    out = []
    for (run_id,), run in group.group_by("run_id", maintain_order=True):
        adapter = run.get_column("adapter")[0]
        label = f"+ {short_name(adapter)}" if adapter else "base model"
        out.append((label if label not in [o[0] for o in out] else run_id, run, adapter or ""))
    out.sort(key=lambda o: (o[2] != "", o[2]))
    return [(plain(label), run) for label, run, _ in out]


def plain(text: str) -> str:
    """``text`` drawn as the characters it holds: every ``$`` escaped, so matplotlib never parses
    user names as mathtext (where ``$\\frac{1$`` is an error, and ``$x$`` turns italic). Done per
    string, not through ``rcParams["text.parse_math"]`` (global state) nor each Text's
    ``parse_math`` (legend entries and tick labels are Text objects matplotlib makes itself)."""
    return text.replace("$", r"\$")


def _layers_of(group: pl.DataFrame, module: str) -> list[int]:
    return sorted(set(group.filter(pl.col("module") == module).get_column("layer").to_list()))


def _tick_layers(layers: list[int], most: int = 9) -> list[int]:
    """All layers when few; else first, last and round multiples of a 1-2-5 step between them."""
    if len(layers) <= most + 3:
        return layers
    span = layers[-1] - layers[0]
    step = next(s for s in (2, 4, 5, 10, 20, 25, 50, 100, 10**9) if span / s <= most - 1)
    inner = [x for x in layers if x % step == 0 and x - layers[0] > step / 2 and layers[-1] - x > step / 2]
    return [layers[0], *inner, layers[-1]]


def _colours() -> list[str]:
    return ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _slug(text: str, used: set[str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "dataset"
    candidate, k = slug, 2
    while candidate.lower() in used:
        candidate, k = f"{slug}-{k}", k + 1
    used.add(candidate.lower())
    return candidate


__all__ = ["Figures", "plot_llm_sites", "plot_pipeline"]
