"""`layerprobe demo`: the whole study on tiny offline models, one command."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("layerprobe-demo"), show_default=True,
              help="Folder for models, data, stores, results and the report; a rerun reuses what the same settings built, "
                   "and other settings (e.g. --n-per-class) build their own data, stores and results beside it.")
@click.option("--families", default="llava,qwen2_vl,gemma3", show_default=True,
              help="Comma-separated tiny model families to build and extract.")
@click.option("--n-per-class", type=int, default=48, show_default=True, help="Synthetic images per class (3 classes).")
@click.option("--seeds", default="0,1", show_default=True, help="Comma-separated probe seeds.")
@click.option("--preset", type=click.Choice(["fast", "paper"]), default="fast", show_default=True, help="Probe preset.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
@click.option("--no-finetune", is_flag=True, help="Skip the fine-tuning arm (base runs only).")
@click.option("--finetune-family", default="qwen2_vl", show_default=True, help="Tiny family the fine-tuning arm trains.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def demo(out: Path, families: str, n_per_class: int, seeds: str, preset: str, device: str, no_finetune: bool, finetune_family: str,
         no_progress: bool) -> None:
    """Run extract -> probe -> fhs -> report on tiny offline models and a synthetic dataset.

    Builds tiny random-weight checkpoints of three MLLM families (saved and reloaded like a real
    checkpoint), a synthetic 3-class ultrasound-like dataset, extracts every site, trains probes on
    every layer, prints the four-score profile (FHS_V -> FHS_C -> FHS_L -> P_final) and writes a
    report. The fine-tuning arm (unless --no-finetune): one small tiny model fine-tuned with LoRA on
    an easy 2-class set with the vision tower frozen and tuned, plus the vision-tower CE baseline;
    base and fine-tuned models extracted and probed, so the report adds the before/after overlay
    and Tables 2 and 3. Nothing is downloaded; a few minutes on a 2-core CPU; a rerun reuses every
    model, adapter, store and table the same settings built.

    \b
    Example:
      layerprobe demo
      layerprobe demo --out /tmp/demo --families llava,idefics3 --preset paper
    """
    from layerprobe.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        out=out,
        families=tuple(f.strip() for f in families.split(",") if f.strip()),
        n_per_class=n_per_class,
        seeds=tuple(int(s) for s in seeds.split(",") if s.strip()),
        preset=preset,
        device=device,
        progress=not no_progress,
        finetune=not no_finetune,
        finetune_family=finetune_family,
    )
    result = run_demo(cfg, log=lambda msg: click.echo(msg, err=True))
    click.echo("\nFour-score profile (FHS_V -> FHS_C -> FHS_L -> P_final; tiny random-weight models, before and after fine-tuning):\n")
    click.echo(result.profile_markdown)
    click.echo(f"\nreport: {result.report / 'report.md'} (and report.html)")
    click.echo(f"results: {result.results}")
    if result.arm is not None:
        click.echo(f"fine-tuning arm: adapters {', '.join(str(a) for a in result.arm.adapters)}; tables {result.report / 'table2.md'}, "
                   f"{result.report / 'table3.md'}")
