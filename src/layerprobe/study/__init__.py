"""The whole study as one resumable command: models x datasets x arms -> steps -> one report.

``run_study("study.toml", engine="local" | "ray")`` reads a study file (:mod:`.parse`, format in
docs/study.md), expands it into a graph of steps named by hashes of what decides their bytes
(:mod:`.plan`, :mod:`.steps`), skips the finished ones (:mod:`.state`), and runs the rest on an
engine (:mod:`.engines`). Importing this package is light: nothing heavy loads before a step runs.
"""

from __future__ import annotations

from layerprobe.study.errors import StudyError
from layerprobe.study.parse import load_study
from layerprobe.study.plan import Plan, plan_study
from layerprobe.study.run import StudyResult, run_study

__all__ = ["Plan", "StudyError", "StudyResult", "load_study", "plan_study", "run_study"]
