"""Fault injection for the Ray engine's fault-tolerance test: end one extraction worker mid-shard.

The library holds no hook for this. A test that starts its own Ray instance passes
``ray.init(runtime_env=kill_runtime_env(folder))``; Ray then runs :func:`install` in every worker
process it starts (its ``worker_process_setup_hook``), which wraps ``ExtractStep.run_shard`` in that
process. Nothing happens until the test calls :func:`arm`: the first shard to start afterwards
ends its own process (``os._exit``: no cleanup, like a process killed by the kernel or a node lost)
once the store holds a committed block, and :func:`killed` says it did. Ray retries the shard in a
new worker, which finds the kill done and resumes the store. State lives in files under ``folder``,
since the driver and the workers are separate processes. Standard library only at import time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FAULT_DIR_ENV = "LAYERPROBE_TEST_FAULT_DIR"
"""Set in the workers' environment (by :func:`kill_runtime_env`): the folder of the state files."""
_ARMED = "armed"
_KILLED = "killed"


def kill_runtime_env(folder: Path) -> dict[str, Any]:
    """The ``runtime_env`` for ``ray.init`` that installs the hook in every worker."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"worker_process_setup_hook": f"{__name__}.install", "env_vars": {FAULT_DIR_ENV: str(folder)}}


def arm(folder: Path) -> None:
    """Make the next extraction shard to start end its worker after the store's first commit."""
    (folder / _ARMED).touch()


def killed(folder: Path) -> bool:
    """True once a worker ended itself."""
    return (folder / _KILLED).exists()


def install() -> None:
    """Worker setup hook: wrap ``ExtractStep.run_shard`` in this process (a no-op without the variable)."""
    folder = os.environ.get(FAULT_DIR_ENV)
    if not folder:
        return
    from layerprobe.study.steps import ExtractStep

    run_shard = ExtractStep.run_shard

    def run_shard_or_die(self: Any, k: int, n: int) -> None:
        with _exit_once_after_commit(Path(folder), Path(self.out)):
            run_shard(self, k, n)

    ExtractStep.run_shard = run_shard_or_die  # type: ignore[method-assign]


@contextmanager
def _exit_once_after_commit(folder: Path, store: Path) -> Iterator[None]:
    """While the body runs: if armed and no worker died yet, end this process after the store's first commit."""
    if not (folder / _ARMED).exists() or killed(folder):
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.005):
            commits = store / "commits"
            if commits.is_dir() and any(commits.glob("*.json")):
                try:
                    os.close(os.open(folder / _KILLED, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:  # another shard was killed first
                    return
                os._exit(137)

    thread = threading.Thread(target=watch, name="layerprobe-fault", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
