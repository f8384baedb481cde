"""What the device does well, decided once per sweep and recorded with the results.

- Native bf16 matmuls: CUDA devices that support bf16; CPUs with AMX or AVX512-BF16 (torch
  reports both). Elsewhere bf16 is emulated and slower than fp32.
- Last-level cache size (Linux sysfs; 32 MiB when unknown): small-batch probe training is bound
  by the optimizer's memory traffic, and a group whose weights and moments stay in this cache runs
  at cache bandwidth instead of DRAM bandwidth (docs/LOG.md, "probe").
"""

from __future__ import annotations

from pathlib import Path

import torch

DEFAULT_CACHE_BYTES = 32 << 20


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` has native bf16 matmuls."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


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
