"""The tiny-builder registry (``layerprobe.testing``) against the adapter registry: one builder per
family, the variant mapping explicit, checkpoints that say the family their builder registered."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from layerprobe.extract import supported_families
from layerprobe.testing import TINY_FAMILIES, build_tiny, tiny_builders, tiny_families


def test_every_adapter_family_has_a_tiny_builder_and_every_builder_an_adapter():
    adapters = set(supported_families())
    built = {b.model_type for b in tiny_builders().values()}
    assert not adapters - built, f"adapter families without a tiny builder: {sorted(adapters - built)}"
    assert not built - adapters, f"tiny builders whose model_type has no adapter: {sorted(built - adapters)}"


def test_variants_name_their_adapter_family_and_the_list_reads_the_registry():
    builders = tiny_builders()
    assert builders["llava_siglip"].model_type == "llava"
    assert all(b.family == family for family, b in builders.items())
    assert {f for f, b in builders.items() if b.model_type != f} == {"llava_siglip"}
    assert tiny_families() == tuple(sorted(builders)) == TINY_FAMILIES


@pytest.mark.parametrize("family", tiny_families())
def test_a_checkpoint_is_of_the_model_type_its_builder_registered(family, tiny_checkpoint):
    config = json.loads((tiny_checkpoint(family) / "config.json").read_text())
    assert config["model_type"] == tiny_builders()[family].model_type
    marker = json.loads((tiny_checkpoint(family) / "layerprobe_tiny.json").read_text())
    assert marker["family"] == family and marker["dtype"] == "bfloat16"


def test_the_same_seed_builds_the_same_bytes(tmp_path):
    size = {"hidden": 64, "n_layers": 1, "vision_layers": 1, "image_size": 28}
    first, second = build_tiny("paligemma", tmp_path / "a", **size), build_tiny("paligemma", tmp_path / "b", **size)
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) and "model.safetensors" in names
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    other = build_tiny("paligemma", tmp_path / "a", **size, seed=1)
    assert (other / "model.safetensors").read_bytes() != (first / "model.safetensors").read_bytes()


def test_importing_the_fixtures_and_listing_families_loads_no_torch():
    code = (
        "import sys, layerprobe.testing as t; t.tiny_families(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
