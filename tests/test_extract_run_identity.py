"""The extractor's two identity checks use the store's comparator (store/identity.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from layerprobe.errors import ExtractError
from layerprobe.extract.runner import _check_loaded


def _cfg(**change):
    return SimpleNamespace(**{"model": "org/model", "adapter": None, "dtype": "bfloat16", "revision": None, **change})


def _loaded(**change):
    return SimpleNamespace(**{"model_id": "org/model", "adapter": None, "compute_dtype": "bfloat16", "model_revision": None, **change})


def test_a_loaded_model_that_matches_the_config_passes():
    _check_loaded(_loaded(adapter="lora"), _cfg(adapter="lora"))


@pytest.mark.parametrize("field, loaded, cfg", [
    ("model_id", {"model_id": "other"}, {}),
    ("adapter", {}, {"adapter": "lora"}),
    ("compute_dtype", {"compute_dtype": "float32"}, {}),
    ("model_revision", {}, {"revision": "abc"}),
])
def test_a_loaded_model_of_another_run_is_refused_naming_the_field(field, loaded, cfg):
    with pytest.raises(ExtractError, match=f"the loaded model has {field}=") as info:
        _check_loaded(_loaded(**loaded), _cfg(**cfg))
    assert "\n" not in str(info.value) and "load the model the config names" in str(info.value)
