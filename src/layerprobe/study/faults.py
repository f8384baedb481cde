"""Fault injection for the fault-tolerance test: kill one extraction worker in the middle of its work.

Set ``LAYERPROBE_STUDY_FAULT`` to a marker-file path in the environment of the process that runs the
study. The first Ray extraction shard that starts while the file does not exist creates it, once
the store holds a committed block, and ends its own worker process at once (``os._exit``: no
cleanup, like a node lost or a process killed by the kernel). Ray then retries the shard, which
resumes the store. Nothing reads the variable unless it is set; the local engine never does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FAULT_ENV = "LAYERPROBE_STUDY_FAULT"


def fault_marker() -> str | None:
    """The marker path from the environment of the driver, or None."""
    return os.environ.get(FAULT_ENV) or None


@contextmanager
def exit_once_after_commit(marker: str | None, store: Path) -> Iterator[None]:
    """While the body runs: if ``marker`` does not exist, end this process after the store's first commit."""
    if marker is None or os.path.exists(marker):
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.005):
            commits = store / "commits"
            if commits.is_dir() and any(commits.glob("*.json")):
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
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
