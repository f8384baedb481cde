"""Timing that survives a drifting machine (issue 14, item 8), shared by the benchmarks.

- Every ratio is the median of interleaved A/B pairs: baseline and candidate are timed one right
  after the other on the same work, the order alternating between pairs (AB, BA, AB, ...), so a
  slow minute slows both sides of a pair and a linear drift cancels. The spread (the smallest and
  largest pair ratio) is printed beside the median: two runs agree when their medians fall inside
  each other's spread. Not quartiles: with the 3-5 pairs a benchmark can afford, the inclusive
  quartiles are midpoints between the median and the extremes, and two runs of the same code read
  medians outside each other's IQR (docs/LOG.md, eleventh session).
- A "share of peak" divides by a peak measured right beside the timed work (a short GEMM timed
  just after it), never by one measured minutes earlier.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch


class Spread(NamedTuple):
    """Median and range of a sample of ratios."""

    median: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.median:.2f} (range {self.low:.2f}-{self.high:.2f}, {self.n} pairs)"


def spread(values: list[float]) -> Spread:
    """Median, smallest and largest of ``values`` (with one value all three are it)."""
    return Spread(statistics.median(values), min(values), max(values), len(values))


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call (CUDA work it queued included)."""
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run_rounds(steps: dict[str, Callable[[int], float]], n_rounds: int) -> dict[str, list[float]]:
    """Each round calls every step once (``step(round) -> seconds per unit of work``), forwards in
    even rounds and backwards in odd ones; returns each step's per-round values."""
    names = list(steps)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(n_rounds):
        for name in names if r % 2 == 0 else reversed(names):
            out[name].append(steps[name](r))
    return out


def pair_ratios(rounds: dict[str, list[float]], baseline: str, candidate: str) -> Spread:
    """Spread of baseline/candidate seconds-per-unit, pair by pair (= candidate speed-up)."""
    return spread([b / c for b, c in zip(rounds[baseline], rounds[candidate])])


def gemm_gflops(dtype: torch.dtype, device: str | torch.device = "cpu", seconds: float = 0.3, size: int = 2048) -> float:
    """Best GFLOP/s of a ``size``-square GEMM over ``seconds``: the peak measured beside timed work."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b
    sync()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def copy_gbps(device: str | torch.device = "cpu", seconds: float = 0.3, n_bytes: int = 256 << 20) -> float:
    """Copy bandwidth (bytes read + written per second, GB/s), measured beside timed work."""
    src = torch.ones(n_bytes // 4, device=device)
    dst = torch.empty_like(src)
    best, end = float("inf"), time.perf_counter() + seconds
    dst.copy_(src)
    while time.perf_counter() < end:
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * n_bytes / best / 1e9


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` of /proc/self/status where it exists.

    Not ``ru_maxrss``: Linux carries it across ``exec``, so a child started by a large parent
    reports the parent's size (a child of a 1.5 GiB process read 1,550 MiB with a VmHWM of 10 MiB).
    """
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
