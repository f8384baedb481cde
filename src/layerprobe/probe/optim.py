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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


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
    ) -> None:
        self.params = list(params)
        n_probes = lr_p.numel()
        if wd_p.numel() != n_probes or any(p.shape[0] != n_probes for p in self.params):
            raise ValueError(f"every parameter's leading axis and wd_p must have the {n_probes} probes of lr_p")
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.n_steps = 0
        self.fused = (
            allow_fused
            and hasattr(torch, "_fused_adamw_")
            and all(p.dtype == torch.float32 and p.is_contiguous() for p in self.params)
        )
        if self.fused:
            self._step_t = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
            self._calls = _fused_calls(lr_p, wd_p)
        else:
            self._lr = [lr_p.float().view(-1, *([1] * (p.dim() - 1))).to(p.device) for p in self.params]
            self._wd = [wd_p.float().view(-1, *([1] * (p.dim() - 1))).to(p.device) for p in self.params]

    def step(self, grads: Sequence[torch.Tensor], lr_factor: float = 1.0) -> None:
        """One update with learning rates ``lr * lr_factor`` (the schedule's factor)."""
        self.n_steps += 1
        if self.fused:
            self._step_t.add_(1.0)
            for lr, wd, rows in self._calls:
                ps, ms, vs = ([t[i] for t in tensors for i in rows] for tensors in (self.params, self.exp_avg, self.exp_avg_sq))
                gs = [g[i] for g in grads for i in rows]
                torch._fused_adamw_(
                    ps, gs, ms, vs, [], [self._step_t] * len(ps), lr=lr * lr_factor, beta1=self.beta1, beta2=self.beta2,
                    weight_decay=wd, eps=self.eps, amsgrad=False, maximize=False,
                )  # fmt: skip
            return
        bias1 = 1 - self.beta1**self.n_steps
        bias2_sqrt = (1 - self.beta2**self.n_steps) ** 0.5
        for p, g, m, v, lr, wd in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, self._lr, self._wd):
            lr_t = lr * lr_factor
            p.mul_(1 - lr_t * wd)
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.addcdiv_(m * (lr_t / bias1), denom, value=-1)


def _fused_calls(lr_p: torch.Tensor, wd_p: torch.Tensor) -> list[tuple[float, float, list[int | slice]]]:
    """(lr, weight decay, rows) per fused call: all probes at once when they share both values,
    else one call per distinct pair over that pair's rows (``slice(None)`` = every row)."""
    pairs = list(zip(lr_p.flatten().tolist(), wd_p.flatten().tolist()))
    distinct = sorted(set(pairs))
    if len(distinct) == 1:
        return [(distinct[0][0], distinct[0][1], [slice(None)])]
    return [(lr, wd, [p for p, pair in enumerate(pairs) if pair == (lr, wd)]) for lr, wd in distinct]
