"""Advisory write locks: one writing process per store, or per shard of a sharded run.

Two ``extract`` runs into one store used to race until one died with "already committed". A writer
now takes, inside the store (POSIX record locks, ``fcntl.lockf``, released by the kernel when the
process dies):
- ``.lock``: exclusive for a run of the whole store (shard ``0/1``), shared for a shard ``k/n``;
- ``.lock-k-of-n``: exclusive, for a shard ``k/n``.
So a whole-store run excludes every other writer, and shard ``k/n`` excludes a second ``k/n``,
while different shards of one run write side by side. (Shards of different counts, ``0/2`` beside
``0/3``, overlap in some blocks; they are not excluded here, and the writer's "already committed"
check still stops the later one without harm: identical rows, one commit.)

Why record locks, not ``flock``: the extractor's loader workers are forked while the lock is
held, and a forked child shares an ``flock`` (so a killed extractor's lingering workers kept its
store locked), but never a record lock. Record locks belong to the process, so locks within one
process (two writers in a notebook or a test) are kept here, in ``_HELD``, with one descriptor per
lock file (closing any descriptor of a file drops the process's record locks on it).

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
import threading
from dataclasses import dataclass
from pathlib import Path

from layerprobe.errors import StoreError

LOCK_PREFIX = ".lock"
"""Names of lock files start with this; ``verify`` and readers never look at them."""


@dataclass
class _Held:
    """A lock file this process holds: its one descriptor, the mode, and how many writers share it."""

    fd: int
    exclusive: bool
    count: int = 1


_HELD: dict[str, _Held] = {}
_HELD_GUARD = threading.Lock()


class StoreLock:
    """The locks of one writer (see the module docstring); :meth:`release` (or closing the writer) lets go."""

    def __init__(self, root: Path, shard: tuple[int, int]) -> None:
        self.root = root
        self.shard = shard
        k, n = shard
        self._held: list[Path] = []
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
        key = os.path.abspath(path)
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:  # this process holds it already (another writer object)
                if exclusive or held.exclusive:
                    raise StoreError(self._busy(path, os.getpid() if held.exclusive else None))
                held.count += 1
                self._held.append(path)
                return
            fd = self._lock_file(path, exclusive)
            _HELD[key] = _Held(fd, exclusive)
            self._held.append(path)

    def _lock_file(self, path: Path, exclusive: bool) -> int:
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise StoreError(f"cannot create the lock file {path}: {err.strerror}; check the store's permissions") from err
            try:
                fcntl.lockf(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            except OSError:  # EAGAIN / EACCES: held by another process
                holder = _read_pid(fd)  # None: held shared, by shard writers
                os.close(fd)
                raise StoreError(self._busy(path, holder)) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # its last holder removed it between our open and our lock: take a fresh one
        os.ftruncate(fd, 0)  # held shared: no exclusive holder exists, so a pid left here is stale
        if exclusive:
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

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
        with _HELD_GUARD:
            for path in reversed(self._held):
                key = os.path.abspath(path)
                held = _HELD[key]
                held.count -= 1
                if held.count == 0:
                    del _HELD[key]
                    _unlock(path, held.fd)
            self._held.clear()


def _unlock(path: Path, fd: int) -> None:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # atomic upgrade: nobody else holds it, so remove it
        if _same_file(fd, path):
            path.unlink(missing_ok=True)
    except OSError:
        pass  # others still hold it (shared; the last of them removes it), or a read-only store
    finally:
        os.close(fd)


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
