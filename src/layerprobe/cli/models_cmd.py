"""`layerprobe models`: the study's models and whether a built-in adapter covers them."""

from __future__ import annotations

import json

import click


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def models(as_json: bool) -> None:
    """List the paper's 14 medical MLLMs and the 2 general bases with their status.

    \b
    "supported": `layerprobe extract --model HUB_ID` works as is.
    "needs --trust-remote-code and --site-spec": custom-code checkpoint; write a site spec
    (module paths of the vision layers, connector and LLM layers), see `layerprobe extract --help`.

    \b
    Example:
      layerprobe models
      layerprobe models --json | jq '.[] | select(.status == "supported") | .hub_id'
    """
    from layerprobe.extract.model.adapters import supported_families
    from layerprobe.extract.model.model_registry import MODELS

    supported = frozenset(supported_families())
    rows = [
        {
            "name": m.name,
            "hub_id": m.hub_id,
            "model_type": m.model_type,
            "params_b": m.params_b,
            "base": m.base,
            "medical": m.medical,
            "status": m.status(supported),
        }
        for m in MODELS
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    widths = {k: max(len(str(r[k])) for r in rows + [{k: k for k in rows[0]}]) for k in ("name", "hub_id", "model_type", "status")}
    header = "  ".join(k.ljust(widths[k]) for k in widths)
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows:
        click.echo("  ".join(str(r[k]).ljust(widths[k]) for k in widths))
