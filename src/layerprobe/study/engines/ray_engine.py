"""The Ray engine: steps as Ray tasks with resource requests; Ray schedules, places and retries them.

- The driver submits a step's tasks as soon as its inputs are done and collects results with
  ``ray.wait``; Ray decides where and when each task runs from its resource request, and retries
  it when its worker dies. The driver itself only does what takes milliseconds (open a store's
  metadata, merge tables), so no worker process is spent waiting on others.
- Extraction: ``n`` shard tasks (``ExtractConfig.shard = (k, n)``: block-aligned, so shards never
  touch one chunk), each resuming the one store on the shared filesystem; then the driver checks
  the store is complete and writes ``samples.parquet`` if no shard did. Each shard asks for the
  model's GPUs when the cluster has GPUs, else ``[extract] cpus``. A shard whose worker dies is
  retried by Ray (``max_retries``); the retry resumes the store, whose commit records make sure a
  block is committed once.
- Probes: one task per (site, run of layers) of the store, ``[probe] cpus`` each; their tables are
  merged (one model row, checked by ``layerprobe.results``) into the table one sweep writes.
- zarr-python runs an asyncio thread, so image-decoding workers inside a task are spawned, not
  forked (Ray workers are processes of their own already).
"""

from __future__ import annotations

import multiprocessing
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import ray

from layerprobe import vocab
from layerprobe.study.engines.base import Finished, Started, blocked, execute, one_line
from layerprobe.study.errors import StudyError
from layerprobe.study.state import Outcome
from layerprobe.study.steps import ExtractStep, ProbeStep, Step

MAX_RETRIES = 3
"""Times Ray reruns a task whose worker died (a crash, a lost node, an out-of-memory kill)."""


def local_instance_options(workers: int | None) -> dict[str, Any]:
    """``ray.init`` options of the local instance started for a run (the benchmark starts the same).

    No dashboard (more processes to start, and nothing here reads it); worker logs stay in Ray's
    session folder instead of being copied to the driver's output. What start-up still costs is in
    ``docs/study.md`` ("What a local Ray instance costs").
    """
    return {"num_cpus": workers, "include_dashboard": False, "log_to_driver": False}


def stop_local_instance() -> None:
    """Stop the local instance this process started: ``ray.shutdown``, less a second of waiting.

    ``ray.shutdown`` stops the GCS first and then sends the autoscaler monitor SIGTERM; the
    monitor's handler tries to report its exit to the stopped GCS, so Ray waits out its 1 s grace
    period and sends SIGKILL anyway. The monitor keeps nothing a run needs (one node, nothing to
    scale), so it gets that SIGKILL first. Ray's private node handle may move between releases;
    without it this is plain ``ray.shutdown``.
    """
    node = getattr(sys.modules.get("ray._private.worker"), "_global_node", None)
    kill = getattr(node, "_kill_process_type", None)
    if kill is not None:
        kill("monitor", allow_graceful=False, check_alive=False)
    ray.shutdown()


def connect(address: str | None, workers: int | None) -> bool:
    """Connect to Ray (an existing cluster at ``address``, or a local instance of ``workers`` CPUs);
    True when this call started it (and the engine should stop it)."""
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(**local_instance_options(workers))
        return True
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise StudyError(f"cannot connect to the Ray cluster at {address!r} ({one_line(err)[:160]}); start one with `ray start --head` or fix --address") from None
    return False


def _check_reachable(address: str) -> None:
    """Fail in seconds on a wrong address (``ray.init`` retries for a minute before it gives up)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            return
    except ValueError:
        raise StudyError(f"--address {address!r} is not host:port or auto; e.g. --address 10.0.0.1:6379") from None
    except OSError as err:
        raise StudyError(f"cannot reach the Ray cluster at {address!r} ({err.strerror or err}); start it with `ray start --head` or fix --address") from None


class RayEngine:
    name = vocab.ENGINE_RAY

    def __init__(self, address: str | None, workers: int | None, settings: Any) -> None:
        self.owned = connect(address, workers)
        resources = ray.cluster_resources()
        self.has_gpus = resources.get("GPU", 0) > 0
        self.parts = workers or max(1, int(resources.get("CPU", 1)))
        self.settings = settings

    def run(self, steps: Sequence[Step], started: Started, finished: Finished) -> None:
        known = {s.id for s in steps}
        waiting = list(steps)
        outcomes: dict[str, Outcome] = {}
        jobs: dict[str, _Job] = {}

        def end(outcome: Outcome) -> None:
            outcomes[outcome.step_id] = outcome
            finished(outcome)

        while waiting or jobs:
            for step in [s for s in waiting if all(d in outcomes for d in s.deps if d in known)]:
                waiting.remove(step)
                stop = blocked(step, [outcomes[d] for d in step.deps if d in known])
                if stop is not None:
                    end(stop)
                    continue
                started(step.id)
                try:
                    jobs[step.id] = _Job(step, self._launch(step), time.perf_counter())
                except Exception as err:  # noqa: BLE001 -- e.g. the store to probe cannot be opened
                    end(Outcome(step.id, vocab.STATE_FAILED, one_line(err)))
            if not jobs:
                continue
            flying = {ref: job for job in jobs.values() for ref in job.refs if ref not in job.results}
            ready, _ = ray.wait(list(flying), num_returns=1)
            job = flying[ready[0]]
            job.results[ready[0]] = _result(ready[0])
            if len(job.results) == len(job.refs):
                del jobs[job.step.id]
                end(job.complete())

    def _launch(self, step: Step) -> list[Any]:
        gpus = step.gpus() if self.has_gpus else 0
        cpus = step.cpus(self.settings)
        if isinstance(step, ExtractStep):
            n = min(self.parts, step.n_blocks)
            shard = _extract_shard.options(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES)
            return [shard.remote(step, k, n) for k in range(n)]
        if isinstance(step, ProbeStep):
            part = _probe_part.options(num_cpus=cpus, max_retries=MAX_RETRIES)
            return [part.remote(step, changes) for changes in step.parts(self.parts)]
        return [_step.options(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES).remote(step)]

    def close(self) -> None:
        if self.owned:
            stop_local_instance()


def _result(ref: Any) -> Any:
    """A task's return value, or the one-line error of a task that failed past its retries."""
    try:
        return ray.get(ref)
    except Exception as err:  # noqa: BLE001 -- retries exhausted, or a bug in the task
        return _Failure(one_line(getattr(err, "cause", None) or err))


class _Failure(NamedTuple):
    error: str


class _Job:
    """The tasks of one step in flight, and how their results make the step's outcome."""

    def __init__(self, step: Step, refs: list[Any], start: float) -> None:
        self.step, self.refs, self.start = step, refs, start
        self.results: dict[Any, Any] = {}

    def complete(self) -> Outcome:
        values = [self.results[r] for r in self.refs]
        failure = next((v.error for v in values if isinstance(v, _Failure)), None)
        failure = failure or next((e for v in values if isinstance(v, tuple) and (e := v[1]) is not None), None)
        if failure is not None:
            return Outcome(self.step.id, vocab.STATE_FAILED, failure, time.perf_counter() - self.start)
        if isinstance(self.step, ExtractStep):
            outcome = execute(self.step, (), work=self.step.finish)
        elif isinstance(self.step, ProbeStep):
            outcome = execute(self.step, (), work=lambda: self.step.merge([frame for frame, _ in values]))
        else:
            return values[0]
        return replace(outcome, seconds=time.perf_counter() - self.start)


@ray.remote
def _step(step: Step) -> Outcome:
    return execute(step)


@ray.remote
def _extract_shard(step: ExtractStep, k: int, n: int) -> tuple[None, str | None]:
    """Write blocks ``k, k+n, ...`` of the step's store; ``(None, error or None)``."""
    if step.settings.num_workers > 0:
        multiprocessing.set_start_method("spawn", force=True)
    try:
        step.run_shard(k, n)
    except Exception as err:  # noqa: BLE001 -- recorded as the step's error
        return None, f"shard {k}/{n}: {one_line(err)}"
    return None, None


@ray.remote
def _probe_part(step: ProbeStep, changes: dict[str, Any]) -> tuple[Any, str | None]:
    """One part of a probe sweep (``step.config(**changes)``, its device parsed on this worker):
    ``(its table, None)`` or ``(None, error)``."""
    from layerprobe.probe.sweep import run_sweep

    try:
        return run_sweep(step.config(**changes)), None
    except Exception as err:  # noqa: BLE001 -- the step's error
        return None, one_line(err)
