"""One way to turn a ``--device`` string into a torch device, for extract and probe alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerprobe.errors import LayerprobeError

if TYPE_CHECKING:
    import torch


def parse_device(name: str, error: type[LayerprobeError] = LayerprobeError) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; ``error`` names
    the caller's error type, so a bad or unavailable device is that one-line error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise error(f"device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise error(f"device {name!r} asked for but CUDA is not available here; use --device cpu")
    return device
