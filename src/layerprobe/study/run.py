"""``run_study``: read a study file, plan it, and run what is not done yet on the chosen engine.

Order, so that bad input fails before any work: read the file (unknown keys, models, arms and
their trainer settings), plan (datasets, duplicate outputs), connect the engine (Ray installed, the
cluster reachable); only then does the first step start. Steps already done are skipped; a failed
step records its one-line error in ``status.json`` and the others go on (those that need it are
``blocked``); the report step runs on what there is and lists what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerprobe import vocab
from layerprobe.study.errors import StudyError
from layerprobe.study.parse import load_study
from layerprobe.study.plan import Plan, plan_study
from layerprobe.study.progress import Echo, StepLines, plan_table
from layerprobe.study.state import STATUS_FILE, StatusBook, is_done


@dataclass(frozen=True)
class StudyResult:
    """What a run did."""

    plan: Plan
    states: dict[str, str]
    """Step id -> its state at the end (``done``, ``failed``, ``blocked``; ``pending`` in a dry run)."""
    ran: tuple[str, ...]
    """Ids of the steps this run executed (empty when everything was done already)."""
    status: Path | None
    """``status.json`` (None for a dry run)."""

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(i for i, s in self.states.items() if s in (vocab.STATE_FAILED, vocab.STATE_BLOCKED))


def run_study(study_file: str | Path, *, engine: str = vocab.ENGINE_LOCAL, address: str | None = None, workers: int | None = None,
              dry_run: bool = False, echo: Echo | None = print) -> StudyResult:  # fmt: skip
    """Run (or resume) the study in ``study_file``; ``echo`` prints progress (None: silent)."""
    if engine not in vocab.ENGINES:
        raise StudyError(f"engine {engine!r} is not known; use one of: {', '.join(vocab.ENGINES)}")
    if workers is not None and workers < 1:
        raise StudyError(f"workers must be at least 1, got {workers}")
    plan = plan_study(load_study(study_file))
    root = plan.study.out
    states = {s.id: vocab.STATE_DONE if is_done(root, s) else vocab.STATE_PENDING for s in plan.steps}
    if dry_run:
        if echo:
            for line in plan_table(plan.steps, states, root):
                echo(line)
        return StudyResult(plan, states, (), None)
    pending = [s for s in plan.steps if states[s.id] != vocab.STATE_DONE]
    runner = make_engine(engine, address, workers, plan.study.run) if pending else None
    book = StatusBook(root, plan.steps, plan.study.name, engine)
    for step_id, state in states.items():
        if state == vocab.STATE_DONE:
            book.skip(step_id)
    book.write()
    if echo:
        echo(f"study {plan.study.name}: {len(plan.steps)} steps, {len(plan.steps) - len(pending)} done, {len(pending)} to run ({engine} engine)")
    if runner is not None:
        lines = StepLines(plan.steps, book.counts, echo)
        try:
            runner.run(pending, lambda i: (book.running(i), lines.started(i)), lambda o: (book.finish(o), lines.finished(o)))
        finally:
            runner.close()
    final = {i: row["state"] for i, row in book.rows.items()}
    return StudyResult(plan, final, tuple(s.id for s in pending), root / STATUS_FILE)


def make_engine(name: str, address: str | None, workers: int | None, settings: Any) -> Any:
    """The engine called ``name`` (connected: a Ray cluster that cannot be reached fails here)."""
    if name == vocab.ENGINE_LOCAL:
        from layerprobe.study.engines.local import LocalEngine

        return LocalEngine()
    try:
        from layerprobe.study.engines.ray_engine import RayEngine
    except ImportError:
        raise StudyError("the ray engine needs Ray, which is not installed; pip install 'layerprobe[ray]'") from None
    return RayEngine(address, workers, settings)
