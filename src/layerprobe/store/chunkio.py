"""The fast path: chunk bytes to and from files, exactly as Zarr v3 lays them out.

zarr-python's own pipeline moves about 0.2-0.6 GB/s here; page-cache file I/O moves 5-8 GB/s. So
the store writes and reads the chunk files of its (standard) Zarr v3 arrays directly. This is
"skip work whose result is known", not another format: the encoders below are the very numcodecs
objects zarr-python uses (``bytes`` = raw little-endian, ``zstd``, ``vlen-utf8``), the shard index is
the ``sharding_indexed`` index with its CRC32C, and tests/test_store_zarr_compat.py proves every file
is byte-identical to what zarr-python writes for the same data, and that zarr-python and xarray
read the store without layerprobe.

I/O choices (measured, see docs/LOG.md "store"):
- writes: shard files are preallocated whole when the store is created (``posix_fallocate``;
  numpy's ``tofile`` preallocates too; on ext4 it is 1.3-1.5x faster than writing into a hole),
  then each chunk is one ``pwritev`` of its pieces straight from the batches that hold them. One
  gathered call per chunk: 32 KB ``pwrite`` calls cost 2-3x more kernel time per byte than 1 MB
  ones here;
- raw reads: ``mmap`` the file and copy into the caller's buffer with numpy (user-space copy was
  1.3x faster than ``read()`` into fresh memory here). Files are never truncated after creation,
  so a mapped range stays valid; sizes are checked before mapping.
- chunk checksums (commit records): see ``CRC32`` and ``XXH3_64`` below. Hashing a chunk's pieces
  just before writing them costs nothing measurable (the hash pulls them into cache for the
  kernel's copy), while a CRC32C pass (``google_crc32c``, 10-25 GB/s) cost 30-40% of the write. The
  shard index keeps Zarr's CRC32C.
- checked reads: each CRC-32 chunk is copied and hashed in one pass by the compiled
  ``_crc32copy`` (built at install; a 135 MB site read from the page cache into fresh memory took
  the time of the plain copy). Where it is not built, or for XXH3-64 stores, each chunk is copied
  and hashed in pieces of ``CHECK_PIECE`` bytes, so the hash reads bytes the copy has just left in
  the core's L2 cache (see ``copy_range_into``).
"""

from __future__ import annotations

import errno
import mmap
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from layerprobe.errors import StoreError
from layerprobe.store.layout import ZSTD_LEVEL, ArrayPlan
from layerprobe.store.schema import CRC32, XXH3_64

T = TypeVar("T")
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


CHECKSUM = CRC32
"""The chunk checksum of stores created with the current schema (``schema.CHUNK_CHECKSUMS``).

``CRC32`` (schema 3) is CRC-32 as zlib and gzip compute it, 8 hex digits; ``XXH3_64`` (schema 2,
``xxhash``, 16 hex digits) is still verified when such a store is read or resumed.

Computed by ISA-L (``isal``: 108 GB/s on 1 MiB in cache with AVX512 + VPCLMULQDQ here, XXH3-64 69),
or, where ``isal`` cannot be imported, by ``zlib.crc32``: the same values at ~6 GB/s, so a store
stays readable everywhere, only slower to check. Both release the GIL (above 5 KiB). ISA-L picks
its code at run time; without AVX512 it runs PCLMULQDQ folding, which Intel puts at about 1/3.5 of
the AVX512 speed (untested here: ~30 GB/s on this core, near XXH3-64's AVX2 speed, not far worse).

Detection, against XXH3-64: a 32-bit CRC detects every error of 1 or 2 bits and every burst of up
to 32 bits in a 1 MiB chunk with certainty (XXH3-64 guarantees nothing for any pattern), and lets
other corruption through with probability 2^-32 per corrupted chunk (XXH3-64: 2^-64). For what the
check is for (bit rot, torn or overwritten ranges, a file swapped or edited), 2^-32 per damaged
chunk is negligible; neither resists deliberate tampering (whoever can rewrite a chunk can rewrite
its commit record). What it buys: 1.4-1.6x less hashing time, the cost of checking every read.
"""
CHECK_PIECE = 512 << 10
"""Bytes copied then hashed at a time on a checked read: a piece the copy has just written is
still in L2 (2 MiB here) when it is hashed; a whole 1 MiB chunk, source and copy together, mostly
is not (hashing it cost ~1.5x). Smaller pieces cost more calls, each a GIL release and retake:
with both cores free, 256 KiB pieces lost what they gained (docs/LOG.md, "Checked reads")."""


class _Crc32:
    """CRC-32 over buffers given one after another, with the ``update`` / ``hexdigest`` of ``xxhash``."""

    __slots__ = ("value", "_crc32")

    def __init__(self) -> None:
        self.value = 0
        self._crc32 = _crc32()

    def update(self, data: Any) -> None:
        self.value = self._crc32(data, self.value)

    def hexdigest(self) -> str:
        return format(self.value, "08x")


@lru_cache(maxsize=1)
def _crc32() -> Callable[[Any, int], int]:
    """ISA-L's CRC-32 when ``isal`` is installed, else zlib's (the same function, slower)."""
    try:
        from isal.isal_zlib import crc32
    except ImportError:  # no wheel for this platform: identical values from the standard library
        from zlib import crc32
    return crc32


@lru_cache(maxsize=1)
def _fused_copy_crc32() -> Callable[[Any, Any], int] | None:
    """``copy_crc32(dst, src)`` (copy, and return ``zlib.crc32(src)``, in one pass) where the
    extension is built and runs its carry-less-multiply code on this CPU; else None (two passes)."""
    try:
        from layerprobe.store._crc32copy import accelerated, copy_crc32
    except ImportError:  # installed without a C compiler (setup.py builds it optionally)
        return None
    return copy_crc32 if accelerated() else None


def checked_read_method(algorithm: str) -> str:
    """How a checked read of an ``algorithm`` store copies and hashes here (benchmarks print it)."""
    if algorithm == CRC32 and _fused_copy_crc32() is not None:
        return "one pass: compiled copy + CRC-32"
    return f"two passes: copy, then {algorithm} over {CHECK_PIECE >> 10} KiB pieces"


def hasher(algorithm: str) -> Any:
    """A fresh streaming hash (``update(buffer)``, ``hexdigest()``) for a commit-record checksum algorithm."""
    if algorithm == CRC32:
        return _Crc32()
    if algorithm == XXH3_64:
        import xxhash

        return xxhash.xxh3_64()
    raise StoreError(f"chunk checksum {algorithm!r} is unknown to this layerprobe; upgrade layerprobe to read this store")


def checksum(pieces: Sequence[Any], algorithm: str = CHECKSUM) -> str:
    """The ``algorithm`` checksum (hex) of the buffers ``pieces`` taken back to back."""
    if algorithm == CRC32:  # inline: a write hashes ~32 pieces of 32 KiB per chunk, method calls showed (~3%)
        crc32, value = _crc32(), 0
        for piece in pieces:
            value = crc32(piece, value)
        return format(value, "08x")
    h = hasher(algorithm)
    for piece in pieces:
        h.update(piece)
    return h.hexdigest()


def crc32c(data: bytes) -> int:
    """CRC32C of ``data`` (the shard index checksum of Zarr's sharding codec)."""
    import google_crc32c

    return google_crc32c.value(data)


@lru_cache(maxsize=None)
def _zstd(level: int) -> Any:
    from numcodecs.zstd import Zstd

    return Zstd(level=level, checksum=False)


@lru_cache(maxsize=None)
def _vlen_utf8() -> Any:
    from numcodecs.vlen import VLenUTF8

    return VLenUTF8()


def encode_chunk(plan: ArrayPlan, chunk: np.ndarray | list[str]) -> Any:
    """Stored bytes of one whole chunk (already padded to ``plan.chunk_shape``)."""
    if plan.dtype == "str":
        return _vlen_utf8().encode(np.asarray(chunk, dtype=object))
    arr = np.ascontiguousarray(chunk, dtype=np.dtype(plan.dtype).newbyteorder("<"))
    if arr.shape != plan.chunk_shape:
        raise ValueError(f"chunk of {plan.path} has shape {arr.shape}, expected {plan.chunk_shape}")
    if plan.codec == "zstd":
        return _zstd(ZSTD_LEVEL).encode(arr)
    return arr


def decode_chunk(plan: ArrayPlan, data: Any) -> np.ndarray:
    """One whole chunk from its stored bytes."""
    if plan.dtype == "str":
        return _vlen_utf8().decode(data).reshape(plan.chunk_shape)
    if plan.codec == "zstd":
        data = _zstd(ZSTD_LEVEL).decode(data)
    dtype = np.dtype(plan.dtype).newbyteorder("<")
    if len(data) != plan.chunk_nbytes:
        raise StoreError(f"a chunk of {plan.path} holds {len(data)} bytes, expected {plan.chunk_nbytes}; run 'layerprobe verify'")
    return np.frombuffer(data, dtype=dtype).reshape(plan.chunk_shape)


def shard_index(plan: ArrayPlan) -> bytes:
    """The index of a pre-laid-out shard: every inner chunk present, in order, at a fixed offset."""
    n = plan.n_shard_chunks()
    index = np.empty((n, 2), dtype="<u8")
    index[:, 0] = np.arange(n, dtype=np.uint64) * plan.chunk_nbytes
    index[:, 1] = plan.chunk_nbytes
    raw = index.tobytes()
    return raw + np.uint32(crc32c(raw)).astype("<u4").tobytes()


def on_two_threads(fn: Callable[[Any], T], jobs: Sequence[Any]) -> list[T]:
    """``[fn(job) for job in jobs]``, computed by this thread and a helper thread together.

    For the bulk copies (``pwritev``, hashing, copies out of the page cache): they release the GIL,
    and on this VM two threads move 1.3-1.5x the bytes of one (docs/LOG.md "store"). The caller's
    thread does about half the work, so no third thread competes for the GIL while the copies run. Each
    thread takes the next job when done with its last (a fixed split left one thread idle for
    5-10 ms of a 30 ms block), so both finish within one job of each other. The first error stops
    both threads and is raised. A single job runs on this thread alone.
    """
    if len(jobs) <= 1:
        return [fn(job) for job in jobs]
    results: list[Any] = [None] * len(jobs)
    queue = iter(enumerate(jobs))  # next() on it is atomic under the GIL: each job is taken once
    failed: list[BaseException] = []

    def work() -> None:
        for i, job in queue:
            if failed:
                return
            try:
                results[i] = fn(job)
            except BaseException as err:
                failed.append(err)
                raise

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="layerprobe-io") as helper:
        theirs = helper.submit(work)
        try:
            work()
        finally:
            wait([theirs])  # even after an error: the helper may still be using what the jobs refer to
        theirs.result()
    return results


def write_chunk_bytes(path: Path, data: Any, offset: int | None = None) -> None:
    """Write one chunk: as a whole file (created or replaced), or at ``offset`` of an existing shard file."""
    if offset is not None:
        fd = os.open(path, os.O_WRONLY)
        try:
            pwritev_all(fd, [data], offset)
        finally:
            os.close(fd)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        nbytes = memoryview(data).nbytes
        if nbytes >= 1 << 16:
            preallocate(fd, 0, nbytes)
        pwritev_all(fd, [data], 0)
    finally:
        os.close(fd)


def pwritev_all(fd: int, pieces: Sequence[Any], offset: int) -> None:
    """Write the C-contiguous buffers ``pieces`` back to back from ``offset`` of the open file ``fd``.

    Every chunk byte the store writes goes through here (tests patch it to simulate a full disk or
    a crash mid-chunk).
    """
    views = [memoryview(p).cast("B") for p in pieces]
    if not views:
        return
    done = os.pwritev(fd, views[:_IOV_MAX], offset)
    if len(views) <= _IOV_MAX and done == sum(v.nbytes for v in views):
        return  # the usual case: everything in one call
    while True:  # a short write, or more pieces than one call takes: go on where the kernel stopped
        offset += done
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if not views:
            return
        if done:
            views[0] = views[0][done:]
        done = os.pwritev(fd, views[:_IOV_MAX], offset)


def preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve disk blocks for a byte range (a full disk fails here, before any data is written)."""
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as err:
        # Some filesystems cannot preallocate; the write itself still reports a full disk.
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


def read_chunk(root: Path, a: ArrayPlan, layer: int, block: int) -> bytes:
    """The stored bytes of chunk (``layer``, ``block``) of array ``a``, from its shard or its own file."""
    try:
        if a.sharded:
            return read_chunk_bytes(root / a.chunk_key(layer, block), a.chunk_offset(block), a.chunk_nbytes)
        return read_chunk_bytes(root / a.chunk_key(layer, block))
    except FileNotFoundError:
        raise StoreError(f"{root} is damaged: chunk {a.chunk_key(layer, block)} is missing; run 'layerprobe verify'") from None


def read_chunk_bytes(path: Path, offset: int | None = None, nbytes: int | None = None) -> bytes:
    """The stored bytes of one chunk (whole file, or ``nbytes`` at ``offset`` of a shard)."""
    if offset is None:
        return path.read_bytes()
    assert nbytes is not None
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise StoreError(f"{path} is truncated ({offset + len(data)} bytes, need {offset + nbytes}); run 'layerprobe verify'")
    return data


def copy_range_into(path: Path, offset: int, out: np.ndarray, *, chunk_nbytes: int | None = None,
                    checksums: Sequence[str | None] = (), algorithm: str = CHECKSUM) -> list[int]:
    """Copy ``out.nbytes`` bytes at ``offset`` of ``path`` into the C-contiguous array ``out``.

    With ``checksums``, the range is a run of whole chunks of ``chunk_nbytes`` (the last one may
    reach past ``out``: its tail is the chunk's padding) and chunk ``j`` is checked against
    ``checksums[j]`` (``None``: not checked), an ``algorithm`` checksum. Each piece of
    ``CHECK_PIECE`` bytes is hashed right after it is copied, while it is still in cache, so the
    check costs one pass over cached bytes rather than a second read.
    Returns the indices of the chunks whose checksum differs.
    """
    if not out.flags.c_contiguous:
        raise ValueError("copy_range_into needs a C-contiguous output array")
    nbytes = out.nbytes
    step = chunk_nbytes or nbytes
    span = len(checksums) * step if checksums else nbytes
    if span < nbytes:
        raise ValueError(f"{len(checksums)} chunks of {step} bytes do not cover {nbytes} bytes")
    if span == 0:
        return []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size < offset + span:
            raise StoreError(f"{path} is truncated ({size} bytes, need {offset + span}); run 'layerprobe verify'")
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        mapped = mmap.mmap(fd, offset - start + span, access=mmap.ACCESS_READ, offset=start)
    finally:
        os.close(fd)
    src = np.frombuffer(mapped, dtype=np.uint8, count=span, offset=offset - start)
    dst = out.reshape(-1).view(np.uint8)
    try:
        if not checksums:
            np.copyto(dst, src[:nbytes])
            return []
        return [j for j, expected in enumerate(checksums) if not _copy_and_check(src, dst, j * step, step, expected, algorithm)]
    finally:
        del src  # the map cannot close while a view of it exists
        mapped.close()


def _copy_and_check(src: np.ndarray, dst: np.ndarray, begin: int, step: int, expected: str | None, algorithm: str) -> bool:
    """Copy chunk ``[begin, begin + step)`` of ``src`` into ``dst`` (as far as ``dst`` reaches); True
    when it matches ``expected`` (an ``algorithm`` checksum) or nothing is expected."""
    end = min(begin + step, dst.size)
    if expected is None:
        np.copyto(dst[begin:end], src[begin:end])
        return True
    fused = _fused_copy_crc32() if algorithm == CRC32 else None
    if fused is not None:
        value = fused(dst[begin:end], src[begin:end])
        if end < begin + step:
            value = _crc32()(src[end : begin + step], value)
        return format(value, "08x") == expected
    h = hasher(algorithm)
    for p in range(begin, end, CHECK_PIECE):
        piece = dst[p : min(p + CHECK_PIECE, end)]
        piece[...] = src[p : p + piece.size]  # numpy releases the GIL for the copy, as for copyto (half the call cost)
        h.update(piece)
    if end < begin + step:
        h.update(src[end : begin + step])  # the padding after the last sample
    return h.hexdigest() == expected


def atomic_write(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Create or replace ``path`` so that readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_path(path: Path) -> None:
    """fsync a file or directory (used when the caller asked for power-loss durability)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
