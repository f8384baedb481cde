"""The local engine: every step in this process, one at a time, in dependency order."""

from __future__ import annotations

from collections.abc import Sequence

from layerprobe import vocab
from layerprobe.study.engines.base import Finished, Started, execute
from layerprobe.study.state import Outcome
from layerprobe.study.steps import Step


class LocalEngine:
    name = vocab.ENGINE_LOCAL

    def run(self, steps: Sequence[Step], started: Started, finished: Finished) -> None:
        outcomes: dict[str, Outcome] = {}
        for step in steps:
            inputs = [outcomes[d] for d in step.deps if d in outcomes]
            if all(dep.state == vocab.STATE_DONE for dep in inputs) or not step.needs_all_inputs:
                started(step.id)
            outcomes[step.id] = execute(step, inputs)
            finished(outcomes[step.id])

    def close(self) -> None:
        pass
