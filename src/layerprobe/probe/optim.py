"""AdamW over stacked probe parameters, with a learning rate and weight decay per probe.

The arithmetic is torch's AdamW (decoupled weight decay, bias-corrected moments), applied to
tensors that hold many probes; ``lr`` and ``weight_decay`` are tensors that broadcast against each
parameter, so every probe has its own. With batch size 4 an optimizer step touches every weight for
a few hundred FLOPs of matmul, so this step is where a small-batch sweep spends its memory
traffic. When all probes of a group share lr and weight decay (the usual case) the step runs
torch's fused AdamW kernel instead: the same update in one pass over memory rather than about
seven. ``tests/test_probe_engine.py`` checks both paths against ``torch.optim.AdamW``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class BatchedAdamW:
    """AdamW for ``params`` whose per-probe ``lrs``/``weight_decays`` broadcast against them."""

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lrs: Sequence[torch.Tensor],
        weight_decays: Sequence[torch.Tensor],
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        allow_fused: bool = True,
    ) -> None:
        self.params = list(params)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.lrs, self.weight_decays = list(lrs), list(weight_decays)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.n_steps = 0
        lr_values = torch.unique(torch.cat([t.flatten().float().cpu() for t in self.lrs]))
        wd_values = torch.unique(torch.cat([t.flatten().float().cpu() for t in self.weight_decays]))
        self.fused = (
            allow_fused
            and hasattr(torch, "_fused_adamw_")
            and lr_values.numel() == 1
            and wd_values.numel() == 1
            and all(p.dtype == torch.float32 for p in self.params)
        )
        if self.fused:
            self._lr, self._wd = float(lr_values[0]), float(wd_values[0])
            self._state_steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def step(self, grads: Sequence[torch.Tensor], lr_factor: float = 1.0) -> None:
        """One update with learning rates ``lr * lr_factor`` (the schedule's factor)."""
        self.n_steps += 1
        if self.fused:
            torch._foreach_add_(self._state_steps, 1.0)
            torch._fused_adamw_(
                self.params, list(grads), self.exp_avg, self.exp_avg_sq, [], self._state_steps,
                lr=self._lr * lr_factor, beta1=self.beta1, beta2=self.beta2, weight_decay=self._wd,
                eps=self.eps, amsgrad=False, maximize=False,
            )  # fmt: skip
            return
        bias1 = 1 - self.beta1**self.n_steps
        bias2_sqrt = (1 - self.beta2**self.n_steps) ** 0.5
        for p, g, m, v, lr, wd in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, self.lrs, self.weight_decays):
            lr_t = lr * lr_factor
            p.mul_(1 - lr_t * wd)
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(self.eps)
            p.addcdiv_(m * (lr_t / bias1), denom, value=-1)
