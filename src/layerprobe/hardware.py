"""What the machine does well, decided once per run and logged with its reason.

Used by extraction (the model's compute dtype), fine-tuning (the same choice, through
:func:`resolve_compute_dtype`) and the probe engine (matmul dtype, cache size, thread count). A
bottom-floor module: it imports torch and the standard library, and from layerprobe only the
vocabulary and the error type.

- Native bf16 matmuls: CUDA devices of compute capability 8.0 or newer (Ampere on); CPUs with
  AMX or AVX512-BF16 (torch reports both). Elsewhere torch emulates bf16: on a 2-core AMD EPYC
  without AVX512 its matmuls ran at 0.3-1.4 GFLOP/s against 83-163 GFLOP/s in fp32, and a tiny
  LLaVA forward took 6.3x longer in bf16 than in fp32 (field notes).
- ``auto`` compute dtype: bf16 where it is native; elsewhere fp32 when the fp32 weights fit the
  memory budget (default: :data:`MEMORY_FRACTION` of the memory available now: RAM for a CPU,
  free GPU memory for CUDA), else bf16 with a one-line warning that says why it is slow.
  Activations are stored as bf16 bits either way, so the choice changes speed, not the format.
- Last-level cache size (Linux sysfs; 32 MiB when unknown): small-batch probe training is bound
  by the optimizer's memory traffic, and a group whose weights and moments stay in this cache runs
  at cache bandwidth instead of DRAM bandwidth (docs/LOG.md, "probe").
- Threads: torch's default (one per core) is a bad choice for small problems on a busy machine
  (a small linear sweep on a busy 2-core CPU: 0.16 s with 1 thread, 10.6 s with 2), so the probe
  engine sizes its thread count from the work per step and the cores free (:func:`choose_threads`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch

from layerprobe import vocab
from layerprobe.errors import LayerprobeError

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 32 << 20
MEMORY_FRACTION = 0.5
"""Share of the memory available now that fp32 weights may take before ``auto`` falls back to
bf16: the rest is left for activations, the loader workers and whatever else runs."""
FLOPS_PER_THREAD = 2e7
"""Matmul work per step (FLOP) that one more thread must have to pay off: about 0.3 ms of one core
at 60 GFLOP/s, far above the ~10 us a parallel region costs to start and join, and large enough
that a thread waiting on a busy sibling core does not stall every small op."""
_CPU_BF16_CHECKS = {"AMX": "_is_amx_tile_supported", "AVX512-BF16": "_is_avx512_bf16_supported"}


def cpu_bf16_features() -> tuple[str, ...]:
    """The CPU's native-bf16 instruction sets that torch reports (``AMX``, ``AVX512-BF16``), if any."""
    return tuple(name for name, check in _CPU_BF16_CHECKS.items() if bool(getattr(torch.cpu, check, lambda: False)()))


def _cuda_native_bf16(dev: torch.device) -> bool:
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)[0] >= 8


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` has native bf16 matmuls (CUDA capability >= 8.0; CPU with AMX or AVX512-BF16).

    ``torch.cuda.is_bf16_supported()`` is not used: by default it also answers True where bf16
    is only emulated (pre-Ampere GPUs), which is exactly the case where bf16 is slow.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return _cuda_native_bf16(dev)
    if dev.type == "cpu":
        return bool(cpu_bf16_features())
    return False


def _bf16_verdict(dev: torch.device) -> str:
    """Why ``dev`` has (or lacks) native bf16, in a few words."""
    if dev.type == "cpu":
        found = cpu_bf16_features()
        return f"the CPU has {' and '.join(found)} (native bf16 matmuls)" if found else "the CPU has neither AMX nor AVX512-BF16 (bf16 matmuls are emulated, several times slower than fp32)"
    if dev.type == "cuda":
        return f"{dev} has native bf16 matmuls (compute capability >= 8.0)" if native_bf16(dev) else f"{dev} has no native bf16 matmuls (compute capability < 8.0)"
    return f"{dev.type} is not known to have native bf16 matmuls"


def last_level_cache_bytes() -> int:
    """Size of the CPU's largest cache (sysfs), or DEFAULT_CACHE_BYTES when it cannot be read."""
    best = 0
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (entry / "size").read_text().strip().upper()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        try:
            best = max(best, int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
        except (ValueError, IndexError):
            continue
    return best or DEFAULT_CACHE_BYTES


def available_memory_bytes(device: torch.device | str) -> int | None:
    """Memory available now on ``device``: free GPU memory for CUDA, else MemAvailable of
    /proc/meminfo (free pages where that cannot be read); None when unknown."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_budget(device: torch.device | str) -> tuple[int | None, str]:
    """(bytes, how it was found): :data:`MEMORY_FRACTION` of :func:`available_memory_bytes`."""
    dev = torch.device(device)
    what = "free GPU memory" if dev.type == "cuda" else "available RAM"
    available = available_memory_bytes(dev)
    if available is None:
        return None, f"{what} unknown"
    return int(MEMORY_FRACTION * available), f"{MEMORY_FRACTION:.0%} of the {_gib(available)} of {what}"


_ST_ITEMSIZE = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2}


def fp32_weight_bytes(files: Iterable[str | os.PathLike]) -> int:
    """Bytes the weights of these safetensors files take in fp32, read from their headers (no
    tensor is loaded): floating-point tensors count 4 bytes per element, others their own size.
    A file whose header cannot be read counts twice its size (a bf16 checkpoint)."""
    total = 0
    for path in files:
        try:
            with open(path, "rb") as handle:
                (n,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(n))
        except (OSError, ValueError, struct.error):
            total += 2 * os.path.getsize(path)
            continue
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype = str(entry.get("dtype", "F32"))
            size = 4 if dtype.startswith(("F", "BF")) else _ST_ITEMSIZE.get(dtype, 1)
            total += size * math.prod(entry.get("shape", ()))
    return total


def checkpoint_fp32_bytes(folder: str | os.PathLike) -> int | None:
    """:func:`fp32_weight_bytes` of a checkpoint folder's ``*.safetensors`` (adapters left out);
    None when the folder has none."""
    files = sorted(p for p in Path(folder).glob("*.safetensors") if not p.name.startswith("adapter_"))
    return fp32_weight_bytes(files) if files else None


class ResolvedDtype(NamedTuple):
    """A compute dtype chosen for a device, with the reason (printed and recorded in the store)."""

    name: str
    """One of ``vocab.COMPUTE_DTYPES``."""
    reason: str
    """One line: why this dtype, on this device."""


def resolve_compute_dtype(requested: str, device: torch.device | str, weight_bytes: int | None,
                          memory_budget_bytes: int | None = None) -> ResolvedDtype:  # fmt: skip
    """The compute dtype to run a model in: ``requested`` itself, or for ``auto`` the fastest one
    that fits (module docstring). ``weight_bytes``: the weights' size in fp32 (None = unknown,
    taken to fit); ``memory_budget_bytes``: None = :func:`default_memory_budget`. Logs a one-line
    warning when the choice is bf16 on a device that only emulates it."""
    if requested in vocab.COMPUTE_DTYPES:
        return ResolvedDtype(requested, f"{requested} requested")
    if requested != vocab.AUTO:
        raise LayerprobeError(f"dtype {requested!r} not understood; use one of {', '.join(vocab.EXTRACT_DTYPES)}")
    dev = torch.device(device)
    verdict = _bf16_verdict(dev)
    if native_bf16(dev):
        return ResolvedDtype(vocab.BFLOAT16, f"auto: {verdict}")
    if memory_budget_bytes is None:
        budget, budget_text = default_memory_budget(dev)
    else:
        budget, budget_text = memory_budget_bytes, "the memory budget given"
    if weight_bytes is None:
        return ResolvedDtype(vocab.FLOAT32, f"auto: {verdict}; weight size unknown, float32 assumed to fit")
    if budget is None or weight_bytes <= budget:
        return ResolvedDtype(vocab.FLOAT32, f"auto: {verdict}; the float32 weights ({_gib(weight_bytes)}) fit the memory budget ({budget_text})")
    reason = (f"auto: {verdict}, but the float32 weights ({_gib(weight_bytes)}) exceed the memory budget "
              f"({_gib(budget)}, {budget_text}); bfloat16 halves them but runs emulated, several times slower")  # fmt: skip
    log.warning("warning: compute dtype bfloat16 will be slow here: %s", reason.removeprefix("auto: "))
    return ResolvedDtype(vocab.BFLOAT16, reason)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def free_cores() -> tuple[int, int]:
    """(cores this process may use, of them free now): the CPU affinity set, less the cores other
    work keeps busy (:func:`busy_cores`, rounded; at least one core is free)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return usable, max(1, min(usable, usable - int(busy_cores() + 0.5)))


def busy_cores(samples: int = 8, interval_s: float = 0.0005) -> float:
    """How many cores other work keeps busy now.

    Linux: the median of ``samples`` reads of ``/proc/stat``'s ``procs_running`` (runnable threads,
    machine-wide), ``interval_s`` apart, less this process's own runnable threads (the caller, and
    torch's OpenMP workers, which spin for a while after each parallel op: counted as neighbours, they
    made a sweep right after other torch work take one of two idle cores for busy). Unlike the
    1-minute load average it does not count this process's own past work, which made a benchmark or
    a notebook busy for a minute take itself for a neighbour and halve its threads on an idle 2-core
    machine. Elsewhere: the 1-minute load average. Both count the whole machine (or VM), not a
    container.
    """
    counts = []
    for _ in range(samples):
        running = _procs_running()
        if running is None:
            break
        counts.append(running - _own_running())
        time.sleep(interval_s)
    if counts:
        return max(0.0, float(statistics.median(counts)))
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _own_running() -> int:
    """Threads of this process in state R now, the caller among them (at least 1)."""
    n = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        state = stat[stat.rfind(b")") + 2 :][:1]  # the field after "(comm)", which may hold spaces
        n += state == b"R"
    return max(1, n)


def _procs_running() -> int | None:
    """``procs_running`` of ``/proc/stat``, or None where there is no such file or line."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def choose_threads(step_flops: float, requested: int | None = None) -> tuple[int, str]:
    """(torch threads, reason) for work of ``step_flops`` matmul FLOP per step: ``requested`` when
    given, else one thread per :data:`FLOPS_PER_THREAD` of work, at most the cores free."""
    if requested is not None:
        return requested, f"{requested} requested"
    usable, free = free_cores()
    by_work = max(1, int(step_flops // FLOPS_PER_THREAD))
    n = min(free, by_work)
    return n, f"{step_flops / 1e6:.0f} MFLOP per step, {free} of {usable} cores free"


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(n)``; the previous count is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)
