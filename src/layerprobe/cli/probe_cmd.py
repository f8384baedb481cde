"""``layerprobe probe``: train every probe of a sweep from stores and write the results table.

Imports only click, the standard library and `layerprobe.vocab` (the choices) at module level; the
probe engine (torch, polars) is imported when the command runs.
"""

from __future__ import annotations

import json
import time

import click

from layerprobe import vocab


def _csv(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    return items or None


def _numbers(text: str | None, kind: type, flag: str) -> tuple | None:
    items = _csv(text)
    if items is None:
        return None
    try:
        return tuple(kind(item) for item in items)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of {kind.__name__}s", param_hint=flag) from None


@click.command("probe")
@click.argument("stores", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=str))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str), help="Parquet file for the results table (one row per probe).")
@click.option("--sites", default=None, help="Comma-separated sites to probe (default: every site in the store).")
@click.option("--layers", default=None, help="Layers of every site: all, -1, 0:8 or 0,4,-1 (default: all).")
@click.option("--kinds", default=",".join(vocab.PROBE_KINDS), show_default=True, help="Probe kinds: mlp and/or linear.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated MLP seeds (one probe each).")
@click.option("--preset", default=vocab.PRESET_PAPER, show_default=True, type=click.Choice(vocab.PRESET_NAMES),
              help="MLP recipe: paper (the study's protocol) or fast (8 steps per epoch: batch ceil(n_train / 8), at least 4, lr 1e-3 x sqrt(batch / 256): within about 1 point of paper, far faster).")  # fmt: skip
@click.option("--hidden", default=None, help="MLP hidden width(s), comma-separated (default: the preset's, 256).")
@click.option("--lr", "lrs", default=None, help="MLP learning rate(s), comma-separated (default: the preset's).")
@click.option("--device", default="cpu", show_default=True, help="Torch device: cpu, cuda or cuda:N.")
@click.option("--dtype", default=vocab.AUTO, show_default=True, type=click.Choice(vocab.PROBE_DTYPES),
              help="MLP matmul dtype; auto = bf16 where the device has native bf16 and the batch is large.")  # fmt: skip
@click.option("--max-memory", default="4GB", show_default=True, help="Memory the sweep may hold at once, e.g. 4GB or 512MB.")
@click.option("--kfold", type=int, default=None, help="Stratified k-fold cross-validation (metrics averaged over folds).")
@click.option("--class-weight", default=vocab.CLASS_WEIGHT_NONE, show_default=True, type=click.Choice(vocab.CLASS_WEIGHTS), help="Class weighting of the loss.")
@click.option("--split-seed", type=int, default=0, show_default=True, help="Seed of the stratified split when the store has no split column.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads for the sweep (default: sized from the problem and the cores free now; 1 for small problems on a busy machine).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (path, counts, seconds, per-site best layers) instead of text.")
@click.option("--overwrite", is_flag=True, help="Replace an --out results table of another sweep, or discard an unfinished sweep with other settings.")
def probe(
    stores: tuple[str, ...], out: str, sites: str | None, layers: str | None, kinds: str, seeds: str, preset: str,
    hidden: str | None, lrs: str | None, device: str, dtype: str, max_memory: str, kfold: int | None,
    class_weight: str, split_seed: int, no_progress: bool, as_json: bool, overwrite: bool, threads: int | None = None,
) -> None:  # fmt: skip
    """Train probes on every (site, layer) of STORE... and write one results table.

    \b
    Example (every layer and site of one store, the paper's protocol, two seeds):
      layerprobe probe runs/medgemma-busi.zarr --out results/medgemma-busi.parquet --seeds 0,1
    Faster recipe, last LLM layers only, on a GPU:
      layerprobe probe runs/*.zarr --out results.parquet --preset fast --sites llm/image_mean --layers -4: --device cuda

    Finished probe groups are kept in OUT.partial/ as they complete: after an interruption (Ctrl-C,
    a crash, a full disk) rerun the same command and it resumes, training only what is missing, and
    ends with the same table as an uninterrupted run. Rerunning a finished sweep trains nothing.
    --out never replaces a file that is not a results table, nor writes inside a store.
    """
    from layerprobe.probe.config import SweepConfig, parse_memory
    from layerprobe.probe.sweep import run_sweep

    cfg = SweepConfig(
        stores=tuple(stores), out=out, sites=_csv(sites), layers=layers, kinds=_csv(kinds) or (),
        seeds=_numbers(seeds, int, "--seeds") or (), preset=preset, hidden=_numbers(hidden, int, "--hidden"),
        lrs=_numbers(lrs, float, "--lr"), device=device, dtype=dtype, max_memory=parse_memory(max_memory),
        kfold=kfold, class_weight=class_weight, split_seed=split_seed, progress=not no_progress,
        overwrite=overwrite, threads=threads,
    )  # fmt: skip
    start = time.perf_counter()
    frame = run_sweep(cfg)
    seconds = time.perf_counter() - start
    summary = _summary(frame)
    if as_json:
        click.echo(json.dumps({"out": out, "rows": frame.height, "failed": summary["failed"], "seconds": round(seconds, 3), "best": summary["best"]}))
        return
    click.echo(f"wrote {frame.height} rows ({summary['failed']} failed) to {out} in {seconds:.1f}s")
    for best in summary["best"]:
        click.echo(f"  {best['store']}  {best['site']:<18} {best['kind']:<6} best test accuracy {best['test_accuracy']:.3f} at layer {best['layer']} ({best['layer_name']})")


def _summary(frame) -> dict:  # type: ignore[no-untyped-def]
    import polars as pl

    accuracy = vocab.metric_column(vocab.TEST, vocab.ACCURACY)
    failed = frame.filter(pl.col("status") != vocab.STATUS_OK).height
    ok = frame.filter((pl.col("status") == vocab.STATUS_OK) & pl.col(accuracy).is_not_null())
    best = (
        ok.group_by("store", "site", "kind", "layer", "layer_name")
        .agg(pl.col(accuracy).mean())
        .sort(accuracy, descending=True)
        .group_by("store", "site", "kind", maintain_order=True)
        .first()
        .sort("store", "site", "kind")
    )
    return {"failed": failed, "best": best.to_dicts()}
