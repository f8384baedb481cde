"""``--dtype auto``: resolved before the model loads, printed, recorded in the store; resume compares
the resolved dtype. The CPU's bf16 capability is patched both ways, so these hold on every CPU kind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from layerprobe import hardware, vocab
from layerprobe.errors import LayerprobeError
from layerprobe.extract.config import ExtractConfig
from layerprobe.extract.runner import run_extract
from layerprobe.store import open_store
from layerprobe.testing.images import CANDIDATES, INSTRUCTION, make_dataset


@pytest.fixture(scope="module")
def llava(tiny_checkpoint) -> Path:
    return tiny_checkpoint("llava")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("auto-images") / "us", n_per_class=2, size=32)


@pytest.fixture
def cpu_kind(monkeypatch):
    def patch(native: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)

    return patch


def _cfg(model: Path, images: Path, out: Path, **kw) -> ExtractConfig:
    base = dict(model=str(model), dataset=str(images), out=out, prompt=INSTRUCTION, candidates=CANDIDATES, batch_size=2,
                chunk_samples=2, num_workers=0, progress=False, device="cpu")  # fmt: skip
    return ExtractConfig(**{**base, **kw})


def test_auto_is_the_default_and_leaves_the_torch_dtype_to_the_runner(tmp_path) -> None:
    cfg = ExtractConfig(model="m", dataset="d", out=tmp_path / "o.zarr")
    assert cfg.dtype == vocab.AUTO and cfg.torch_dtype is None


@pytest.mark.parametrize("native, expected, words", [(True, vocab.BFLOAT16, "AMX"), (False, vocab.FLOAT32, "fit the memory budget")])
def test_the_store_records_the_resolved_dtype_and_the_reason(llava, images, tmp_path, cpu_kind, capsys, native, expected, words) -> None:
    cpu_kind(native)
    out = run_extract(_cfg(llava, images, tmp_path / "a.zarr", progress=True, limit=2))
    meta = open_store(out).meta
    assert meta.compute_dtype == expected
    assert words in meta.extra["compute_dtype_reason"] and meta.extra["compute_dtype_reason"].startswith("auto: ")
    assert f"compute dtype {expected} (auto: " in capsys.readouterr().err


def test_the_weights_are_sized_before_loading_and_a_small_budget_gives_bf16(llava, images, tmp_path, cpu_kind, monkeypatch) -> None:
    cpu_kind(False)
    monkeypatch.setattr(hardware, "available_memory_bytes", lambda device: 1000)  # far below the checkpoint's fp32 size
    out = run_extract(_cfg(llava, images, tmp_path / "b.zarr", limit=2))
    meta = open_store(out).meta
    assert meta.compute_dtype == vocab.BFLOAT16 and "exceed the memory budget" in meta.extra["compute_dtype_reason"]


def test_resume_with_auto_compares_the_resolved_dtype(llava, images, tmp_path, cpu_kind) -> None:
    out = tmp_path / "fp32.zarr"
    run_extract(_cfg(llava, images, out, dtype=vocab.FLOAT32, shard=(0, 2)))  # half the blocks
    assert not open_store(out).committed.all()
    cpu_kind(True)  # auto -> bfloat16: another run
    with pytest.raises(LayerprobeError, match="compute_dtype") as info:
        run_extract(_cfg(llava, images, out))
    assert "\n" not in str(info.value)
    cpu_kind(False)  # auto -> float32: the same run, resumed
    run_extract(_cfg(llava, images, out))
    store = open_store(out)
    assert store.committed.all() and store.meta.compute_dtype == vocab.FLOAT32
    assert store.meta.extra["compute_dtype_reason"] == "float32 requested"  # the store keeps its creator's record


def test_a_model_passed_in_keeps_its_dtype_under_auto(llava, images, tmp_path, cpu_kind) -> None:
    from layerprobe.extract.model.loading import load_model

    cpu_kind(True)
    loaded = load_model(llava, dtype="float32")
    out = run_extract(_cfg(llava, images, tmp_path / "c.zarr", limit=2), loaded=loaded)
    assert open_store(out).meta.compute_dtype == vocab.FLOAT32


def test_extract_help_documents_auto() -> None:
    from layerprobe.cli.extract_cmd import extract

    text = CliRunner().invoke(extract, ["--help"]).output
    assert "auto" in text and "native bf16" in text and "[default: auto]" in text
