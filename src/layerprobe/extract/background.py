"""Store writes on one background thread, so the next forward pass overlaps the last batch's write."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class BackgroundWriter:
    """Calls ``write(*item)`` for queued items on one thread; its first error stops all writing."""

    def __init__(self, write: Callable[..., None], depth: int) -> None:
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abandon = False
        self._thread = threading.Thread(target=self._loop, name="layerprobe-store-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None and not self._abandon:
                try:
                    self._write(*item)
                except BaseException as err:  # noqa: BLE001 -- re-raised in the main thread
                    self._error = err

    def check(self) -> None:
        """Re-raise the writer's error, if any, in the calling thread."""
        if self._error is not None:
            raise self._error

    def put(self, item: tuple) -> None:
        # A timeout loop, so a writer that died while the queue was full is noticed.
        while True:
            self.check()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self, reraise: bool = True) -> None:
        """Write what is queued, stop the thread, then re-raise its error (if ``reraise``).

        A Ctrl-C while waiting drops what is still queued and waits only for the write in progress,
        so the thread never outlives this call (the store writer is not thread-safe).
        """
        try:
            self._queue.put(None)
            self._thread.join()
        except KeyboardInterrupt:
            self._abandon = True
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put(None)
            self._thread.join()
            raise
        if reraise:
            self.check()
