"""What every engine does the same way: the interface, running one step, and blocking on a failure.

An engine gets the pending steps in dependency order (inputs first; inputs not in the list are
done already) and two callbacks: ``started(step_id)`` when a step may be running, and
``finished(outcome)`` once per step. A step whose needed input failed is not run: it finishes as
``blocked``, naming the input. fhs and report steps (``needs_all_inputs = False``) run anyway, on
what there is. Any exception of a step becomes its one-line error; the other steps go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from layerprobe import vocab
from layerprobe.errors import LayerprobeError
from layerprobe.study.state import Outcome
from layerprobe.study.steps import Step

Started = Callable[[str], None]
Finished = Callable[[Outcome], None]


class Engine(Protocol):
    """Runs steps; see the module docstring."""

    name: str

    def run(self, steps: Sequence[Step], started: Started, finished: Finished) -> None: ...

    def close(self) -> None: ...


def one_line(err: BaseException) -> str:
    """The error as one line: a LayerprobeError's own message, anything else prefixed by its type."""
    text = str(err) if isinstance(err, LayerprobeError) else f"{type(err).__name__}: {err}"
    return " ".join(text.split()) or type(err).__name__


def blocked(step: Step, inputs: Sequence[Outcome]) -> Outcome | None:
    """The outcome of ``step`` when an input it needs did not finish, else None."""
    if not step.needs_all_inputs:
        return None
    for dep in inputs:
        if dep.state != vocab.STATE_DONE:
            return Outcome(step.id, vocab.STATE_BLOCKED, f"needs {dep.step_id}, which {dep.state}")
    return None


def execute(step: Step, inputs: Sequence[Outcome] = (), work: Callable[[], list[str] | None] | None = None) -> Outcome:
    """Run ``step`` here (unless blocked) and say how it ended; ``work`` replaces ``step.run``
    (an engine that runs the step in pieces passes its own)."""
    stop = blocked(step, inputs)
    if stop is not None:
        return stop
    start = time.perf_counter()
    try:
        missing = (work or step.run)() or []
    except Exception as err:  # noqa: BLE001 -- a failed step is recorded and the study goes on
        return Outcome(step.id, vocab.STATE_FAILED, one_line(err), time.perf_counter() - start)
    return Outcome(step.id, vocab.STATE_DONE, None, time.perf_counter() - start, tuple(missing))
