"""bfloat16 without a bfloat16 dtype: activations live on disk as their exact uint16 bit patterns.

zarr-python has no bfloat16 data type, so site arrays are ``uint16`` with the array attribute
``"layerprobe_dtype": "bfloat16"``. Reinterpreting the bits is free in both directions
(``tensor.view(torch.uint16)`` / ``torch.from_numpy(bits).view(torch.bfloat16)``), so a round trip is
bit-exact, NaN payloads and signed zeros included. torch is imported lazily: readers that only need
numpy (``verify``, ``info``) never pay for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerprobe.errors import StoreError

_EXP_MASK = 0x7F80
_ABS_MASK = 0x7FFF


def to_bits(x: Any, what: str) -> np.ndarray:
    """bfloat16 data as a uint16 numpy array (a view where possible; CUDA tensors are copied to CPU).

    Accepts a ``torch.bfloat16`` tensor, a ``uint16`` array of bits, or an ``ml_dtypes.bfloat16``
    array; anything else is refused (``what`` names the argument in the error).
    """
    if type(x).__module__.startswith("torch"):
        import torch

        if x.dtype != torch.bfloat16:
            raise StoreError(f"{what} has dtype {x.dtype}; pass torch.bfloat16 activations (or their uint16 bits)")
        return x.detach().view(torch.uint16).cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == np.uint16:
        return arr
    if arr.dtype.name == "bfloat16":  # ml_dtypes.bfloat16
        return arr.view(np.uint16)
    raise StoreError(f"{what} has dtype {arr.dtype}; pass torch.bfloat16 activations (or their uint16 bits)")


def from_float(x: Any) -> np.ndarray:
    """Round float data to bfloat16 (nearest even, as torch does) and return the bits."""
    import ml_dtypes

    return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bits (exact). Single-threaded numpy: on a busy 2-core machine
    torch's two-thread conversion stalled at 8 ms per 4 MB slab, this takes 0.4 ms."""
    import ml_dtypes

    return bits.view(ml_dtypes.bfloat16).astype(np.float32)


def bits_to_torch(bits: np.ndarray) -> Any:
    """A ``torch.bfloat16`` tensor sharing memory with the uint16 array ``bits``."""
    import torch

    return torch.from_numpy(bits).view(torch.bfloat16)


def count_nonfinite(bits: np.ndarray) -> tuple[int, int]:
    """``(n_nan, n_inf)`` among bfloat16 values given as uint16 bits."""
    magnitude = bits & np.uint16(_ABS_MASK)
    n_inf = int(np.count_nonzero(magnitude == _EXP_MASK))
    n_nan = int(np.count_nonzero(magnitude > _EXP_MASK))
    return n_nan, n_inf
