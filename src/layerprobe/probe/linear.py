"""Batched linear probes: L2 multinomial logistic regression, full-batch L-BFGS, C chosen on val.

One call fits every (layer, C) pair of a slab at once. Parameters are one tensor
``theta [L, R, D + 1]``: for each layer, R = K x C' rows (K values of C, C' logit columns), each a
weight vector plus an unpenalised intercept (the features get a column of ones, so one GEMM gives
logits and one gives the gradient, intercept included).

Design choices
- Objective per problem, as scikit-learn's ``LogisticRegression`` (lbfgs): the sample-weighted
  mean cross-entropy plus ``||W||^2 / (2 C S)`` (S = sum of sample weights), so C means the same
  as there. Two classes use one logit column (the sigmoid model), as scikit-learn does; a 2-column
  softmax with the same C would be regularised differently.
- Solver: L-BFGS batched over problems (two-loop recursion on per-problem inner products, a
  backtracking Armijo line search with a step per problem). Its initial inverse Hessian is a
  Nyström preconditioner instead of a scalar: a rank-k sketch ``U diag(lam) U^T`` of each layer's
  weighted Gram matrix ``X^T W X`` (two passes over the features) gives
  ``H0 = U (s lam + mu)^-1 U^T + (I - U U^T) / (s lam_k + mu)`` per C (mu = 1/(C S), s = the
  logistic curvature at the start, 1/4 for two classes). Standardised activations have a
  power-law spectrum, so plain L-BFGS needs hundreds of iterations for weakly regularised C; with
  H0 it needs tens. Every iteration costs two passes over the features, whatever K is.
- A problem stops when its largest gradient entry is below ``tol`` or an iteration lowers its
  objective by less than ``ftol`` (relative, as scipy's L-BFGS-B); stopped problems get a zero
  direction.
- C is chosen per layer by the (class-weighted) cross-entropy on the validation split: a proper
  score, smoother than accuracy and free of ties.
- fp32 for the passes over the features, float64 for the small sketch algebra.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import torch

from layerprobe.errors import ProbeError
from layerprobe.probe.config import LinearSpec
from layerprobe.probe.features import Features

_ARMIJO = 1e-4
_MAX_HALVINGS = 20
_SKETCH_SEED = 0x5EED


class LinearResult(NamedTuple):
    """Outputs for the L layers of one slab (layer order of the features)."""

    val_prob: torch.Tensor
    """[L, n_val, C] float32 probabilities at the chosen C, CPU."""
    test_prob: torch.Tensor
    """[L, n_test, C]"""
    chosen_c: torch.Tensor
    """[L] float64: the C with the lowest validation loss."""
    n_iter: int
    """L-BFGS iterations run (the slowest problem's count)."""
    converged: torch.Tensor
    """[L] bool: the chosen problem met ``tol`` or ``ftol`` within ``max_iter``."""
    seconds: float
    """Wall time of the whole call."""


def fit_linear_group(features: Features, spec: LinearSpec, *, n_classes: int, class_weight: torch.Tensor | None = None) -> LinearResult:
    """Fit every layer of ``features`` for every C in ``spec.cs``; keep each layer's best C."""
    start = time.perf_counter()
    problem = _Problem(features.train.float(), features.y_train, n_classes, spec.cs, class_weight)
    theta, n_iter, converged_lk = _lbfgs(problem, _Preconditioner(problem, spec.sketch_rank), spec)
    val_logits = problem.logits(features.val.float(), theta)  # [L, K, n, C]
    best_l = problem.mean_ce(val_logits, features.y_val).argmin(dim=1)

    def chosen(logits_lknc: torch.Tensor) -> torch.Tensor:
        index = best_l.to(logits_lknc.device)[:, None, None, None].expand(-1, 1, *logits_lknc.shape[2:])
        return torch.softmax(logits_lknc.gather(1, index)[:, 0], dim=-1).cpu()

    test_logits = problem.logits(features.test.float(), theta)
    cs = torch.tensor(spec.cs, dtype=torch.float64)
    return LinearResult(
        chosen(val_logits), chosen(test_logits), cs[best_l.cpu()], n_iter,
        converged_lk.gather(1, best_l[:, None].to(converged_lk.device))[:, 0].cpu(), time.perf_counter() - start,
    )  # fmt: skip


class _Problem:
    """Objective and gradient of all (layer, C) problems; ``theta [L, R, D+1]``, R = K * C'."""

    def __init__(self, x_lnd: torch.Tensor, y_n: torch.Tensor, n_classes: int, cs: tuple[float, ...], class_weight: torch.Tensor | None) -> None:
        n_layers, n, d_in = x_lnd.shape
        device = x_lnd.device
        self.x_lnd = torch.cat([x_lnd, torch.ones(n_layers, n, 1, device=device)], dim=2)  # intercept column
        self.n_cs, self.n_cols = len(cs), (1 if n_classes == 2 else n_classes)
        self.n_classes, self.class_weight = n_classes, class_weight
        self.shape = (n_layers, self.n_cs * self.n_cols, d_in + 1)
        weight_n = torch.ones(n, device=device) if class_weight is None else class_weight.to(device).float()[y_n]
        total = float(weight_n.sum())
        self.weight_n = weight_n / total
        # d/dW of ||W||^2 / (2 C S) is W / (C S): one value per row of theta, none on the intercept.
        self.reg_r = (1.0 / (torch.tensor(cs, dtype=torch.float64) * total)).float().repeat_interleave(self.n_cols).to(device)
        self.penalised = torch.ones(d_in + 1, device=device)
        self.penalised[d_in] = 0
        self.target = (y_n == 1).float() if self.n_cols == 1 else torch.nn.functional.one_hot(y_n, n_classes).float()
        self.curvature = 1.0 / n_classes * (1 - 1.0 / n_classes)  # logistic Hessian scale at theta = 0

    def per_problem(self, value_lr: torch.Tensor) -> torch.Tensor:
        """Sum a per-row quantity ``[L, R]`` over each problem's rows -> ``[L, K]``."""
        return value_lr.view(value_lr.shape[0], self.n_cs, self.n_cols).sum(dim=2)

    def dot(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-problem inner products of two theta-shaped tensors -> ``[L, K]``."""
        return self.per_problem((a * b).sum(dim=2))

    def expand(self, v_lk: torch.Tensor) -> torch.Tensor:
        """A per-problem ``[L, K]`` value broadcast against theta."""
        return v_lk.repeat_interleave(self.n_cols, dim=1)[:, :, None]

    def value_and_grad(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Objective ``[L, K]`` and its gradient (theta's shape)."""
        z_lnr = torch.bmm(self.x_lnd, theta.transpose(1, 2))
        w_n = self.weight_n[None, :, None]
        if self.n_cols == 1:
            t = self.target[None, :, None]
            loss_lr = ((torch.nn.functional.softplus(z_lnr) - t * z_lnr) * w_n).sum(dim=1)
            dz_lnr = (torch.sigmoid(z_lnr) - t) * w_n
        else:
            z = z_lnr.view(z_lnr.shape[0], z_lnr.shape[1], self.n_cs, self.n_cols)
            logp = torch.log_softmax(z, dim=-1)
            t = self.target[None, :, None, :]
            loss_lr = -(logp * t * w_n[..., None]).sum(dim=1).view(z_lnr.shape[0], -1)
            dz_lnr = ((logp.exp() - t) * w_n[..., None]).view_as(z_lnr)
        penalty = theta * (self.reg_r[:, None] * self.penalised)
        value = self.per_problem(loss_lr + 0.5 * (theta * penalty).sum(dim=2))
        grad = torch.baddbmm(penalty, dz_lnr.transpose(1, 2), self.x_lnd)
        return value, grad

    def logits(self, x_lnd: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Full logits ``[L, K, n, C]`` on other rows (a zero column prepended for two classes)."""
        d_in = x_lnd.shape[2]
        z_lnr = torch.baddbmm(theta[:, None, :, d_in], x_lnd, theta[:, :, :d_in].transpose(1, 2))
        z = z_lnr.view(z_lnr.shape[0], z_lnr.shape[1], self.n_cs, self.n_cols).permute(0, 2, 1, 3)
        return torch.cat([torch.zeros_like(z), z], dim=-1) if self.n_cols == 1 else z

    def mean_ce(self, logits_lknc: torch.Tensor, y_n: torch.Tensor) -> torch.Tensor:
        """[L, K] float64 (class-weighted) mean cross-entropy on other rows, for choosing C."""
        logp = torch.log_softmax(logits_lknc, dim=-1)
        nll = -logp.gather(3, y_n.view(1, 1, -1, 1).expand(*logp.shape[:3], 1))[..., 0].double()
        if self.class_weight is None:
            return nll.mean(dim=2).cpu()
        w_n = self.class_weight.to(y_n.device).double()[y_n]
        return ((nll * w_n).sum(dim=2) / w_n.sum()).cpu()


class _Preconditioner:
    """Nyström approximation of each problem's inverse Hessian, used as L-BFGS's H0 (module docstring)."""

    def __init__(self, problem: _Problem, rank: int) -> None:
        x = problem.x_lnd[:, :, :-1]
        n_layers, _, d_in = x.shape
        k = min(rank, d_in)
        gen = torch.Generator().manual_seed(_SKETCH_SEED)
        # The sketch is formed in float64: in fp32 its rounding error is as large as the shift,
        # and a rank-deficient problem (fewer training rows than k) then fails the Cholesky.
        x = x.double()
        omega = torch.randn(d_in, k, generator=gen, dtype=torch.float64).to(x.device).expand(n_layers, d_in, k)
        y0 = torch.bmm(x.transpose(1, 2), torch.bmm(x, omega) * problem.weight_n.double()[None, :, None])
        eye = torch.eye(k, dtype=torch.float64, device=x.device)
        for rel_shift in (1e-7, 1e-5, 1e-3):
            shift = rel_shift * torch.linalg.matrix_norm(y0).clamp_min(1e-30)[:, None, None]
            y = y0 + shift * omega
            core = omega.transpose(1, 2) @ y
            chol, info = torch.linalg.cholesky_ex(0.5 * (core + core.transpose(1, 2)) + 1e-12 * eye)
            if not bool(info.any()):
                break
        else:
            raise ProbeError("linear probe preconditioner failed on a degenerate slab (constant or duplicate features); check the store with `layerprobe verify`")
        b = torch.linalg.solve_triangular(chol, y.transpose(1, 2), upper=False).transpose(1, 2)  # y C^-T
        sigma2, vecs = torch.linalg.eigh(b.transpose(1, 2) @ b)
        sigma = sigma2.clamp_min(1e-30).sqrt()
        self.u = (b @ vecs / sigma[:, None, :]).float()  # [L, D, k], orthonormal columns
        lam = (sigma2 - shift[:, :, 0]).clamp_min(0).float()  # [L, k] ascending
        s, mu = problem.curvature, problem.reg_r[None, :, None]
        self.inv_top = 1.0 / (s * lam[:, None, :] + mu)  # [L, R, k]
        self.inv_rest = 1.0 / (s * lam[:, :1, None] + mu)  # [L, R, 1]: the rest of the spectrum ~ the smallest kept
        self.inv_bias = 1.0 / s

    def apply(self, g: torch.Tensor) -> torch.Tensor:
        """H0 @ g for every problem (theta-shaped)."""
        g_w = g[:, :, :-1]
        coef = torch.bmm(g_w, self.u)  # [L, R, k]
        out = torch.empty_like(g)
        torch.baddbmm(g_w * self.inv_rest, coef * (self.inv_top - self.inv_rest), self.u.transpose(1, 2), out=out[:, :, :-1])
        out[:, :, -1] = g[:, :, -1] * self.inv_bias
        return out


def _lbfgs(problem: _Problem, precond: _Preconditioner, spec: LinearSpec) -> tuple[torch.Tensor, int, torch.Tensor]:
    theta = torch.zeros(problem.shape, device=problem.x_lnd.device)
    value, grad = problem.value_and_grad(theta)
    history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    stalled = torch.zeros_like(value, dtype=torch.bool)  # line search failed: no step lowers the objective
    flat = torch.zeros_like(value, dtype=torch.bool)  # the objective stopped moving
    n_iter = 0
    for n_iter in range(1, spec.max_iter + 1):
        g_max = grad.abs().amax(dim=2).view(*value.shape, -1).amax(dim=2)
        active = (g_max > spec.tol) & ~stalled & ~flat
        if not bool(active.any()):
            n_iter -= 1
            break
        direction = -_two_loop(problem, grad, history, precond)
        uphill = problem.dot(grad, direction) >= 0  # a bad curvature estimate: steepest descent there
        direction = torch.where(problem.expand(uphill), -precond.apply(grad), direction) * problem.expand(active)
        slope = problem.dot(grad, direction)
        step = torch.ones_like(value)
        accepted = ~active
        new_theta, new_value, new_grad = theta, value, grad
        for _ in range(_MAX_HALVINGS):
            trial = theta + problem.expand(step) * direction
            t_value, t_grad = problem.value_and_grad(trial)
            ok = (t_value <= value + _ARMIJO * step * slope) & ~accepted
            rows = problem.expand(ok)
            new_theta, new_grad = torch.where(rows, trial, new_theta), torch.where(rows, t_grad, new_grad)
            new_value = torch.where(ok, t_value, new_value)
            accepted |= ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, step * 0.5)
        scale = torch.maximum(torch.maximum(value.abs(), new_value.abs()), torch.ones_like(value))
        flat |= active & ((value - new_value) <= spec.ftol * scale)
        stalled |= ~accepted
        s, y = new_theta - theta, new_grad - grad
        sy = problem.dot(s, y)
        good = (sy > 1e-10) & active
        history.append((s, y, torch.where(good, 1.0 / sy.clamp_min(1e-30), torch.zeros_like(sy))))
        if len(history) > spec.history:
            history.pop(0)
        theta, value, grad = new_theta, new_value, new_grad
    g_max = grad.abs().amax(dim=2).view(*value.shape, -1).amax(dim=2)
    return theta, n_iter, (g_max <= spec.tol) | flat


def _two_loop(problem: _Problem, grad: torch.Tensor, history: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], precond: _Preconditioner) -> torch.Tensor:
    """L-BFGS inverse-Hessian times gradient with H0 = the preconditioner (rho = 0 pairs are skipped)."""
    q = grad.clone()
    alphas = []
    for s, y, rho in reversed(history):
        alpha = rho * problem.dot(s, q)
        q -= problem.expand(alpha) * y
        alphas.append(alpha)
    r = precond.apply(q)
    for (s, y, rho), alpha in zip(history, reversed(alphas)):
        beta = rho * problem.dot(y, r)
        r += s * problem.expand(alpha - beta)
    return r
