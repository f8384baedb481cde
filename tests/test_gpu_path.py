"""The GPU path: what the `gpu` extra lists, bf16 probes on capable GPUs, slabs read to CUDA.

The CPU tests patch the device checks; the ``gpu``-marked ones run only where CUDA is present
(``benchmarks/gpu_check.py`` runs them with the rest of the GPU checks).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
import torch

from layerprobe import vocab
from layerprobe.probe.engine import BF16_MIN_BATCH, matmul_dtype

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_level_modules() -> set[str]:
    found = set()
    for path in (ROOT / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_the_gpu_extra_lists_only_what_the_code_imports() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    imported = _imported_top_level_modules()
    for requirement in extras.get("gpu", []):
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        module = name.split("-")[0].replace("-", "_").lower()
        assert module in imported, f"the gpu extra lists {requirement} but nothing in src/ imports {module}"


@pytest.mark.parametrize("capability, expected", [((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16), ((7, 5), torch.float32)])
def test_probes_use_bf16_on_gpus_that_support_it(monkeypatch, capability, expected) -> None:
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    dtype, reason = matmul_dtype("cuda", 256)
    assert dtype == expected and "cuda" in reason
    assert matmul_dtype("cuda", BF16_MIN_BATCH - 1)[0] == torch.float32  # the paper preset's batch 4: memory-bound


@pytest.mark.gpu
def test_slabs_read_to_cuda_equal_the_cpu_read(tmp_path) -> None:
    from layerprobe.store import open_store
    from layerprobe.testing.stores import synthetic_run, write_synthetic_store

    path = write_synthetic_store(tmp_path / "s.zarr", synthetic_run(40, {"llm/image_mean": (3, 32)}))
    store = open_store(path)
    for dtype in ("float32", "bfloat16"):
        on_cpu = store.read_slabs("llm/image_mean", [0, 2], dtype=dtype)
        on_gpu = store.read_slabs("llm/image_mean", [0, 2], dtype=dtype, device="cuda")
        assert on_gpu.device.type == "cuda" and on_gpu.dtype == on_cpu.dtype
        assert torch.equal(on_gpu.cpu(), on_cpu)


@pytest.mark.gpu
def test_a_fast_sweep_on_cuda_uses_bf16_where_native_and_scores_like_the_cpu(tmp_path) -> None:
    import polars as pl

    from layerprobe.hardware import native_bf16
    from layerprobe.probe.config import SweepConfig
    from layerprobe.probe.sweep import sweep_stores
    from layerprobe.testing.stores import synthetic_store

    store = synthetic_store(400, 256, {"llm/image_mean": 4}, peak=1.5)
    frames = {
        device: sweep_stores(SweepConfig(stores=(Path("m.zarr"),), preset=vocab.PRESET_FAST, kinds=(vocab.MLP,), device=device, progress=False), [store])
        for device in ("cpu", "cuda")
    }  # fmt: skip
    rows = {d: f.filter(pl.col("kind") == vocab.MLP) for d, f in frames.items()}
    expected = vocab.BFLOAT16 if native_bf16("cuda") else vocab.FLOAT32
    assert set(rows["cuda"].get_column("matmul_dtype")) == {expected}
    gap = (rows["cuda"].get_column("test_accuracy") - rows["cpu"].get_column("test_accuracy")).abs().mean()
    assert gap <= 0.05, gap
