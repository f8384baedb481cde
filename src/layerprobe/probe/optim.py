"""AdamW over stacked probe parameters, with a learning rate and weight decay per probe.

The arithmetic is torch's AdamW (decoupled weight decay, bias-corrected moments), applied to
tensors whose leading axis is the probe (``[P, ...]``, probe ``p`` = row ``p``). With small batches
an optimizer step touches every weight for a few hundred FLOPs of matmul, so this step is where a
sweep spends much of its memory traffic. The fast path is torch's fused AdamW kernel: one pass over
memory rather than about seven. That kernel takes one learning rate and weight decay per call, so
probes are grouped by their (lr, weight decay) and each group's rows (contiguous slices: the kernel
ignores strides, which is why the parameters are probe-major) go to one call; a sweep over 8
learning rates is 8 calls per step, not 8x the traffic. ``tests/test_probe_engine.py`` checks both
paths against ``torch.optim.AdamW``.

The low-precision copy (``cast``): with bf16 matmuls the first layer's GEMMs read a bf16 copy of the
fp32 master weights and write a bf16 gradient. Cast, update and cast back as three eager passes move
40 bytes a weight (an fp32 gradient copy 6, the fused kernel 28, the weight cast 6); one compiled
pass (:func:`adamw_cast`: bf16 gradient in, fp32 state updated, bf16 copy out) moves 26, and ran
1.9x faster than the three (16.7M weights, 2 threads: 11.2 vs 21.1 ms; docs/LOG.md, seventh
session). It is compiled with ``torch.compile`` (a C++ compiler at run time, a few seconds once per
process and input width, the row axis dynamic) on CPUs only, for probes with at least :data:`COMPILE_MIN_WEIGHT_STEPS` of
such work, so small sweeps never wait for it; where it cannot be compiled the eager passes run. The
decision depends only on the probe's own size, so a probe's result does not depend on its group.
One compile serves every group size and hidden width of one input width D; past Dynamo's recompile limit (8 widths in a
process) new widths take the eager passes, since the compiled function would run as plain Python.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

log = logging.getLogger(__name__)

COMPILE_MIN_WEIGHT_STEPS = 1e8
"""First-layer weights x optimizer steps of one probe from which its cast-and-update pass is
compiled: the compiled pass saves about 0.6-1.2 ns a weight-step (2 threads / 1 thread here), so
0.06-0.12 s a probe against a compile of 2-4 s once per process."""
_COMPILED: dict[str, object] = {}
_SHAPES: set[tuple[int, ...]] = set()
"""The widths ``(D,)`` the compiled kernel has been used for in this process (one compile each)."""


class BatchedAdamW:
    """AdamW for probe-major ``params`` (each ``[P, ...]``) with per-probe ``lr_p`` and ``wd_p`` ([P])."""

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr_p: torch.Tensor,
        wd_p: torch.Tensor,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        allow_fused: bool = True,
        cast: torch.Tensor | None = None,
        compile_cast: bool = False,
    ) -> None:
        """``cast`` (optional): a low-precision copy of ``params[0]`` that every step leaves equal to the
        updated parameter; that parameter's gradient may then come in the copy's dtype.
        ``compile_cast``: update ``params[0]`` and ``cast`` with the compiled :func:`adamw_cast`."""
        self.params = list(params)
        n_probes = lr_p.numel()
        if wd_p.numel() != n_probes or any(p.shape[0] != n_probes for p in self.params):
            raise ValueError(f"every parameter's leading axis and wd_p must have the {n_probes} probes of lr_p")
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.n_steps = 0
        self.cast = None if cast is None else cast.copy_(self.params[0])
        self.compiled = compile_cast and cast is not None
        self._grad32: torch.Tensor | None = None
        self._lr = [lr_p.float().view(-1, *([1] * (p.dim() - 1))).to(p.device) for p in self.params]
        self._wd = [wd_p.float().view(-1, *([1] * (p.dim() - 1))).to(p.device) for p in self.params]
        if self.compiled:  # the compiled pass sees params[0] as rows: each probe's lr and wd repeated over its rows
            per_probe = self.params[0][0].numel() // self.params[0].shape[-1]
            self._lr_rows, self._wd_rows = (t.float().repeat_interleave(per_probe).view(-1, 1).to(self.params[0].device) for t in (lr_p, wd_p))
        self.fused = (
            allow_fused
            and hasattr(torch, "_fused_adamw_")
            and all(p.dtype == torch.float32 and p.is_contiguous() for p in self.params)
        )
        if self.fused:
            self._step_t = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
            self._calls = _fused_calls(lr_p, wd_p)
            self._views: dict[int, list] = {}  # type: ignore[type-arg]

    def _fused_views(self, first: int) -> list:  # type: ignore[type-arg]
        """Per fused call: (lr, wd, rows, (params, moments, second moments) of ``params[first:]`` at
        those rows). The views never change, so they are made once (20,000 ``select`` calls in a
        160-step group of 8 learning rates cost 5% of its time)."""
        if first not in self._views:
            rest = range(first, len(self.params))
            self._views[first] = [(lr, wd, rows, tuple([t[j][i] for j in rest for i in rows] for t in (self.params, self.exp_avg, self.exp_avg_sq)))
                                  for lr, wd, rows in self._calls]  # fmt: skip
        return self._views[first]

    def step(self, grads: Sequence[torch.Tensor], lr_factor: float = 1.0) -> None:
        """One update with learning rates ``lr * lr_factor`` (the schedule's factor)."""
        self.n_steps += 1
        bias1 = 1 - self.beta1**self.n_steps
        bias2_sqrt = (1 - self.beta2**self.n_steps) ** 0.5
        grads = list(grads)
        first = 0
        if self.compiled:
            rows = [_rows(t) for t in (self.params[0], grads[0], self.exp_avg[0], self.exp_avg_sq[0], self.cast)]
            args = (*rows, self._lr_rows * lr_factor, self._wd_rows, self.beta1, self.beta2, self.eps, torch.tensor(bias1), torch.tensor(bias2_sqrt))
            self.compiled = _compiled_update(args)  # False: nothing changed; this step runs eagerly, as every later one
            first = int(self.compiled)
        if not first and grads[0].dtype != self.params[0].dtype:
            if self._grad32 is None:
                self._grad32 = torch.empty_like(self.params[0])
            grads[0] = self._grad32.copy_(grads[0])
        rest = range(first, len(self.params))
        if self.fused:
            self._step_t.add_(1.0)
            for lr, wd, rows, (ps, ms, vs) in self._fused_views(first):
                gs = [grads[j][i] for j in rest for i in rows]
                torch._fused_adamw_(
                    ps, gs, ms, vs, [], [self._step_t] * len(ps), lr=lr * lr_factor, beta1=self.beta1, beta2=self.beta2,
                    weight_decay=wd, eps=self.eps, amsgrad=False, maximize=False,
                )  # fmt: skip
        else:
            for j in rest:
                _adamw(self.params[j], grads[j], self.exp_avg[j], self.exp_avg_sq[j], self._lr[j] * lr_factor, self._wd[j],
                       self.beta1, self.beta2, self.eps, bias1, bias2_sqrt)  # fmt: skip
        if self.cast is not None and not first:
            self.cast.copy_(self.params[0])


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` ([P, ..., D], contiguous) as ``[rows, D]``: what the compiled pass takes (see :func:`adamw_cast_compiled`)."""
    return t.view(-1, t.shape[-1])


def _fused_calls(lr_p: torch.Tensor, wd_p: torch.Tensor) -> list[tuple[float, float, list[int | slice]]]:
    """(lr, weight decay, rows) per fused call: all probes at once when they share both values,
    else one call per distinct pair over that pair's rows (``slice(None)`` = every row)."""
    pairs = list(zip(lr_p.flatten().tolist(), wd_p.flatten().tolist()))
    distinct = sorted(set(pairs))
    if len(distinct) == 1:
        return [(distinct[0][0], distinct[0][1], [slice(None)])]
    return [(lr, wd, [p for p, pair in enumerate(pairs) if pair == (lr, wd)]) for lr, wd in distinct]


def _adamw(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, lr: torch.Tensor, wd: torch.Tensor,
           beta1: float, beta2: float, eps: float, bias1: float | torch.Tensor, bias2_sqrt: float | torch.Tensor) -> None:  # fmt: skip
    """torch's AdamW update of ``p`` in place (``lr``, ``wd`` broadcast per probe; ``g`` in any float dtype)."""
    g = g.float()
    p.mul_(1 - lr * wd)
    m.lerp_(g, 1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    denom = (v.sqrt() / bias2_sqrt).add_(eps)
    p.addcdiv_(m * (lr / bias1), denom, value=-1)


def adamw_cast(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, cast: torch.Tensor, lr: torch.Tensor,
               wd: torch.Tensor, beta1: float, beta2: float, eps: float, bias1: torch.Tensor, bias2_sqrt: torch.Tensor) -> None:  # fmt: skip
    """:func:`_adamw`, then ``cast`` (e.g. bf16) set to the updated ``p``: what is compiled into one pass."""
    _adamw(p, g, m, v, lr, wd, beta1, beta2, eps, bias1, bias2_sqrt)
    cast.copy_(p)


def compiled_update_pays(device: torch.device, weight_steps: float) -> bool:
    """Whether a probe of ``weight_steps`` (first-layer weights x optimizer steps) on ``device`` gets
    the compiled :func:`adamw_cast` (CPUs only: a GPU runs the eager passes at its bandwidth)."""
    return torch.device(device).type == "cpu" and weight_steps >= COMPILE_MIN_WEIGHT_STEPS and adamw_cast_compiled() is not None


def adamw_cast_compiled():  # type: ignore[no-untyped-def]
    """:func:`adamw_cast` compiled, or None once compiling it failed in this process (no C++ compiler,
    an inductor error). It takes the first layer as rows ``[P * H, D]`` with the row axis dynamic and
    the width D static, lr and weight decay given per row (``[P * H, 1]``): dynamic inner sizes turn
    the per-probe lr lookup into a division per element (in-cache: 1.65 vs 0.93 ms for 2.1M weights),
    and a probe axis of its own would be specialised by Dynamo at size 1 (a one-probe group compiled
    a kernel of its own and the next larger group compiled again, 1.3 s more in a fresh process here,
    inside whatever work came second). So one compile serves every group size and hidden width of one
    input width."""
    if "kernel" not in _COMPILED:  # torch.compile itself is lazy: nothing is compiled before the first call
        try:
            _COMPILED["kernel"] = torch.compile(adamw_cast)
        except RuntimeError as err:  # e.g. a Python version Dynamo does not support yet
            _COMPILED["kernel"] = None
            log.info("torch.compile is not available (%s); the optimizer runs eagerly", str(err).splitlines()[0][:200])
    return _COMPILED["kernel"]


def _compiled_update(args: tuple) -> bool:  # type: ignore[type-arg]
    """Run the compiled :func:`adamw_cast` on ``args``; False (nothing changed) when it cannot be
    compiled, or when this width would pass Dynamo's recompile limit, past which it silently runs
    the Python function (seven eager passes, slower than the fused kernel)."""
    kernel = adamw_cast_compiled()
    shape = tuple(args[0].shape[1:])  # (D,): the static part of the rows
    limit = getattr(torch._dynamo.config, "recompile_limit", 8)  # `cache_size_limit` before torch 2.6, also 8
    if kernel is None or (shape not in _SHAPES and len(_SHAPES) >= limit - 1):
        return False
    _SHAPES.add(shape)
    for t in args[:7]:
        torch._dynamo.mark_dynamic(t, 0)
    try:
        kernel(*args)  # compiling happens before the graph runs: a failure leaves every tensor as it was
    except Exception as err:  # noqa: BLE001 -- any failure to compile means: run the eager passes
        _COMPILED["kernel"] = None
        log.info("the optimizer's cast-and-update pass could not be compiled (%s); running it eagerly", str(err).splitlines()[0][:200])
        return False
    return True
