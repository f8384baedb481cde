"""The compiled cast-and-update pass (probe/optim.py ``adamw_cast``) against the eager passes it replaces.

Both compute torch's AdamW in fp32; the compiled kernel may contract multiply-adds differently, so
they agree to float rounding, not bit for bit. The engine-level case lowers the size threshold so a
small group takes the compiled path.
"""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest
import torch

from layerprobe.probe import optim
from layerprobe.probe.engine import Stream, train_mlp_group
from layerprobe.probe.optim import BatchedAdamW
from test_probe_engine import SPEC, _features

torch.set_num_threads(1)
needs_compiler = pytest.mark.skipif(shutil.which("g++") is None, reason="no C++ compiler: torch.compile cannot build CPU kernels here")


def _state(seed: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(4, 8, 24, generator=g) * 0.1, torch.randn(4, 1, 8, generator=g) * 0.1]
    return params, torch.tensor([1e-3, 3e-3, 1e-2, 3e-2]), torch.tensor([0.0, 0.01, 0.1, 0.0])


@needs_compiler
@pytest.mark.parametrize("fused", [True, False])
def test_compiled_update_equals_the_eager_passes(fused: bool) -> None:
    runs = {}
    for compiled in (False, True):
        params, lr_p, wd_p = _state(0)
        cast = torch.empty_like(params[0], dtype=torch.bfloat16)
        opt = BatchedAdamW(params, lr_p, wd_p, allow_fused=fused, cast=cast, compile_cast=compiled)
        assert opt.compiled == compiled and torch.equal(cast, params[0].bfloat16())
        g = torch.Generator().manual_seed(1)
        for step in range(6):
            grads = [torch.randn(p.shape, generator=g).to(torch.bfloat16 if i == 0 else torch.float32) for i, p in enumerate(params)]
            opt.step(grads, 0.5 + 0.1 * step)
            assert torch.equal(cast, params[0].bfloat16())  # the copy the GEMMs read is the updated weight
        assert opt.compiled == compiled  # the compiled pass ran every step (it falls back for good on a failure)
        runs[compiled] = [p.clone() for p in params + opt.exp_avg + opt.exp_avg_sq]
    for eager, compiled in zip(runs[False], runs[True]):
        torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=1e-7)


@needs_compiler
def test_a_group_on_the_compiled_path_trains_as_on_the_eager_one(monkeypatch) -> None:
    features = _features(n=120, d=32, n_layers=2).to(torch.bfloat16)
    streams, variants = [Stream(0, 0), Stream(1, 3)], [SPEC, replace(SPEC, lr=1e-2, weight_decay=0.1)]
    eager = train_mlp_group(features, streams, variants, n_classes=3)
    monkeypatch.setattr(optim, "COMPILE_MIN_WEIGHT_STEPS", 0)
    ran = []
    monkeypatch.setattr(optim, "_compiled_update", lambda args, real=optim._compiled_update: ran.append(real(args)) or ran[-1])
    compiled = train_mlp_group(features, streams, variants, n_classes=3)
    assert ran and all(ran)  # every step's first-layer update ran compiled
    torch.testing.assert_close(compiled.test_prob, eager.test_prob, rtol=0, atol=1e-3)
    assert torch.equal(compiled.best_epoch, eager.best_epoch)


def test_the_threshold_keeps_small_probes_and_gpus_eager() -> None:
    assert not optim.compiled_update_pays(torch.device("cpu"), optim.COMPILE_MIN_WEIGHT_STEPS - 1)
    assert optim.compiled_update_pays(torch.device("cpu"), optim.COMPILE_MIN_WEIGHT_STEPS)
    assert not optim.compiled_update_pays(torch.device("cuda"), 1e12)


def test_a_kernel_that_cannot_compile_falls_back_to_the_eager_passes(monkeypatch) -> None:
    """What a machine without a C++ compiler runs: the first call fails before touching any tensor."""
    def no_compiler(*args):  # type: ignore[no-untyped-def]
        raise RuntimeError("InductorError: no working C++ compiler found")

    monkeypatch.setitem(optim._COMPILED, "kernel", no_compiler)
    runs = []
    for compile_cast in (True, False):
        params, lr_p, wd_p = _state(0)
        cast = torch.empty_like(params[0], dtype=torch.bfloat16)
        opt = BatchedAdamW(params, lr_p, wd_p, cast=cast, compile_cast=compile_cast)
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            opt.step([torch.randn(p.shape, generator=g).to(torch.bfloat16 if i == 0 else torch.float32) for i, p in enumerate(params)])
        assert not opt.compiled and torch.equal(cast, params[0].bfloat16())
        runs.append(params)
    for a, b in zip(*runs):
        assert torch.equal(a, b)  # the failed attempt changed nothing: bit-identical to never trying
    assert optim._COMPILED["kernel"] is None  # and the process does not try again


def test_widths_past_the_recompile_limit_take_the_fused_eager_path(monkeypatch) -> None:
    """Past Dynamo's recompile limit a compiled function runs as plain Python (slower than fused)."""
    monkeypatch.setattr(optim, "_SHAPES", {(i, 1) for i in range(getattr(torch._dynamo.config, "recompile_limit", 8) - 1)})
    monkeypatch.setitem(optim._COMPILED, "kernel", lambda *args: pytest.fail("compiled past the limit"))
    params, lr_p, wd_p = _state(0)
    cast = torch.empty_like(params[0], dtype=torch.bfloat16)
    opt = BatchedAdamW(params, lr_p, wd_p, cast=cast, compile_cast=True)
    opt.step([torch.ones_like(params[0], dtype=torch.bfloat16), torch.ones_like(params[1])])
    assert not opt.compiled and torch.equal(cast, params[0].bfloat16())


def test_one_compile_serves_every_group_size_one_probe_included(monkeypatch) -> None:
    """Dynamo specialises a dynamic size of 1: with a probe axis of its own, a one-probe group
    compiled a kernel and the next larger group compiled another (seconds, in timed work too)."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    monkeypatch.setitem(optim._COMPILED, "kernel", torch.compile(optim.adamw_cast, backend=counter))
    monkeypatch.setattr(optim, "_SHAPES", set())
    for n_probes, hidden in ((1, 8), (4, 8), (3, 16)):
        params = [torch.randn(n_probes, hidden, 24) * 0.1, torch.randn(n_probes, 1, hidden) * 0.1]
        lr_p, wd_p = torch.linspace(1e-3, 1e-2, n_probes), torch.full((n_probes,), 0.01)
        cast = torch.empty_like(params[0], dtype=torch.bfloat16)
        opt = BatchedAdamW(params, lr_p, wd_p, cast=cast, compile_cast=True)
        eager_params = [p.clone() for p in params]
        eager = BatchedAdamW(eager_params, lr_p, wd_p, cast=torch.empty_like(cast), compile_cast=False)
        grads = [torch.randn(params[0].shape).to(torch.bfloat16), torch.randn(params[1].shape)]
        opt.step(grads, 0.5)
        eager.step(grads, 0.5)
        assert opt.compiled and torch.equal(cast, params[0].bfloat16())
        for got, want in zip(params, eager_params):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)  # each probe got its own lr
    assert counter.frame_count == 1
    torch._dynamo.reset()
