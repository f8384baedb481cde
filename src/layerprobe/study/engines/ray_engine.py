"""The Ray engine: steps as Ray tasks with resource requests; Ray schedules, places and retries them.

- Every step of the plan is submitted at once; a step's task takes its inputs' outcome refs as
  arguments, so Ray starts it when they are ready (no scheduler of ours).
- Extraction: ``n`` shard tasks (``ExtractConfig.shard = (k, n)``: block-aligned, so shards never
  touch one chunk), each resuming the one store on the shared filesystem, then a finish task
  (store complete, ``samples.parquet``). Each shard asks for the model's GPUs when the cluster has
  GPUs, else ``[extract] cpus``. A shard whose worker dies is retried by Ray (``max_retries``); the
  retry resumes the store, whose commit records make sure a block is committed once.
- Probes: one task per store opens it and fans out one task per (site, run of layers) with
  ``[probe] cpus`` each; their tables are merged (one model row, checked by ``layerprobe.results``)
  into the table a single sweep writes.
- zarr-python runs an asyncio thread, so image-decoding workers inside a task are spawned, not
  forked (Ray workers are processes of their own already).
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import ray

from layerprobe import vocab
from layerprobe.study.engines.base import Finished, Started, blocked, execute, one_line
from layerprobe.study.errors import StudyError
from layerprobe.study.faults import exit_once_after_commit, fault_marker
from layerprobe.study.state import Outcome
from layerprobe.study.steps import ExtractStep, ProbeStep, Step

MAX_RETRIES = 3
"""Times Ray reruns a task whose worker died (a crash, a lost node, an out-of-memory kill)."""


def connect(address: str | None, workers: int | None) -> bool:
    """Connect to Ray (an existing cluster at ``address``, or a local instance of ``workers`` CPUs);
    True when this call started it (and the engine should stop it)."""
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
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
        self.fault = fault_marker()

    def run(self, steps: Sequence[Step], started: Started, finished: Finished) -> None:
        refs: dict[str, Any] = {}
        for step in steps:
            refs[step.id] = self._submit(step, [refs[d] for d in step.deps if d in refs])
        waiting = {ref: step_id for step_id, ref in refs.items()}
        deps = {s.id: [d for d in s.deps if d in refs] for s in steps}
        done: set[str] = set()
        announced: set[str] = set()
        while waiting:
            for s in steps:
                if s.id not in announced and s.id not in done and all(d in done for d in deps[s.id]):
                    announced.add(s.id)
                    started(s.id)
            ready, _ = ray.wait(list(waiting), num_returns=1)
            step_id = waiting.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as err:  # noqa: BLE001 -- retries exhausted, or a task's own bug
                outcome = Outcome(step_id, vocab.STATE_FAILED, one_line(getattr(err, "cause", None) or err))
            done.add(step_id)
            finished(outcome)

    def _submit(self, step: Step, inputs: list[Any]) -> Any:
        gpus = step.gpus() if self.has_gpus else 0
        cpus = step.cpus(self.settings)
        if isinstance(step, ExtractStep):
            n = min(self.parts, step.n_blocks)
            shard = _extract_shard.options(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES)
            shards = [shard.remote(step, k, n, self.fault, *inputs) for k in range(n)]
            return _extract_finish.options(num_cpus=0, max_retries=MAX_RETRIES).remote(step, *shards)
        if isinstance(step, ProbeStep):
            return _probe.options(num_cpus=0, max_retries=MAX_RETRIES).remote(step, self.parts, cpus, *inputs)
        return _step.options(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES).remote(step, *inputs)

    def close(self) -> None:
        if self.owned:
            ray.shutdown()


@ray.remote
def _step(step: Step, *inputs: Outcome) -> Outcome:
    return execute(step, inputs)


@ray.remote
def _extract_shard(step: ExtractStep, k: int, n: int, fault: str | None, *inputs: Outcome) -> Outcome | float:
    """Seconds taken when shard ``k`` of ``n`` wrote its blocks, else how it ended."""
    stop = blocked(step, inputs)
    if stop is not None:
        return stop
    if step.settings.num_workers > 0:
        multiprocessing.set_start_method("spawn", force=True)
    start = time.perf_counter()
    try:
        with exit_once_after_commit(fault, step.out):
            step.run_shard(k, n)
    except Exception as err:  # noqa: BLE001 -- recorded as the step's error
        return Outcome(step.id, vocab.STATE_FAILED, f"shard {k}/{n}: {one_line(err)}", time.perf_counter() - start)
    return time.perf_counter() - start


@ray.remote
def _extract_finish(step: ExtractStep, *shards: Outcome | float) -> Outcome:
    for shard in shards:
        if isinstance(shard, Outcome):
            return shard
    outcome = execute(step, (), work=step.finish)
    return replace(outcome, seconds=outcome.seconds + max(shards, default=0.0))


@ray.remote
def _probe(step: ProbeStep, n_parts: int, cpus: float, *inputs: Outcome) -> Outcome:
    def in_parts() -> None:
        parts = step.part_configs(n_parts)
        results = ray.get([_probe_part.options(num_cpus=cpus, max_retries=MAX_RETRIES).remote(c) for c in parts])
        errors = [e for _, e in results if e is not None]
        if errors:
            raise StudyError(errors[0])
        step.merge([frame for frame, _ in results])

    return execute(step, inputs, work=in_parts)


@ray.remote
def _probe_part(cfg: Any) -> tuple[Any, str | None]:
    from layerprobe.probe.sweep import run_sweep

    try:
        return run_sweep(cfg), None
    except Exception as err:  # noqa: BLE001 -- the step's error
        return None, one_line(err)
