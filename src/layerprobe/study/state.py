"""What is done, and what the last run did: step markers and ``status.json`` under the output root.

- ``<out>/.steps/<kind>-<label>-<key>.json``: written when a step finishes, after its output is
  complete. A step is done when its marker says so, nothing was missing from its inputs, and its
  output still exists (delete an output to redo that step and what depends on it).
- ``<out>/status.json``: every step of the last run with its state (done, failed, blocked,
  pending, running), its one-line error and its time; rewritten atomically after each change, so
  it is readable while the study runs and says what an interrupted or failed run left undone.

Only the process that runs the study (the driver) writes these files; steps on Ray workers return
their outcome to it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from layerprobe import vocab
from layerprobe.study.steps import Step

STATUS_FILE = "status.json"
MARKERS = ".steps"


@dataclass(frozen=True)
class Outcome:
    """How one step ended (what an engine hands back)."""

    step_id: str
    state: str
    """``vocab.STATE_DONE``, ``STATE_FAILED`` or ``STATE_BLOCKED``."""
    error: str | None = None
    """The one-line error of a failed or blocked step."""
    seconds: float = 0.0
    missing: tuple[str, ...] = field(default_factory=tuple)
    """Inputs that were not there (fhs and report steps run without them)."""


def marker_path(root: Path, step: Step) -> Path:
    return root / MARKERS / f"{step.kind}-{step.label.replace('/', '-')}-{step.key}.json"


def is_done(root: Path, step: Step) -> bool:
    """True when ``step`` finished before with all its inputs and its output is still there."""
    try:
        record = json.loads(marker_path(root, step).read_text())
    except (OSError, ValueError):
        return False
    return record.get("state") == vocab.STATE_DONE and not record.get("missing") and step.out.exists()


class StatusBook:
    """The driver's record of a run: markers for finished steps and ``status.json`` for all."""

    def __init__(self, root: Path, steps: tuple[Step, ...], study: str, engine: str) -> None:
        self.root = root
        self.steps = {s.id: s for s in steps}
        self.header = {"study": study, "engine": engine, "started": _now()}
        self.rows = {s.id: {"kind": s.kind, "key": s.key, "out": str(s.out), "state": vocab.STATE_PENDING, "error": None,
                            "seconds": None, "missing": []} for s in steps}  # fmt: skip

    def skip(self, step_id: str) -> None:
        """Mark a step found done before this run."""
        self.rows[step_id]["state"] = vocab.STATE_DONE
        self.rows[step_id]["skipped"] = True

    def running(self, step_id: str) -> None:
        self.rows[step_id]["state"] = vocab.STATE_RUNNING
        self.write()

    def finish(self, outcome: Outcome) -> None:
        step = self.steps[outcome.step_id]
        row = self.rows[outcome.step_id]
        row.update(state=outcome.state, error=outcome.error, seconds=round(outcome.seconds, 3), missing=list(outcome.missing))
        if outcome.state == vocab.STATE_DONE:
            path = marker_path(self.root, step)
            _atomic_json(path, {"step": step.id, "key": step.key, "out": str(step.out), **asdict(outcome), "finished": _now()})
        self.write()

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(vocab.STEP_STATES, 0)
        for row in self.rows.values():
            out[row["state"]] += 1
        return out

    def write(self) -> None:
        _atomic_json(self.root / STATUS_FILE, {**self.header, "updated": _now(), "counts": self.counts(), "steps": self.rows})


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _atomic_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)
