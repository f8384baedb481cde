"""``--device``: one parser for extract and probe; devices other than CPU and CUDA are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from layerprobe.devices import parse_device
from layerprobe.errors import ProbeError
from layerprobe.testing.stores import synthetic_run, write_synthetic_store

UNSUPPORTED = ["mps", "meta", "xpu:0"]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("dev") / "s.zarr", synthetic_run(24, {"vision/mean": (1, 4)}))


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_parse_device_refuses_devices_other_than_cpu_and_cuda(name: str) -> None:
    with pytest.raises(ProbeError, match=f"device '{name}': layerprobe runs on CPU or CUDA devices only.*use auto, cpu, cuda or cuda:N"):
        parse_device(name, ProbeError)
    assert parse_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_parse_device_refuses_a_cuda_index_beyond_the_machine() -> None:
    with pytest.raises(ProbeError, match="CUDA device"):
        parse_device(f"cuda:{torch.cuda.device_count()}", ProbeError)


@pytest.mark.parametrize("command", ["extract", "probe"])
@pytest.mark.parametrize("name", ["mps", "meta"])
def test_cli_device_errors_are_one_line(command: str, name: str, store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from layerprobe.cli import main

    if command == "probe":
        args = ["probe", str(store_path), "--out", str(tmp_path / "r.parquet"), "--device", name, "--no-progress"]
    else:  # the device is checked with the config, before the model or the data are looked at
        args = ["extract", "--model", str(tmp_path / "model"), "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "s.zarr"), "--device", name]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1, err
    assert err.startswith(f"error: device '{name}'") and "cpu, cuda" in err and "\n" not in err
    assert not (tmp_path / "r.parquet").exists()
