"""``layerprobe report``: one self-contained folder that answers "where is the signal lost?".

Layout of the folder (every link in it is relative, so it can be moved, zipped or served)::

    report.md        the report: profile matrix, figures, score details, runs, settings
    report.html      the same content for a browser (optional; images linked, not embedded)
    profile.md       the Table-1-style matrix alone
    profile.csv      one row per run: scores, spreads, best/worst flags, notes
    curves.parquet   tidy layer-wise curves (one row per run, module, layer; plus P_final)
    figures/         pipeline_<dataset>.{png,svg} (paper Fig. 3), llm_sites_<dataset>.{png,svg} (Fig. 5)

``report.md`` is the one source: ``report.html`` is rendered from it by a converter for exactly the
markdown subset written here (headings, paragraphs, lists, pipe tables, images, ``**``, ``<ins>``,
inline code), so the two never disagree and no markdown library is needed.

A folder that exists is reused only if it already holds a ``report.md`` (a previous report, whose
figures are replaced); any other non-empty folder is refused so a typo cannot scatter files into it.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import polars as pl

from layerprobe import __version__, vocab
from layerprobe.errors import LayerprobeError
from layerprobe.fhs.config import FHSConfig
from layerprobe.fhs.curves import curves_from, layer_points
from layerprobe.fhs.plots import Figures, plot_llm_sites, plot_pipeline
from layerprobe.fhs.profile import RunProfile, profiles_from
from layerprobe.fhs.stores import store_details
from layerprobe.fhs.tables import details_markdown, matrix_markdown, profile_frame, run_label, write_profile_table
from layerprobe.results import SOURCE, CheckedResults, check_results, load_results


class Report(NamedTuple):
    """Paths written by :func:`build_report`."""

    folder: Path
    markdown: Path
    html: Path | None
    profile_csv: Path
    profile_md: Path
    curves: Path
    figures: tuple[Path, ...]


def build_report(
    results: Sequence[str | Path] | str | Path | CheckedResults | pl.DataFrame,
    out_dir: str | Path,
    *,
    config: FHSConfig | None = None,
    html_page: bool = True,
    error_bands: bool = True,
    title: str = "layerprobe report",
) -> Report:
    """Write the report folder for one or more results tables (paths, or an already loaded table)."""
    config = config or FHSConfig()
    checked = check_results(results) if isinstance(results, (CheckedResults, pl.DataFrame)) else load_results(results)
    table = checked.frame
    folder = _prepare_folder(Path(out_dir))
    points = layer_points(checked, config)  # once: the profile, the tables and every figure share them
    profiles = profiles_from(points)
    frame = profile_frame(profiles)
    curves = curves_from(points)

    profile_csv = write_profile_table(frame, folder / "profile.csv")
    profile_md = write_profile_table(frame, folder / "profile.md")
    curves_path = folder / "curves.parquet"
    curves.write_parquet(curves_path)
    pipeline = plot_pipeline(curves, folder / "figures", config=config, error_bands=error_bands)
    llm_sites = plot_llm_sites(curves, folder / "figures", config=config, error_bands=error_bands)

    lines = [f"# {title}", ""]
    lines += _header(list(checked.sources), config)
    lines += ["## Four-score profile", "", matrix_markdown(frame)]
    notes = [f"- {_inline(run_label(p.model_id, p.adapter))} / {_inline(p.dataset)}: {_inline(n)}" for p in profiles for n in p.notes()]
    if notes:
        lines += ["Notes on undefined (n/a) scores:", "", *notes, ""]
    lines += _curves_section(pipeline, llm_sites, folder, config, error_bands)
    lines += ["## Score details", "", "P in percent; FHS = P_end x (1 + GF) x VP; ± is the standard deviation of per-seed FHS.", "", details_markdown(profiles)]
    lines += ["## Runs", "", *_runs_section(table, profiles)]
    lines += ["## Probe and scoring settings", "", *_settings_section(table, config)]
    figures = tuple(p for group in (*pipeline.paths, *llm_sites.paths) for p in group)
    lines += ["## Files", ""]
    lines += [
        "- `profile.md`: the matrix above; `profile.csv`: one row per run with spreads and best/worst flags",
        "- `curves.parquet`: tidy layer-wise curves (mean and std over seeds per layer, P_final rows)",
        *(f"- `{_rel(p, folder)}`" for p in figures),
        "",
    ]
    text = "\n".join(lines)
    markdown = folder / "report.md"
    markdown.write_text(text)
    html_path = None
    if html_page:
        html_path = folder / "report.html"
        html_path.write_text(markdown_to_html(text, title=title))
    return Report(folder, markdown, html_path, profile_csv, profile_md, curves_path, figures)


def _curves_section(pipeline: Figures, llm_sites: Figures, folder: Path, config: FHSConfig, error_bands: bool) -> list[str]:
    lines = ["## Layer-wise probe curves", ""]
    lines += [
        f"Probe {config.split} {config.metric} at every layer: vision tower, connector and LLM ({config.llm_site}) on one axis, "
        "dashed lines at module boundaries, stars for P_final (the model's own answer)"
        + (", bands of one standard deviation over seeds." if error_bands else "."),
        "",
    ]
    lines += [line for dataset, paths in zip(*pipeline, strict=True) for line in (f"![{dataset}: pipeline]({_rel(paths[0], folder)})", "")]
    if llm_sites.dataset:
        lines += ["## Comprehension vs utilisation", ""]
        lines += [f"Per LLM layer: {config.llm_site} (comprehension, solid) vs {config.llm_alt_site} (utilisation, dashed).", ""]
        lines += [line for dataset, paths in zip(*llm_sites, strict=True) for line in (f"![{dataset}: LLM sites]({_rel(paths[0], folder)})", "")]
    return lines


def _prepare_folder(folder: Path) -> Path:
    if folder.exists() and not folder.is_dir():
        raise LayerprobeError(f"report folder {folder} is a file; choose a folder name for --out")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "report.md").is_file():
        raise LayerprobeError(f"folder {folder} is not empty and holds no report.md; choose a new or empty --out folder")
    figures = folder / "figures"
    if figures.is_dir():
        for old in figures.glob("*"):
            if old.is_file() and old.suffix in (".png", ".svg", ".pdf"):
                old.unlink()  # our own figures from the previous report; nothing else is touched
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _header(sources: list[str], config: FHSConfig) -> list[str]:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = ", ".join(f"`{s}`" for s in sources) if sources else "an in-memory table"
    return [
        f"Generated {when} by layerprobe {__version__} from {len(sources) or 1} results table(s): {names}.",
        "",
        f"Scores follow section 3.3 of the paper: P = 100 x probe {config.split} {config.metric} per layer; for each module "
        f"GF = ln(P_end / sqrt(P_start x P_min)), VP = exp(-{config.lambda_:g} x sum |P_(i+1) - P_i| / P_end), "
        "FHS = P_end x (1 + GF) x VP. FHS can exceed 100 when a module improves much over its early and worst layers.",
        "",
    ]


def _runs_section(table: pl.DataFrame, profiles: Sequence[RunProfile]) -> list[str]:
    rows = ["| run | model | adapter | dataset | samples (train/val/test) | store | model hash | model type | created |", "|---|---|---|---|---|---|---|---|---|"]
    extra: list[str] = []
    for prof in profiles:
        probes = table.filter((pl.col("run_id") == prof.run_id) & (pl.col("kind") != vocab.MODEL_KIND))
        sizes = probes.select("n_train", "n_val", "n_test").drop_nulls().head(1)
        size = "/".join(str(v) for v in sizes.row(0)) if sizes.height else "?"
        source = probes.get_column(SOURCE)[0] if SOURCE in probes.columns and probes.height else None
        details = store_details(prof.store, relative_to=Path(source).parent if source else None)
        cells = [prof.run_id, prof.model_id, prof.adapter or "-", prof.dataset, size, prof.store or "-"]
        cells += [details.model_hash[:12], details.model_type, details.created_at] if details else ["?", "?", "?"]
        rows.append("| " + " | ".join(_inline(c) for c in cells) + " |")
        if details:
            extra.append(f"- `{_inline(prof.run_id)}`: classes {_inline(', '.join(details.class_names))}; prompt `{_inline(details.prompt_template)}`")
    out = [*rows, ""]
    if extra:
        out += ["Store metadata (read from each store's zarr.json):", "", *extra, ""]
    else:
        out += ["Stores were not reachable from here; run details come from the results table only.", ""]
    return out


def _settings_section(table: pl.DataFrame, config: FHSConfig) -> list[str]:
    probes = table.filter(pl.col("kind") == config.probe_kind)
    presets = sorted(probes.get_column("preset").drop_nulls().unique().to_list())
    params = sorted(probes.get_column("params").drop_nulls().unique().to_list())
    seeds = sorted(probes.get_column("seed").drop_nulls().unique().to_list())
    n_failed = probes.filter(pl.col("status") != vocab.STATUS_OK).height
    out = [
        f"- probes: kind `{config.probe_kind}`, preset(s) {', '.join(f'`{p}`' for p in presets) or '-'}, "
        f"{probes.height} probe rows ({n_failed} not ok), seeds {', '.join(map(str, seeds)) or '-'}",
        *(f"- hyperparameters: `{_inline(p)}`" for p in params[:5]),
        *([f"- ... and {len(params) - 5} more hyperparameter settings (best val_{config.metric} kept per layer)"] if len(params) > 5 else []),
        "",
        "| scoring setting | value |",
        "|---|---|",
        *(f"| {name} | `{_inline(json.dumps(value, default=str))}` |" for name, value in config.as_dict().items()),
        "",
    ]
    return out


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _inline(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("`", "'")


_TABLE_SEP = re.compile(r"^\|(\s*:?-+:?\s*\|)+\s*$")


def markdown_to_html(text: str, *, title: str = "layerprobe report") -> str:
    """Render the markdown subset this module writes as a standalone HTML page."""
    body: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_html_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("!["):
            m = re.match(r"!\[(.*?)\]\((.*?)\)", line)
            alt, src = (m.group(1), m.group(2)) if m else ("", "")
            body.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}"></figure>')
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            body.append(_html_table(block))
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_html_inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ", "![")):
                para.append(lines[i])
                i += 1
            body.append(f"<p>{_html_inline(' '.join(para))}</p>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.45;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.92em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%}code{background:#f5f5f5;padding:0 3px}ins{text-decoration:underline}"
    )
    return f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{style}</style></head>\n<body>\n' + "\n".join(body) + "\n</body></html>\n"


def _html_table(block: list[str]) -> str:
    rows = [_split_row(r) for r in block if not _TABLE_SEP.match(r)]
    if not rows:
        return ""
    head = "".join(f"<th>{_html_inline(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_html_inline(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _split_row(row: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", row.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def _html_inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = out.replace("&lt;ins&gt;", "<ins>").replace("&lt;/ins&gt;", "</ins>").replace("\\|", "|")
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
