"""`layerprobe study`: the whole study from one study file, resumable, on this machine or on Ray."""

from __future__ import annotations

from pathlib import Path

import click

from layerprobe import vocab


@click.command("study")
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--engine", type=click.Choice(vocab.ENGINES), default=vocab.ENGINE_LOCAL, show_default=True,
              help="local: one step at a time in this process. ray: steps as Ray tasks (pip install 'layerprobe[ray]').")
@click.option("--address", default=None,
              help="Ray cluster to join: host:port of its head, or 'auto' for the one this machine belongs to. "
                   "Default: start a local Ray instance for this run.")
@click.option("--workers", type=int, default=None,
              help="Ray: CPUs of the local instance, and how many pieces one extraction or probe sweep is cut into "
                   "(default: the machine's CPUs, or the cluster's). Ignored by the local engine.")
@click.option("--dry-run", is_flag=True, help="Print the plan (steps, done/pending, estimated size on disk) and run nothing.")
@click.option("--no-progress", is_flag=True, help="Print nothing while steps run (status.json still records them).")
def study(study_file: Path, engine: str, address: str | None, workers: int | None, dry_run: bool, no_progress: bool) -> None:
    """Run every step of STUDY_FILE that is not done yet: finetune -> extract -> probe -> fhs/report.

    Arms: base (the model as released), sft-frozen and sft-lora (a LoRA adapter, then extracted and
    probed), vision-ce (the vision tower trained with cross-entropy: one results row).

    Each step's output is named by a hash of what decides its bytes, so a rerun skips finished steps,
    a changed setting reruns only what depends on it, and an interrupted run resumes (stores resume
    block by block). A failed step records its one-line error in OUT/status.json and the others go
    on; the report lists what is missing. The study file format is in docs/study.md.

    \b
    Example:
      layerprobe study examples/tiny-study.toml --dry-run
      layerprobe study examples/tiny-study.toml --engine ray --workers 2
      layerprobe study examples/lost-in-the-hype.toml --engine ray --address auto
    """
    from layerprobe.study import StudyError, run_study

    if address is not None and engine != vocab.ENGINE_RAY:
        raise click.UsageError("--address needs --engine ray")
    echo = None if no_progress and not dry_run else (lambda line: click.echo(line, err=True))
    result = run_study(study_file, engine=engine, address=address, workers=workers, dry_run=dry_run, echo=echo)
    if dry_run:
        return
    report = next(s for s in result.plan.steps if s.kind == vocab.STEP_REPORT)
    click.echo(f"report: {report.out / 'report.md'}")
    click.echo(f"status: {result.status}")
    if result.failed:
        raise StudyError(f"{len(result.failed)} of {len(result.states)} steps did not finish (first: {result.failed[0]}); "
                         f"see {result.status}, fix the cause and rerun to resume")
