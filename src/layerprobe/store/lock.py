"""Advisory write locks: one writing process per store, or per shard of a sharded run.

Two ``extract`` runs into one store used to race until one died with "already committed". A writer
now takes, inside the store, (``fcntl.flock``, released by the kernel when the process dies):
- ``.lock``: exclusive for a run of the whole store (shard ``0/1``), shared for a shard ``k/n``;
- ``.lock-k-of-n``: exclusive, for a shard ``k/n``.
So a whole-store run excludes every other writer, and shard ``k/n`` excludes a second ``k/n``,
while different shards of one run write side by side. (Shards of different counts, ``0/2`` beside
``0/3``, overlap in some blocks; they are not excluded here, and the writer's "already committed"
check still stops the later one without harm: identical rows, one commit.)

A lock file holds the pid of its exclusive holder, for the message. Lock files are not part of the
store: they are removed when the writer closes (the last holder of ``.lock`` removes it), so a
closed store holds the same files, byte for byte, as before locks existed; a lock file left by a
killed process is harmless (nobody holds it) and is removed by the next writer that closes. A
process that opens a lock file just as its last holder removes it notices (the path no longer
names the file it locked) and takes a fresh one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from layerprobe.errors import StoreError

LOCK_PREFIX = ".lock"
"""Names of lock files start with this; ``verify`` and readers never look at them."""


class StoreLock:
    """The locks of one writer (see the module docstring); :meth:`release` (or closing the writer) lets go."""

    def __init__(self, root: Path, shard: tuple[int, int]) -> None:
        self.root = root
        self.shard = shard
        k, n = shard
        self._held: list[tuple[Path, int]] = []
        try:
            if n == 1:
                self._take(root / LOCK_PREFIX, exclusive=True)
            else:
                self._take(root / LOCK_PREFIX, exclusive=False)
                self._take(root / f"{LOCK_PREFIX}-{k}-of-{n}", exclusive=True)
        except BaseException:
            self.release()
            raise

    def _take(self, path: Path, *, exclusive: bool) -> None:
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise StoreError(f"cannot create the lock file {path}: {err.strerror}; check the store's permissions") from err
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise StoreError(self._busy(path, holder)) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # its last holder removed it between our open and our lock: take a fresh one
        os.ftruncate(fd, 0)  # shared: no exclusive holder exists, so a pid left here is stale
        if exclusive:
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._held.append((path, fd))

    def _busy(self, path: Path, holder: int | None) -> str:
        """What holds ``path``: a whole-store writer, shard writers (``.lock`` held shared), or our own shard's."""
        k, n = self.shard
        if path.name == LOCK_PREFIX and holder is None:
            pids = sorted(filter(None, (_pid_in(p) for p in self.root.glob(f"{LOCK_PREFIX}-*-of-*"))))
            who = f"other processes (pid {', '.join(map(str, pids))})" if pids else "other processes"
            return f"{who} are writing shards of this store ({self.root}); wait for them or stop them"
        who = f"another process (pid {holder})" if holder else "another process"
        what = f"{self.root}, shard {k}/{n}" if path.name != LOCK_PREFIX else str(self.root)
        return f"{who} is writing this store ({what}); wait for it or stop it"

    def release(self) -> None:
        """Let go of every lock, removing each lock file nobody else holds."""
        for path, fd in reversed(self._held):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else holds it: remove it
                if _same_file(fd, path):
                    path.unlink(missing_ok=True)
            except BlockingIOError:
                pass  # others still hold it (shared): the last of them removes it
            except OSError:
                pass  # a read-only or vanished store: the lock file simply stays
            finally:
                os.close(fd)
        self._held.clear()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _pid_in(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
