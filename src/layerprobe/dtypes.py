"""Compute dtypes: the one map between a dtype's name (what stores and results tables record) and the torch dtype.

The names are :data:`layerprobe.vocab.COMPUTE_DTYPES`. A run's config turns its name into the torch
dtype once; below that only the torch dtype travels, and :func:`dtype_name` gives the name back
for the record (extraction and fine-tuning compute dtypes, the probes' matmul dtype).
"""

from __future__ import annotations

import torch

from layerprobe import vocab
from layerprobe.errors import ExtractError


_BY_NAME: dict[str, torch.dtype] = {name: getattr(torch, name) for name in vocab.COMPUTE_DTYPES}


def compute_dtype(name: str) -> torch.dtype:
    """The torch dtype of a compute dtype ``name`` (``bfloat16``...); any other name is an ExtractError (the dtype a model is loaded in)."""
    found = _BY_NAME.get(name) if isinstance(name, str) else None
    if found is None:
        raise ExtractError(f"dtype {name!r} is not supported; use one of {', '.join(vocab.COMPUTE_DTYPES)}")
    return found


def dtype_name(dtype: torch.dtype) -> str:
    """The recorded name of a compute torch dtype; any other dtype is an ExtractError."""
    for name, value in _BY_NAME.items():
        if value == dtype:
            return name
    raise ExtractError(f"dtype {dtype} is not a compute dtype; use one of {', '.join(vocab.COMPUTE_DTYPES)}")
