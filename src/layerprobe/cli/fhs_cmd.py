"""`layerprobe fhs` (the four-score table) and `layerprobe report` (a folder with plots and tables).

Both read probe results tables and share the scoring flags, which map one to one onto
`layerprobe.fhs.FHSConfig`. Only click, the standard library and `layerprobe.vocab` (the choices)
are imported here.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any

import click

from layerprobe import vocab

_NO_SITE = "none"
_LAYER_HELP = "layer selection: 'all', '-1', '0:8', '0,4,-1'"


def _scoring_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The flags that become an FHSConfig, shared by `fhs` and `report`."""
    options = [
        click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False)),
        click.option("--metric", type=click.Choice(vocab.METRICS), default=vocab.ACCURACY, show_default=True, help="Probe metric P is made of."),
        click.option("--split", type=click.Choice(vocab.SCORED_SPLITS), default=vocab.TEST, show_default=True, help="Split the metric is read from."),
        click.option("--lambda", "lambda_", type=float, default=0.2, show_default=True, help="Volatility penalty strength (the paper uses 0.2)."),
        click.option("--llm-site", type=click.Choice(vocab.LLM_SITES), default=vocab.LLM_IMAGE, show_default=True, help="LLM site that feeds FHS_L (image-token mean = comprehension)."),
        click.option("--llm-alt-site", type=click.Choice([*vocab.LLM_SITES, _NO_SITE], case_sensitive=False), default=vocab.LLM_FINAL, show_default=True, help="Second LLM site scored beside FHS_L; 'none' to skip."),
        click.option("--vision-layers", default="all", show_default=True, help=f"Vision layers that count ({_LAYER_HELP})."),
        click.option("--connector-layers", default="all", show_default=True, help=f"Connector layers that count ({_LAYER_HELP})."),
        click.option("--llm-layers", default="1:", show_default=True, help="LLM layers that count; '1:' leaves out layer 0 (embeddings)."),
        click.option("--kind", type=click.Choice(vocab.PROBE_KINDS), default=vocab.MLP, show_default=True, help="Probe kind the curves come from."),
        click.option("--preset", default=None, help="Probe preset to use when a table holds several."),
        click.option("--seed-agg", type=click.Choice(vocab.SEED_AGGS), default=vocab.MEAN_CURVE, show_default=True, help="Score the seed-mean curve, or average per-seed scores."),
        click.option("--missing", type=click.Choice(vocab.MISSING_POLICIES), default=vocab.MISSING_INTERPOLATE, show_default=True, help="Layers without a usable probe: bridge interior gaps, give nan, or fail."),
        click.option("--eps", type=float, default=0.0, show_default=True, help="Floor (percent) for P before scoring; 0 = none, P = 0 then gives n/a."),
        click.option("--p-final", type=click.Choice(vocab.P_FINAL_KINDS), default=vocab.P_FINAL_AUTO, show_default=True,
                     help="P_final from the generated answer parsed to a candidate (the paper's; stores extracted with --answer-tokens), "
                          "the forced choice over the candidates' first-token logits, or auto: generated where a run has it, else forced."),
    ]
    return functools.reduce(lambda cmd, option: option(cmd), reversed(options), command)


def _config(kw: dict[str, Any]):
    from layerprobe.fhs import FHSConfig

    def layers(spec: str) -> str | None:
        return None if spec.strip().lower() == "all" else spec

    alt = kw.pop("llm_alt_site")
    return FHSConfig(
        metric=kw.pop("metric"),
        split=kw.pop("split"),
        lambda_=kw.pop("lambda_"),
        llm_site=kw.pop("llm_site"),
        llm_alt_site=None if alt == _NO_SITE else alt,
        vision_layers=layers(kw.pop("vision_layers")),
        connector_layers=layers(kw.pop("connector_layers")),
        llm_layers=layers(kw.pop("llm_layers")),
        probe_kind=kw.pop("kind"),
        preset=kw.pop("preset"),
        seed_agg=kw.pop("seed_agg"),
        missing=kw.pop("missing"),
        eps=kw.pop("eps"),
        p_final=kw.pop("p_final"),
    )


@click.command("fhs")
@_scoring_options
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="Also write the table: .md (matrix) or .csv (one row per run).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (settings + one object per run) instead of the markdown table.")
def fhs(results: tuple[str, ...], out_path: str | None, as_json: bool, **kw: Any) -> None:
    """Print the four-score profile FHS_V -> FHS_C -> FHS_L -> P_final of every run.

    RESULTS are parquet files written by `layerprobe probe`. Rows are models (+ adapter),
    columns datasets; the dataset best of each score is bold, the worst underlined.

    \b
    Example:
      layerprobe fhs results/medgemma-busi.parquet results/lingshu-busi.parquet
      layerprobe fhs results/*.parquet --metric f1 --out table1.csv
      layerprobe fhs results/*.parquet --json | jq '.runs[] | {label, fhs_l}'
    """
    from layerprobe.fhs import load_results, matrix_markdown, profile_frame, profile_runs, write_profile_table

    config = _config(kw)
    frame = profile_frame(profile_runs(load_results(results), config))
    if out_path:
        click.echo(f"wrote {write_profile_table(frame, out_path)}", err=True)
    if as_json:
        runs = [{k: _plain(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]
        click.echo(json.dumps({"config": config.as_dict(), "runs": runs}, indent=2, default=str))
        return
    click.echo(matrix_markdown(frame), nl=False)
    for row in frame.filter(frame.get_column("notes") != "").iter_rows(named=True):
        click.echo(f"note: {row['label']} / {row['dataset']}: {row['notes']}")


@click.command("report")
@_scoring_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Folder to write (new, empty, or a previous report).")
@click.option("--html/--no-html", default=True, show_default=True, help="Also write report.html next to report.md.")
@click.option("--bands/--no-bands", default=True, show_default=True, help="Draw one-std bands over seeds in the figures.")
def report(results: tuple[str, ...], out_dir: str, html: bool, bands: bool, **kw: Any) -> None:
    """Write a self-contained report folder (report.md, figures, tables) and print its path.

    The folder holds the four-score matrix, layer-wise curves through the whole pipeline with
    module boundaries and P_final (paper Fig. 3), comprehension vs utilisation per LLM layer
    (Fig. 5), fine-tuned runs overlaid on their base model, per-module score details, run
    metadata and the probe and scoring settings. It is written to a temporary folder beside --out
    and moved into place at the end: a failed or interrupted report leaves --out as it was.

    \b
    Example:
      layerprobe report results/medgemma-busi.parquet results/medgemma-busi-lora.parquet --out report/
      xdg-open report/report.html
    """
    from layerprobe.fhs import build_report

    built = build_report(list(results), out_dir, config=_config(kw), html_page=html, error_bands=bands)
    click.echo(str(built.folder))


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
