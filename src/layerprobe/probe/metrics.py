"""Classification metrics for many probes at once, equal to scikit-learn's on the same predictions.

All probes of one call share the labels ``y_n``; predictions are ``argmax`` of the probabilities
(first index on ties, as ``numpy.argmax``). Definitions follow scikit-learn 1.x defaults:
- accuracy: fraction of correct predictions;
- macro precision / recall / F1: unweighted mean over the labels present in ``y_true`` or in the
  predictions (scikit-learn's ``unique_labels``); a zero denominator counts as 0
  (``zero_division="warn"`` does the same); F1 = 2 tp / (2 tp + fp + fn);
- AUC: binary = ``roc_auc_score(y, p[:, 1])``; more classes = one-vs-rest macro average of
  ``roc_auc_score(y == c, p[:, c])``. scikit-learn refuses when a class is missing from ``y``;
  here that AUC is NaN.
AUC is the Mann-Whitney statistic with mid-ranks for ties, which is exactly the trapezoidal area
under the ROC curve that scikit-learn computes. Counts are exact; sums run in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

class Metrics(NamedTuple):
    """One float64 tensor of shape ``[P]`` per metric (fractions in [0, 1]; AUC may be NaN).

    The fields are ``vocab.METRICS``, in that order (a test holds them equal).
    """

    accuracy: torch.Tensor
    f1: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    auc: torch.Tensor


def classification_metrics(prob_pnc: torch.Tensor, y_n: torch.Tensor) -> Metrics:
    """Metrics of P probes from their class probabilities ``[P, N, C]`` on the samples ``y_n``."""
    if prob_pnc.dim() != 3 or prob_pnc.shape[1] != y_n.shape[0]:
        raise ValueError(f"expected prob [P, N, C] and y [N], got {tuple(prob_pnc.shape)} and {tuple(y_n.shape)}")
    n_classes = prob_pnc.shape[2]
    y_n = y_n.to(prob_pnc.device, torch.int64)
    pred_pn = prob_pnc.argmax(dim=2)
    accuracy = (pred_pn == y_n).double().mean(dim=1)

    true_nc = torch.nn.functional.one_hot(y_n, n_classes).double()
    pred_pnc = torch.nn.functional.one_hot(pred_pn, n_classes).double()
    tp_pc = torch.einsum("pnc,nc->pc", pred_pnc, true_nc)
    n_pred_pc = pred_pnc.sum(dim=1)
    n_true_c = true_nc.sum(dim=0).expand_as(n_pred_pc)
    present_pc = (n_pred_pc + n_true_c) > 0
    precision = _macro(_safe_div(tp_pc, n_pred_pc), present_pc)
    recall = _macro(_safe_div(tp_pc, n_true_c), present_pc)
    f1 = _macro(_safe_div(2 * tp_pc, n_pred_pc + n_true_c), present_pc)
    return Metrics(accuracy, f1, precision, recall, auc_ovr(prob_pnc, y_n))


def auc_ovr(prob_pnc: torch.Tensor, y_n: torch.Tensor) -> torch.Tensor:
    """Binary AUC (2 classes) or one-vs-rest macro AUC, per probe; NaN where a class is absent."""
    n_probes, n_samples, n_classes = prob_pnc.shape
    classes = [1] if n_classes == 2 else list(range(n_classes))
    score_rn = prob_pnc[:, :, classes].permute(0, 2, 1).reshape(-1, n_samples).double()
    pos_rn = (y_n[None, :] == torch.tensor(classes, device=y_n.device)[:, None]).repeat(n_probes, 1)
    auc_r = _rank_auc(score_rn, pos_rn)
    return auc_r.view(n_probes, len(classes)).mean(dim=1)


def _rank_auc(score_rn: torch.Tensor, pos_rn: torch.Tensor) -> torch.Tensor:
    """Mann-Whitney AUC of each row, mid-ranks for tied scores; NaN without positives or negatives."""
    n_rows, n = score_rn.shape
    sorted_rn, order_rn = score_rn.sort(dim=1, stable=True)
    starts_rn = torch.ones_like(sorted_rn, dtype=torch.bool)
    starts_rn[:, 1:] = sorted_rn[:, 1:] != sorted_rn[:, :-1]
    group_rn = starts_rn.long().cumsum(dim=1) - 1
    size_rg = torch.zeros_like(sorted_rn).scatter_add_(1, group_rn, torch.ones_like(sorted_rn))
    first_rg = size_rg.cumsum(dim=1) - size_rg  # 0-based position where each tie group starts
    midrank_rn = (first_rg + (size_rg + 1) / 2).gather(1, group_rn)
    pos_sorted_rn = pos_rn.gather(1, order_rn).double()
    n_pos = pos_sorted_rn.sum(dim=1)
    n_neg = n - n_pos
    rank_sum = (midrank_rn * pos_sorted_rn).sum(dim=1)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))


def _macro(value_pc: torch.Tensor, present_pc: torch.Tensor) -> torch.Tensor:
    return (value_pc * present_pc).sum(dim=1) / present_pc.sum(dim=1).clamp_min(1)
