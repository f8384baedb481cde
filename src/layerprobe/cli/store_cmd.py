"""``layerprobe info`` and ``layerprobe verify``: look at a store, check a store.

Imports only click and the standard library at module level; the store package is imported inside
the commands so ``layerprobe --help`` stays fast.
"""

from __future__ import annotations

import json
import sys

import click


@click.command("info")
@click.argument("store", type=click.Path(file_okay=True, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(store: str, as_json: bool) -> None:
    """Show a store's run metadata, sites, sample counts per split and class, completeness, and skipped samples with their reasons.

    \b
    Example:
      layerprobe info runs/medgemma-busi.zarr
      layerprobe info runs/medgemma-busi.zarr --json | jq .n_committed
    """
    from layerprobe.store import open_store
    from layerprobe.store.summary import summarize

    summary = summarize(open_store(store))
    click.echo(json.dumps(summary.to_dict(), indent=1) if as_json else summary.to_text())


@click.command("verify")
@click.argument("store", type=click.Path(file_okay=True, dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar (only on a terminal).")
def verify(store: str, as_json: bool, progress: bool) -> None:
    """Check a store: schema, completeness, chunk checksums (CRC-32; XXH3-64 in schema-2 stores) against commit records, NaN/Inf per site and layer;
    lists the skipped samples and why.

    Exits 1 when a problem is found (an incomplete store alone is not a problem).

    \b
    Example:
      layerprobe verify runs/medgemma-busi.zarr
      layerprobe verify runs/medgemma-busi.zarr --json > verify.json
    """
    from layerprobe.store import verify as run_verify

    report = run_verify(store, progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        state = "complete" if report.complete else f"incomplete ({report.n_blocks_committed}/{report.n_blocks} blocks committed)"
        click.echo(f"{report.path}: {report.n_committed}/{report.n_samples} samples committed, {report.n_skipped} skipped, {state}")
        bad = [c for c in report.nonfinite if c.n_nan or c.n_inf]
        click.echo(f"NaN/Inf in valid rows: {'none' if not bad else f'{len(bad)} (site, layer) pairs'}")
        for c in bad:
            click.echo(f"  {c.site} layer {c.layer} ({c.layer_name or '-'}): {c.n_nan} NaN, {c.n_inf} Inf")
        from layerprobe.store.summary import skipped_lines

        for line in skipped_lines(report.skipped_samples, "skipped:"):
            click.echo(line)
        for p in report.problems:
            click.echo(f"problem: {p}")
        click.echo("ok" if report.ok else f"FAILED: {len(report.problems)} problem(s)")
    if not report.ok:
        sys.exit(1)
