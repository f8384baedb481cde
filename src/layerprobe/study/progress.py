"""What the study prints: the dry-run plan table, a line per step as it runs, and the summary."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from layerprobe import vocab
from layerprobe.study.state import Outcome
from layerprobe.study.steps import Step

Echo = Callable[[str], None]


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def plan_table(steps: tuple[Step, ...], states: Mapping[str, str], root) -> list[str]:
    """The dry run: one line per step (state, kind, label, estimated size, output) and a total."""
    pending = [s for s in steps if states[s.id] != vocab.STATE_DONE]
    total = sum(s.est_bytes for s in pending)
    kinds = ", ".join(f"{sum(1 for s in steps if s.kind == k)} {k}" for k in vocab.STEP_KINDS if any(s.kind == k for s in steps))
    width = max(len(s.label) for s in steps)
    lines = [f"{len(steps)} steps ({kinds}): {len(steps) - len(pending)} done, {len(pending)} pending; "
             f"about {human_bytes(total)} to write under {root}", ""]  # fmt: skip
    lines.append(f"  {'state':8} {'kind':9} {'step':{width}}  {'est. size':>10}  output")
    for s in steps:
        out = s.out.relative_to(root) if s.out.is_relative_to(root) else s.out
        lines.append(f"  {states[s.id]:8} {s.kind:9} {s.label:{width}}  {human_bytes(s.est_bytes):>10}  {out}")
    return lines


class StepLines:
    """A line per step start and end, with running counts: ``[done 3 | running 1 | failed 0 | pending 5]``."""

    def __init__(self, steps: tuple[Step, ...], counts: Callable[[], dict[str, int]], echo: Echo | None) -> None:
        self.steps = {s.id: s for s in steps}
        self.counts = counts
        self.echo = echo

    def _tally(self) -> str:
        c = self.counts()
        return " | ".join(f"{state} {c[state]}" for state in vocab.STEP_STATES if c[state] or state in (vocab.STATE_DONE, vocab.STATE_PENDING))

    def started(self, step_id: str) -> None:
        if self.echo:
            self.echo(f"[{self._tally()}] running  {step_id}")

    def finished(self, outcome: Outcome) -> None:
        if not self.echo:
            return
        detail = f" ({outcome.seconds:.1f} s)" if outcome.state == vocab.STATE_DONE else f": {outcome.error}"
        if outcome.missing:
            detail += f"; without {len(outcome.missing)} missing input(s)"
        self.echo(f"[{self._tally()}] {outcome.state:8} {outcome.step_id}{detail}")
