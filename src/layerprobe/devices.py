"""One way to turn a ``--device`` string into a torch device, for extract and probe alike.

Only CPU and CUDA devices are supported: torch knows others (``mps``, ``meta``, ``xpu``...), but
extraction and the probe engine are written and tested for these two, and a ``meta`` tensor has no
values at all, so anything else is refused here with one line instead of failing mid-run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerprobe.errors import LayerprobeError

if TYPE_CHECKING:
    import torch

SUPPORTED = "auto, cpu, cuda or cuda:N"
"""What a ``--device`` may be, as messages spell it."""


def parse_device(name: str, error: type[LayerprobeError] = LayerprobeError) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; ``error`` names
    the caller's error type, so a bad, unsupported or unavailable device is that one-line error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise error(f"device {name!r} is not a torch device; use {SUPPORTED}") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise error(f"device {name!r}: layerprobe runs on CPU or CUDA devices only, not {device.type}; use {SUPPORTED}")
    if not torch.cuda.is_available():
        raise error(f"device {name!r} asked for but CUDA is not available here; use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise error(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 ...); pick one of them")
    return device
