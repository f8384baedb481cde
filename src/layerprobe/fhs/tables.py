"""Table-1-style tables of four-score profiles, and the tidy curve table.

- :func:`profile_frame`: one row per run with the four scores, the alternative LLM site, spreads,
  best/worst flags per dataset and the profile string ``"V -> C -> L -> P_final"`` (the CSV).
- :func:`matrix_markdown`: runs x datasets, one profile per cell, the dataset best of each score in
  **bold** and the worst underlined (``<ins>``, which GitHub and most renderers show), as in the
  paper's Table 1. Best/worst are marked only where a column has two or more distinct finite values.
- :func:`details_markdown`: per run and module, P_start / P_min / P_end, GF, VP, FHS and the spread,
  the numbers behind each score.

Rows are labelled by model name (last path component of ``model_id``) plus adapter name; runs that
would share a label within one dataset are labelled by ``run_id`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import polars as pl

from layerprobe import vocab
from layerprobe.errors import LayerprobeError
from layerprobe.fhs.markdown import md_escape
from layerprobe.fhs.profile import P_FINAL_LABELS, RunProfile

SCORES: tuple[str, ...] = ("fhs_v", "fhs_c", "fhs_l", "p_final")
SCORE_TITLES: dict[str, str] = {"fhs_v": "FHS_V", "fhs_c": "FHS_C", "fhs_l": "FHS_L", "p_final": "P_final"}
ARROW = " -> "


def short_name(path_or_id: str | None) -> str:
    """Last component of a model id or path (``google/medgemma-4b-it`` -> ``medgemma-4b-it``)."""
    if not path_or_id:
        return ""
    return PurePosixPath(path_or_id.replace("\\", "/").rstrip("/")).name or path_or_id


def run_label(model_id: str, adapter: str | None) -> str:
    """Row label of a run: model name, plus ``+ adapter`` for fine-tuned runs."""
    return short_name(model_id) + (f" + {short_name(adapter)}" if adapter else "")


def profile_frame(profiles: Sequence[RunProfile]) -> pl.DataFrame:
    """One row per run: scores, spreads, best/worst flags per dataset, profile string, notes."""
    if not profiles:
        raise LayerprobeError("no runs to tabulate; the results table has no probe rows for the chosen settings")
    rows = []
    for prof in profiles:
        alt = prof.llm_alt
        rows.append(
            {
                "run_id": prof.run_id,
                "label": run_label(prof.model_id, prof.adapter),
                "model_id": prof.model_id,
                "adapter": prof.adapter,
                "dataset": prof.dataset,
                "fhs_v": prof.fhs_v,
                "fhs_c": prof.fhs_c,
                "fhs_l": prof.fhs_l,
                "p_final": prof.p_final,
                "fhs_l_alt": alt.fhs if alt else math.nan,
                "llm_site": prof.llm.site,
                "llm_alt_site": alt.site if alt else None,
                "fhs_v_std": prof.vision.fhs_std,
                "fhs_c_std": prof.connector.fhs_std,
                "fhs_l_std": prof.llm.fhs_std,
                "fhs_l_alt_std": alt.fhs_std if alt else math.nan,
                "p_final_std": prof.p_final_std,
                "p_final_kind": prof.p_final_kind,
                "n_seeds": max(m.n_seeds for m in prof.modules()),
                "profile": ARROW.join(_fmt(v) for v in (prof.fhs_v, prof.fhs_c, prof.fhs_l, prof.p_final)),
                "notes": "; ".join(prof.notes()),
            }
        )
    frame = pl.DataFrame(rows, schema_overrides={"adapter": pl.String, "llm_alt_site": pl.String})
    frame = _unique_labels(frame)
    flags = []
    for score in SCORES:
        finite = pl.when(pl.col(score).is_finite()).then(pl.col(score))
        hi, lo = finite.max().over("dataset"), finite.min().over("dataset")
        spread = hi > lo
        flags += [
            (spread & (pl.col(score) == hi)).fill_null(False).alias(f"{score}_best"),
            (spread & (pl.col(score) == lo)).fill_null(False).alias(f"{score}_worst"),
        ]
    return frame.with_columns(*flags)


def matrix_markdown(frame: pl.DataFrame, *, digits: int = 2) -> str:
    """Runs x datasets matrix of ``FHS_V -> FHS_C -> FHS_L -> P_final`` with best/worst marked."""
    datasets = list(dict.fromkeys(frame.get_column("dataset").to_list()))
    labels = list(dict.fromkeys(frame.get_column("label").to_list()))
    cells = {(r["label"], r["dataset"]): _cell(r, digits) for r in frame.iter_rows(named=True)}
    head = "| model | " + " | ".join(md_escape(d) for d in datasets) + " |"
    lines = [head, "|" + "---|" * (len(datasets) + 1)]
    for label in labels:
        lines.append(f"| {md_escape(label)} | " + " | ".join(cells.get((label, d), "") for d in datasets) + " |")
    legend = "Each cell: FHS_V -> FHS_C -> FHS_L -> P_final. **Bold**: dataset best; <ins>underlined</ins>: dataset worst; n/a: undefined (see notes)."
    return "\n".join(lines) + "\n\n" + legend + "\n\n" + p_final_line(frame) + "\n"


def p_final_line(frame: pl.DataFrame) -> str:
    """Which P_final the profile uses: ``P_final: generated answer`` (or ``forced choice``), naming the
    runs of each kind when they differ."""
    kinds = frame.get_column("p_final_kind").to_list() if "p_final_kind" in frame.columns else [vocab.P_FINAL_FORCED]
    if len(set(kinds)) == 1:
        return f"P_final: {P_FINAL_LABELS[kinds[0]]}."
    labels = frame.get_column("label").to_list()
    parts = [f"{P_FINAL_LABELS[k]} for {', '.join(md_escape(l) for l, kk in zip(labels, kinds) if kk == k)}"
             for k in dict.fromkeys(kinds)]
    return "P_final: " + "; ".join(parts) + "."


def details_markdown(profiles: Sequence[RunProfile], *, digits: int = 2) -> str:
    """Per run and module: the curve's start/min/end, GF, VP, FHS (+- seed std) and notes."""
    lines = [
        "| run | dataset | module | site | layers | P_start | P_min | P_end | GF | VP | FHS | seeds | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for prof in profiles:
        label = md_escape(run_label(prof.model_id, prof.adapter))
        for mod in prof.modules():
            s = mod.score
            fhs = _fmt(s.fhs, digits) + (f" ± {_fmt(mod.fhs_std, digits)}" if math.isfinite(mod.fhs_std) else "")
            layers = _span(mod.layers)
            layers += f" ({s.n_missing} missing)" if s.n_missing else ""
            nums = " | ".join(_fmt(v, digits) for v in (s.p_start, s.p_min, s.p_end)) + f" | {_fmt(s.gf, 3)} | {_fmt(s.vp, 3)}"
            lines.append(f"| {label} | {md_escape(prof.dataset)} | {mod.module} | {md_escape(mod.site)} | {layers} | {nums} | {fhs} | {mod.n_seeds} | {md_escape(s.reason)} |")
        final = _fmt(prof.p_final, digits) + (f" ± {_fmt(prof.p_final_std, digits)}" if math.isfinite(prof.p_final_std) else "")
        site = f"{vocab.P_FINAL_SITES[prof.p_final_kind]} ({prof.p_final_label})"
        lines.append(f"| {label} | {md_escape(prof.dataset)} | P_final | {site} | - | | | | | | {final} | | |")
    return "\n".join(lines) + "\n"


def write_profile_table(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write the profile table as markdown (``.md``: the matrix) or CSV (``.csv``: one row per run)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".md", ".csv"):
        raise LayerprobeError(f"cannot write a table to {path}: use a .md (markdown matrix) or .csv (one row per run) file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".md":
        path.write_text(matrix_markdown(frame))
    else:
        frame.with_columns(pl.col(pl.Float64).fill_nan(None)).write_csv(path, float_precision=4)  # empty cell = undefined
    return path


def _unique_labels(frame: pl.DataFrame) -> pl.DataFrame:
    clash = pl.col("run_id").n_unique().over("label", "dataset") > 1
    return frame.with_columns(pl.when(clash).then(pl.col("run_id")).otherwise(pl.col("label")).alias("label"))


def _span(layers: tuple[int, ...]) -> str:
    if not layers:
        return "-"
    return str(layers[0]) if len(layers) == 1 else f"{layers[0]}..{layers[-1]}"


def _cell(row: dict, digits: int) -> str:
    parts = []
    for score in SCORES:
        text = _fmt(row[score], digits)
        if row[f"{score}_best"]:
            text = f"**{text}**"
        elif row[f"{score}_worst"]:
            text = f"<ins>{text}</ins>"
        parts.append(text)
    return ARROW.join(parts)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"
