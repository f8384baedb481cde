"""Strings become values once, at the edge: the configs hold a torch.device and parsed layer selections."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from test_fhs_profile import HAND_RUN, make_results
from test_probe_sweep import make_store

from layerprobe import vocab
from layerprobe.errors import LayerprobeError, ProbeError
from layerprobe.fhs import FHSConfig, profile_runs
from layerprobe.layers import LayerSelection
from layerprobe.probe.config import SweepConfig
from layerprobe.probe.sweep import run_sweep
from layerprobe.testing.stores import synthetic_labels


def test_sweep_config_holds_values() -> None:
    cfg = SweepConfig(stores=("a.zarr",), layers="0,-1", device="cpu")
    assert cfg.device == torch.device("cpu") and isinstance(cfg.layers, LayerSelection)
    assert cfg.layers.spec == "0,-1" and cfg.layers.resolve(5) == (0, 4)
    assert SweepConfig(stores=("a.zarr",), device=cfg.device, layers=cfg.layers) == cfg  # values pass through as they are
    with pytest.raises(ProbeError, match="layer selection 'x' is not understood"):
        SweepConfig(stores=("a.zarr",), layers="x")
    with pytest.raises(ProbeError, match="device 'nonsense' is not a torch device"):
        SweepConfig(stores=("a.zarr",), device="nonsense")


def test_two_stores_of_one_run_are_refused(tmp_path: Path) -> None:
    first = make_store(tmp_path / "a.zarr", synthetic_labels(40, 2, seed=0))
    copy = Path(shutil.copytree(first, tmp_path / "copy.zarr"))
    with pytest.raises(ProbeError, match="hold the same run .*probe one of them") as err:
        run_sweep(SweepConfig(stores=(first, copy), kinds=(vocab.LINEAR,), layers="-1", progress=False))
    assert "\n" not in str(err.value)


def test_fhs_config_refuses_a_misspelt_site_and_parses_layers_once() -> None:
    with pytest.raises(LayerprobeError, match="llm_site='llm/imagemean' is not supported"):
        FHSConfig(llm_site="llm/imagemean")
    config = FHSConfig(llm_layers="2:")
    assert config.module_layers("L_alt") is config.module_layers("L") and config.module_layers("L").resolve(6) == (2, 3, 4, 5)
    assert config.as_dict()["llm_layers"] == "2:" and "_selections" not in config.as_dict()
    assert config == FHSConfig(llm_layers="2:") and hash(config) == hash(FHSConfig(llm_layers="2:"))
    with pytest.raises(LayerprobeError, match="layer slice '1:2:3:4' has too many"):
        FHSConfig(vision_layers="1:2:3:4")
    assert profile_runs(make_results([HAND_RUN]), config)[0].llm.layers[0] == 2


def test_fhs_cli_offers_the_vocab_sites(tmp_path: Path) -> None:
    from layerprobe.cli.fhs_cmd import fhs

    path = tmp_path / "r.parquet"
    make_results([HAND_RUN]).write_parquet(path)
    res = CliRunner().invoke(fhs, [str(path), "--llm-site", "llm/imagemean"])
    assert res.exit_code == 2 and "llm/imagemean" in res.output
    res = CliRunner().invoke(fhs, [str(path), "--llm-alt-site", "None", "--json"])
    assert res.exit_code == 0, res.output
