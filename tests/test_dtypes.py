"""The one map between compute dtype names and torch dtypes (layerprobe.dtypes)."""

import pytest
import torch

from layerprobe import vocab
from layerprobe.dtypes import compute_dtype, dtype_name
from layerprobe.errors import LayerprobeError


def test_every_compute_dtype_name_round_trips():
    for name in vocab.COMPUTE_DTYPES:
        assert isinstance(compute_dtype(name), torch.dtype)
        assert dtype_name(compute_dtype(name)) == name
    assert dtype_name(torch.bfloat16) == vocab.BFLOAT16 and dtype_name(torch.float32) == vocab.FLOAT32


def test_unknown_names_and_dtypes_are_one_line_errors():
    with pytest.raises(LayerprobeError, match="'int8' is not supported; use one of"):
        compute_dtype("int8")
    with pytest.raises(LayerprobeError, match="not a compute dtype"):
        dtype_name(torch.int64)
