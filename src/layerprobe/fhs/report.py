"""``layerprobe report``: one self-contained folder that answers "where is the signal lost?".

Layout of the folder (every link in it is relative, so it can be moved, zipped or served)::

    report.md        the report: profile matrix, figures, score details, runs, settings
    report.html      the same content for a browser (optional; images linked, not embedded)
    profile.md       the Table-1-style matrix alone
    profile.csv      one row per run: scores, spreads, best/worst flags, notes
    curves.parquet   tidy layer-wise curves (one row per run, module, layer; plus P_final)
    table2.{md,csv}  frozen vs LoRA-tuned vision tower (paper Table 2), when the results hold both arms
    table3.{md,csv}  MLLM SFT vs P(V,end) vs vision-tower CE (paper Table 3), when they hold all three
    figures/         pipeline_<dataset>.{png,svg} (paper Fig. 3), llm_sites_<dataset>.{png,svg} (Fig. 5)

``report.md`` is the one source: ``report.html`` is rendered from it by the converter of
:mod:`layerprobe.fhs.markdown` for exactly the markdown subset written here, so the two never
disagree and no markdown library is needed. Every name, path or prompt from a store or a table goes
through its ``md_escape``: it shows as text, never as markup.

A folder that exists is reused only if it already holds a ``report.md`` (a previous report, whose
files are replaced); any other non-empty folder is refused so a typo cannot scatter files into it.
The report is written to a temporary folder beside it and moved into place at the end: a failure
half-way leaves the folder as it was, and a rerun starts cleanly.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import polars as pl

from layerprobe import __version__, vocab
from layerprobe.errors import LayerprobeError
from layerprobe.fhs.arms import arm_results
from layerprobe.fhs.config import FHSConfig
from layerprobe.fhs.curves import LayerPoints, curves_from, layer_points
from layerprobe.fhs.markdown import markdown_to_html, md_escape
from layerprobe.fhs.plots import Figures, plot_llm_sites, plot_pipeline
from layerprobe.fhs.profile import RunProfile, profiles_from
from layerprobe.fhs.sft_tables import table2, table2_markdown, table3, table3_markdown
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
    """Write the report folder for one or more results tables (paths, or an already loaded table).

    Everything is written to a temporary folder beside ``out_dir`` and moved into place at the
    end, so a failure half-way leaves ``out_dir`` as it was (absent, or the previous report)."""
    config = config or FHSConfig()
    checked = check_results(results) if isinstance(results, (CheckedResults, pl.DataFrame)) else load_results(results)
    folder = Path(out_dir)
    _check_folder(folder)
    # once: the profile, the tables and every figure share them; vision-CE rows are no run to profile (Table 3 reads them)
    is_ce = pl.col("kind") == vocab.VISION_CE
    points = layer_points(checked.frame.filter(~is_ce) if checked.frame.select(is_ce.any()).item() else checked, config)
    work = _work_folder(folder)
    try:
        written = _write_report(work, checked, points, config, html_page=html_page, error_bands=error_bands, title=title)
        _move_into_place(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Report(*(None if p is None else folder / p.relative_to(work) for p in written[:-1]), tuple(folder / p.relative_to(work) for p in written[-1]))


def _write_report(folder: Path, checked: CheckedResults, points: LayerPoints, config: FHSConfig, *,
                  html_page: bool, error_bands: bool, title: str) -> Report:  # fmt: skip
    """Every file of the report, in ``folder`` (the temporary one)."""
    table = checked.frame
    profiles = profiles_from(points)
    frame = profile_frame(profiles)
    profile_csv = write_profile_table(frame, folder / "profile.csv")
    profile_md = write_profile_table(frame, folder / "profile.md")
    curves = curves_from(points)
    curves_path = folder / "curves.parquet"
    curves.write_parquet(curves_path)
    pipeline = plot_pipeline(curves, folder / "figures", config=config, error_bands=error_bands)
    llm_sites = plot_llm_sites(curves, folder / "figures", config=config, error_bands=error_bands)

    lines = [f"# {md_escape(title)}", ""]
    lines += _header(list(checked.sources), config)
    lines += ["## Four-score profile", "", matrix_markdown(frame)]
    notes = [f"- {md_escape(run_label(p.model_id, p.adapter))} / {md_escape(p.dataset)}: {md_escape(n)}" for p in profiles for n in p.notes()]
    if notes:
        lines += ["Notes on undefined (n/a) scores:", "", *notes, ""]
    lines += _curves_section(pipeline, llm_sites, folder, config, error_bands)
    arm_lines, arm_files = _arm_tables_section(folder, checked, points)
    lines += arm_lines
    lines += ["## Score details", "", "P in percent; FHS = P_end x (1 + GF) x VP; ± is the standard deviation of per-seed FHS.", "", details_markdown(profiles)]
    lines += ["## Runs", "", *_runs_section(table, profiles)]
    lines += ["## Probe and scoring settings", "", *_settings_section(table, config)]
    figures = tuple(p for group in (*pipeline.paths, *llm_sites.paths) for p in group)
    lines += ["## Files", ""]
    lines += [
        "- `profile.md`: the matrix above; `profile.csv`: one row per run with spreads and best/worst flags",
        "- `curves.parquet`: tidy layer-wise curves (mean and std over seeds per layer, P_final rows)",
        *(f"- `{_rel(p, folder)}`" for p in arm_files),
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
        f"Probe {config.split} {config.metric} at every layer: vision tower, connector and LLM ({md_escape(config.llm_site)}) on one axis, "
        "dashed lines at module boundaries, stars for P_final (the model's own answer)"
        + (", bands of one standard deviation over seeds." if error_bands else "."),
        "",
    ]
    lines += [line for dataset, paths in zip(*pipeline, strict=True) for line in (f"![{md_escape(dataset)}: pipeline]({_rel(paths[0], folder)})", "")]
    if llm_sites.dataset:
        lines += ["## Comprehension vs utilisation", ""]
        lines += [f"Per LLM layer: {md_escape(config.llm_site)} (comprehension, solid) vs {md_escape(config.llm_alt_site)} (utilisation, dashed).", ""]
        lines += [line for dataset, paths in zip(*llm_sites, strict=True) for line in (f"![{md_escape(dataset)}: LLM sites]({_rel(paths[0], folder)})", "")]
    return lines


def _arm_tables_section(folder: Path, checked: CheckedResults, points: LayerPoints) -> tuple[list[str], list[Path]]:
    """Tables 2 and 3 (:mod:`.sft_tables`) when the results hold fine-tuned runs (:mod:`.arms`); else nothing."""
    results = arm_results(checked, points)
    t2, t3 = table2(results), table3(results)
    lines: list[str] = []
    files: list[Path] = []
    if t2:
        lines += ["## Frozen vs LoRA-tuned vision tower (Table 2)", "",
                  "Test accuracy and F1 of the fine-tuned model's own answer (P_final, percent) with the vision tower tuned by LoRA "
                  "and frozen; gap = mean over datasets and both metrics of 100 x (frozen - LoRA) / LoRA (negative: freezing cost).", "",
                  table2_markdown(t2, escape=md_escape)]  # fmt: skip
        files += _write_arm_table(folder / "table2", table2_markdown(t2, escape=md_escape), pl.DataFrame(
            [{"model": r.model, "dataset": d, "tower": tower, vocab.ACCURACY: vals[2 * i], "f1": vals[2 * i + 1], "gap_percent": r.gap}
             for r in t2 for tower, vals in ((vocab.LORA, r.lora), (vocab.FROZEN, r.frozen)) for i, d in enumerate(r.datasets)]))  # fmt: skip
    if t3:
        lines += ["## MLLM SFT vs vision-tower probe vs vision-tower SFT (Table 3)", "",
                  "Test accuracy in percent: the fine-tuned MLLM's answer, the base model's last vision-tower layer probed (P(V,end)), "
                  "and the vision tower trained with a cross-entropy head (finetune --vision-ce).", "",
                  table3_markdown(t3, escape=md_escape)]  # fmt: skip
        files += _write_arm_table(folder / "table3", table3_markdown(t3, escape=md_escape), pl.DataFrame([r._asdict() for r in t3]))
    return lines, files


def _write_arm_table(stem: Path, markdown: str, frame: pl.DataFrame) -> list[Path]:
    stem.with_suffix(".md").write_text(markdown)
    frame.write_csv(stem.with_suffix(".csv"))
    return [stem.with_suffix(".md"), stem.with_suffix(".csv")]


def _check_folder(folder: Path) -> None:
    """A report goes into a new or empty folder, or replaces a previous report (a folder with a
    ``report.md``); any other folder is refused so a typo cannot scatter files into it."""
    if folder.exists() and not folder.is_dir():
        raise LayerprobeError(f"report folder {folder} is a file; choose a folder name for --out")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "report.md").is_file():
        raise LayerprobeError(f"folder {folder} is not empty and holds no report.md; choose a new or empty --out folder")


def _work_folder(folder: Path) -> Path:
    """A fresh temporary folder beside ``folder`` (same file system, so the final move is a rename).

    Temporary folders of killed earlier runs (their process is gone) are removed first."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{folder.name}.tmp-"
    for stale in folder.parent.glob(prefix + "*"):
        pid = stale.name.removeprefix(prefix)
        if stale.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    work = folder.parent / f"{prefix}{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    return work


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _move_into_place(work: Path, folder: Path) -> None:
    """Make ``work`` the report at ``folder``: one rename for a new folder; for a previous report,
    each file renamed over its old version and our old figures and page that were not made again
    removed (anything else a user put there is left alone)."""
    if not folder.exists():
        os.rename(work, folder)
        return
    new = {p.relative_to(work) for p in work.rglob("*") if p.is_file()}
    stale = [p for p in (folder / "figures").glob("*") if p.is_file() and p.suffix in (".png", ".svg", ".pdf")]
    stale += [folder / "report.html"] if (folder / "report.html").is_file() else []
    stale += [p for p in folder.glob("table[23].*") if p.is_file() and p.suffix in (".md", ".csv")]
    for path in stale:
        if path.relative_to(folder) not in new:
            path.unlink()
    for rel in sorted(new):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(work / rel, folder / rel)
    shutil.rmtree(work, ignore_errors=True)


def _header(sources: list[str], config: FHSConfig) -> list[str]:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    names = ", ".join(f"`{md_escape(s, code=True)}`" for s in sources) if sources else "an in-memory table"
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
        rows.append("| " + " | ".join(md_escape(c) for c in cells) + " |")
        if details:
            extra.append(f"- `{md_escape(prof.run_id, code=True)}`: classes {md_escape(', '.join(details.class_names))}; prompt \"{md_escape(details.prompt_template)}\"")
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
        f"- probes: kind `{config.probe_kind}`, preset(s) {', '.join(f'`{md_escape(p, code=True)}`' for p in presets) or '-'}, "
        f"{probes.height} probe rows ({n_failed} not ok), seeds {', '.join(map(str, seeds)) or '-'}",
        *(f"- hyperparameters: `{md_escape(p, code=True)}`" for p in params[:5]),
        *([f"- ... and {len(params) - 5} more hyperparameter settings (best val_{config.metric} kept per layer)"] if len(params) > 5 else []),
        "",
        "| scoring setting | value |",
        "|---|---|",
        *(f"| {name} | `{md_escape(json.dumps(value, default=str), code=True)}` |" for name, value in config.as_dict().items()),
        "",
    ]
    return out


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()
