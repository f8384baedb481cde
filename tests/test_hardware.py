"""layerprobe.hardware: native-bf16 detection, the ``auto`` compute dtype, thread sizing.

Every capability check is patched both ways, so these tests mean the same on a CPU with AMX or
AVX512-BF16, on one without (AMD EPYC), and on a GPU machine.
"""

from __future__ import annotations

import logging
import os

import pytest
import torch

from layerprobe import hardware, vocab
from layerprobe.errors import LayerprobeError
from layerprobe.hardware import ResolvedDtype, choose_threads, native_bf16, resolve_compute_dtype, torch_threads

GIB = 1 << 30


@pytest.fixture
def cpu_kind(monkeypatch):
    """``cpu_kind(amx=..., avx512_bf16=...)`` patches what torch reports about the CPU."""

    def patch(amx: bool = False, avx512_bf16: bool = False) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)

    return patch


@pytest.fixture
def gpu_capability(monkeypatch):
    """``gpu_capability((major, minor))`` patches the CUDA device's compute capability."""

    def patch(capability: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)

    return patch


@pytest.mark.parametrize("amx, avx512_bf16, native", [(False, False, False), (True, False, True), (False, True, True), (True, True, True)])
def test_cpu_native_bf16_follows_amx_and_avx512_bf16(cpu_kind, amx, avx512_bf16, native) -> None:
    cpu_kind(amx=amx, avx512_bf16=avx512_bf16)
    assert native_bf16("cpu") is native


@pytest.mark.parametrize("capability, native", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_cuda_native_bf16_needs_capability_8(gpu_capability, capability, native) -> None:
    gpu_capability(capability)
    assert native_bf16("cuda") is native and native_bf16(torch.device("cuda:0")) is native


def test_auto_is_bf16_where_native_on_cpu_and_cuda(cpu_kind, gpu_capability) -> None:
    cpu_kind(amx=True)
    got = resolve_compute_dtype(vocab.AUTO, "cpu", weight_bytes=100 * GIB, memory_budget_bytes=GIB)
    assert got.name == vocab.BFLOAT16 and "AMX" in got.reason
    cpu_kind(avx512_bf16=True)
    assert "AVX512-BF16" in resolve_compute_dtype(vocab.AUTO, "cpu", None).reason
    gpu_capability((8, 0))
    assert resolve_compute_dtype(vocab.AUTO, "cuda", weight_bytes=GIB, memory_budget_bytes=2 * GIB).name == vocab.BFLOAT16


def test_auto_is_float32_without_native_bf16_when_the_weights_fit(cpu_kind, gpu_capability) -> None:
    cpu_kind()
    got = resolve_compute_dtype(vocab.AUTO, "cpu", weight_bytes=GIB, memory_budget_bytes=2 * GIB)
    assert got == ResolvedDtype(vocab.FLOAT32, got.reason)
    assert "neither AMX nor AVX512-BF16" in got.reason and "fit the memory budget" in got.reason
    gpu_capability((7, 0))
    assert resolve_compute_dtype(vocab.AUTO, "cuda", weight_bytes=GIB, memory_budget_bytes=2 * GIB).name == vocab.FLOAT32


def test_auto_falls_back_to_bf16_with_a_one_line_warning_when_the_budget_is_too_small(cpu_kind, caplog) -> None:
    cpu_kind()
    with caplog.at_level(logging.WARNING, logger="layerprobe.hardware"):
        got = resolve_compute_dtype(vocab.AUTO, "cpu", weight_bytes=28 * GIB, memory_budget_bytes=12 * GIB)
    assert got.name == vocab.BFLOAT16
    assert "exceed the memory budget" in got.reason and "emulated" in got.reason
    (record,) = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING and "\n" not in message
    assert "slow" in message and "28.0 GiB" in message and "emulated" in message


def test_default_budget_is_half_the_available_memory(cpu_kind, monkeypatch, caplog) -> None:
    cpu_kind()
    monkeypatch.setattr(hardware, "available_memory_bytes", lambda device: 10 * GIB)
    assert hardware.default_memory_budget("cpu") == (5 * GIB, "50% of the 10.0 GiB of available RAM")
    assert resolve_compute_dtype(vocab.AUTO, "cpu", weight_bytes=4 * GIB).name == vocab.FLOAT32
    with caplog.at_level(logging.WARNING):
        assert resolve_compute_dtype(vocab.AUTO, "cpu", weight_bytes=6 * GIB).name == vocab.BFLOAT16
    assert "available RAM" in caplog.records[0].getMessage()


def test_explicit_dtypes_are_kept_and_unknown_ones_refused(cpu_kind) -> None:
    cpu_kind()
    for name in vocab.COMPUTE_DTYPES:
        assert resolve_compute_dtype(name, "cpu", weight_bytes=100 * GIB, memory_budget_bytes=1) == ResolvedDtype(name, f"{name} requested")
    with pytest.raises(LayerprobeError, match="int8.*auto"):
        resolve_compute_dtype("int8", "cpu", None)


def test_available_memory_is_read_on_this_machine() -> None:
    available = hardware.available_memory_bytes("cpu")
    assert available is None or available > 0


def test_fp32_weight_bytes_come_from_the_safetensors_headers(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(10, 100, dtype=torch.bfloat16), "b": torch.zeros(7, dtype=torch.float32), "i": torch.zeros(3, dtype=torch.int64)}, tmp_path / "model.safetensors")
    save_file({"lora": torch.zeros(1000)}, tmp_path / "adapter_model.safetensors")
    assert hardware.checkpoint_fp32_bytes(tmp_path) == 4 * 1000 + 4 * 7 + 8 * 3
    (tmp_path / "broken.safetensors").write_bytes(b"xx")
    assert hardware.checkpoint_fp32_bytes(tmp_path) == 4 * 1000 + 4 * 7 + 8 * 3 + 2 * 2
    assert hardware.checkpoint_fp32_bytes(tmp_path / "nothing-here") is None


@pytest.fixture
def machine(monkeypatch):
    """``machine(cores, load)`` patches the affinity set and the cores other work keeps busy."""

    def patch(cores: int, load: float) -> None:
        monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: set(range(cores)))
        monkeypatch.setattr(hardware, "busy_cores", lambda: load)

    return patch


@pytest.mark.parametrize("cores, load, step_flops, expected", [
    (2, 0.0, 1e5, 1),        # a tiny step: one thread even on an idle machine
    (2, 0.0, 1e12, 2),       # a large step on an idle machine: every core
    (2, 1.2, 1e12, 1),       # busy 2-core machine: the one core free
    (16, 3.0, 1e12, 13),     # cores free = cores - load
    (16, 0.0, 5e7, 2),       # work bounds the count: 50 MFLOP = 2 threads' worth
    (4, 9.0, 1e12, 1),       # overloaded: still one thread
])  # fmt: skip
def test_thread_choice_follows_work_and_free_cores(machine, cores, load, step_flops, expected) -> None:
    machine(cores, load)
    n, reason = choose_threads(step_flops)
    assert n == expected and f"of {cores} cores free" in reason


def test_busy_cores_counts_other_runnable_threads_not_this_process_past(monkeypatch) -> None:
    reads = iter([3, 1, 2, 2, 9])  # procs_running samples, the calling thread included
    monkeypatch.setattr(hardware, "_procs_running", lambda: next(reads))
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (1.9, 1.0, 1.0))  # our own last minute: ignored
    assert hardware.busy_cores(samples=5, interval_s=0) == 1.0  # median 2, less this thread
    monkeypatch.setattr(hardware, "_procs_running", lambda: 1)
    assert hardware.busy_cores(samples=3, interval_s=0) == 0.0
    monkeypatch.setattr(hardware, "_procs_running", lambda: None)  # no /proc/stat: the load average
    assert hardware.busy_cores(samples=3, interval_s=0) == 1.9


def test_busy_cores_leaves_out_this_process_own_runnable_threads(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "_procs_running", lambda: 3)
    monkeypatch.setattr(hardware, "_own_running", lambda: 2)  # the caller and a spinning OpenMP worker
    assert hardware.busy_cores(samples=3, interval_s=0) == 1.0


def test_own_running_counts_the_calling_thread() -> None:
    assert 1 <= hardware._own_running() <= len(os.listdir("/proc/self/task"))


def test_procs_running_reads_this_machine() -> None:
    running = hardware._procs_running()
    assert running is None or running >= 1  # None off Linux; at least the calling thread on Linux


def test_requested_threads_win(machine) -> None:
    machine(2, 5.0)
    assert choose_threads(1e3, requested=3) == (3, "3 requested")


def test_torch_threads_restores_the_count_even_after_an_error() -> None:
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with pytest.raises(RuntimeError):
        with torch_threads(target):
            assert torch.get_num_threads() == target
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
