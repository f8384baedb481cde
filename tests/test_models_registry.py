"""The study's model registry and `layerprobe models`."""

from __future__ import annotations

import json

from click.testing import CliRunner

from layerprobe.cli import _register, cli
from layerprobe.extract.model.model_registry import MODELS, find_model


def test_registry_covers_the_paper() -> None:
    medical = [m for m in MODELS if m.medical]
    assert len(medical) == 14 and len(MODELS) == 16
    assert len({m.hub_id for m in MODELS}) == 16
    assert find_model("medgemma-4b").hub_id == "google/medgemma-4b-it"
    assert find_model("Qwen/Qwen2.5-VL-7B-Instruct").model_type == "qwen2_5_vl"
    assert find_model("nope") is None


def test_models_command_reports_status() -> None:
    _register()
    res = CliRunner().invoke(cli, ["models", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    status = {r["name"]: r["status"] for r in rows}
    assert status["MedGemma-4B"] == "supported"
    assert status["Lingshu-7B"] == "supported"
    assert status["Hulu-Med-7B"].startswith("needs")
    table = CliRunner().invoke(cli, ["models"])
    assert table.exit_code == 0 and "MedVLM-R1" in table.output
