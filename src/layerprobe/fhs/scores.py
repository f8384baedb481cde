"""Growth factor, volatility penalty and feature health score of one module's probe curve.

Exactly the formulas of the paper's section 3.3, for a module with layers ``1..n`` in order and
probe performance ``P`` in percent::

    GF  = ln(P_end / sqrt(P_start * P_min))
    VP  = exp(-lambda * sum_{i=1}^{n-1} |P_{i+1} - P_i| / P_end)
    FHS = P_end * (1 + GF) * VP                                   (lambda = 0.2)

``P_start``, ``P_min`` and ``P_end`` are the first, the worst and the last layer. Nothing is
clipped: FHS exceeds 100 when a module improves much over its early/worst layers (the paper's
Table 1 has vision scores up to 117), and it turns negative when ``GF < -1``, i.e. when the last
layer is below ``e^-2`` (13.5%) of the first one.

Choices the paper leaves open, each a keyword with the default named here:

- **One layer**: no special case is needed. ``P_start = P_min = P_end`` so ``GF = ln 1 = 0`` and
  the variation sum is empty, ``VP = 1``: the score is ``P_end`` itself.
- **P = 0** (``eps=0.0``): ``GF`` takes ``ln(P_end / 0)`` when ``P_min = 0`` and ``ln 0`` when
  ``P_end = 0``, and ``VP`` divides by ``P_end``. By default such a score is ``nan`` and
  :class:`ModuleScore` says why in ``reason``. With ``eps > 0`` every value below ``eps`` is raised
  to ``eps`` (percent) before scoring, which makes the score finite but dominated by ``eps``
  (``GF`` grows like ``-0.5 ln eps``); that is why it is not the default.
- **Missing layers** (``nan`` entries, e.g. a failed probe or a layer that was not probed), policy
  ``missing``:

  - ``"interpolate"`` (default): interior gaps are bridged linearly in layer index. This is exactly
    the same as leaving them out: an interpolated point never sets a new minimum, and a straight
    segment adds ``|P_b - P_a|`` to the variation sum whether it is walked in one step or many.
    A missing first or last layer cannot be interpolated (it defines ``P_start``/``P_end``): the
    score is ``nan`` with a reason.
  - ``"nan"``: any missing layer makes the score ``nan`` (with a reason).
  - ``"error"``: any missing layer raises :class:`~layerprobe.errors.LayerprobeError`.

Input values must lie in ``[0, 100]`` (percent, not fractions); anything else raises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from layerprobe import vocab
from layerprobe.errors import LayerprobeError

MissingPolicy = Literal["interpolate", "nan", "error"]
"""The values of ``vocab.MISSING_POLICIES``, for type checkers (a test holds the two equal)."""
PAPER_LAMBDA = 0.2


class ModuleScore(NamedTuple):
    """All quantities behind one module's FHS; scores are ``nan`` when ``reason`` is not empty."""

    fhs: float
    """Feature health score, ``P_end * (1 + gf) * vp`` (percent scale; may exceed 100 or be < 0)."""
    gf: float
    """Growth factor ``ln(P_end / sqrt(P_start * P_min))``."""
    vp: float
    """Volatility penalty ``exp(-lambda * total_variation / P_end)``, in ``(0, 1]``."""
    p_start: float
    """Performance of the first layer (percent, after the ``eps`` floor)."""
    p_min: float
    """Performance of the worst layer (percent, after the ``eps`` floor)."""
    p_end: float
    """Performance of the last layer (percent, after the ``eps`` floor)."""
    total_variation: float
    """``sum |P_{i+1} - P_i|`` over consecutive layers (percent points)."""
    n_layers: int
    """Layers in the curve, missing ones included."""
    n_missing: int
    """Layers whose value was missing (``nan``)."""
    reason: str
    """Empty when the score is defined; otherwise why it is ``nan``."""


def module_score(
    p: Sequence[float] | np.ndarray,
    *,
    lambda_: float = PAPER_LAMBDA,
    eps: float = 0.0,
    missing: MissingPolicy = "interpolate",
    layer_ids: Sequence[int] | None = None,
) -> ModuleScore:
    """GF, VP and FHS of one module from its layer-wise performance ``p`` (percent, in layer order).

    ``nan`` (or ``None``) marks a missing layer; see the module docstring for ``eps`` and ``missing``.
    ``layer_ids`` only names the layers in messages (default: positions in ``p``).
    """
    p_n = _parse_curve(p)
    check_score_params(lambda_, eps, missing)
    n_layers = int(p_n.size)
    present_n = ~np.isnan(p_n)
    n_missing = n_layers - int(present_n.sum())

    def undefined(reason: str, curve_n: np.ndarray | None = None) -> ModuleScore:
        ends = (float(curve_n[0]), float(curve_n.min()), float(curve_n[-1])) if curve_n is not None else (math.nan,) * 3
        return ModuleScore(math.nan, math.nan, math.nan, *ends, math.nan, n_layers, n_missing, reason)

    if n_missing:
        where = _describe_missing(present_n, layer_ids)
        if missing == vocab.MISSING_ERROR:
            raise LayerprobeError(f"probe curve has {where}; probe those layers or choose missing='interpolate' or 'nan'")
        if missing == vocab.MISSING_NAN:
            return undefined(f"{where} (missing='nan')")
        if not (present_n[0] and present_n[-1]):
            end = "first" if not present_n[0] else "last"
            return undefined(f"{end} layer missing, so P_{'start' if end == 'first' else 'end'} is undefined (probe it or select other layers)")
    # Dropping interior gaps == linear interpolation for every term (module docstring).
    curve_n = np.maximum(p_n[present_n], eps)
    p_start, p_min, p_end = float(curve_n[0]), float(curve_n.min()), float(curve_n[-1])
    if p_end == 0.0:
        return undefined("P_end is 0: GF takes ln(0) and VP divides by P_end (set eps > 0 to floor P)", curve_n)
    if p_min == 0.0:
        return undefined("P_min is 0: GF = ln(P_end / 0) is unbounded (set eps > 0 to floor P)", curve_n)
    total_variation = float(np.abs(np.diff(curve_n)).sum())
    gf = math.log(p_end / math.sqrt(p_start * p_min))
    vp = math.exp(-lambda_ * total_variation / p_end)
    fhs = p_end * (1.0 + gf) * vp
    return ModuleScore(fhs, gf, vp, p_start, p_min, p_end, total_variation, n_layers, n_missing, "")


def growth_factor(p: Sequence[float] | np.ndarray, *, eps: float = 0.0, missing: MissingPolicy = "interpolate") -> float:
    """``GF = ln(P_end / sqrt(P_start * P_min))``; ``nan`` where undefined (see :func:`module_score`)."""
    return module_score(p, eps=eps, missing=missing).gf


def volatility_penalty(
    p: Sequence[float] | np.ndarray,
    *,
    lambda_: float = PAPER_LAMBDA,
    eps: float = 0.0,
    missing: MissingPolicy = "interpolate",
) -> float:
    """``VP = exp(-lambda * sum |P_{i+1} - P_i| / P_end)``; ``nan`` where undefined."""
    return module_score(p, lambda_=lambda_, eps=eps, missing=missing).vp


def feature_health_score(
    p: Sequence[float] | np.ndarray,
    *,
    lambda_: float = PAPER_LAMBDA,
    eps: float = 0.0,
    missing: MissingPolicy = "interpolate",
) -> float:
    """``FHS = P_end * (1 + GF) * VP``; ``nan`` where undefined (see :func:`module_score`)."""
    return module_score(p, lambda_=lambda_, eps=eps, missing=missing).fhs


def _parse_curve(p: Sequence[float] | np.ndarray) -> np.ndarray:
    try:
        p_n = np.asarray([math.nan if v is None else v for v in p], dtype=np.float64)
    except (TypeError, ValueError):
        raise LayerprobeError("probe curve must be a 1-D sequence of numbers (percent per layer, nan for a missing layer)") from None
    if p_n.ndim != 1 or p_n.size == 0:
        raise LayerprobeError(f"probe curve must be a non-empty 1-D sequence of percents, got shape {p_n.shape}")
    finite_n = p_n[~np.isnan(p_n)]
    if np.any(np.isinf(finite_n)) or np.any(finite_n < 0) or np.any(finite_n > 100):
        bad = finite_n[np.isinf(finite_n) | (finite_n < 0) | (finite_n > 100)][0]
        raise LayerprobeError(f"probe curve value {bad} is outside [0, 100]; pass percents (100 x metric), nan for a missing layer")
    return p_n


def check_score_params(lambda_: float, eps: float, missing: str) -> None:
    """Raise a one-line LayerprobeError unless lambda_, eps and missing are usable."""
    if not (isinstance(lambda_, (int, float)) and math.isfinite(lambda_) and lambda_ >= 0):
        raise LayerprobeError(f"lambda_ must be a finite number >= 0 (the paper uses 0.2), got {lambda_}")
    if not (isinstance(eps, (int, float)) and 0 <= eps <= 100):
        raise LayerprobeError(f"eps must be a percent in [0, 100] (0 = no floor), got {eps}")
    if missing not in vocab.MISSING_POLICIES:
        raise LayerprobeError(f"missing={missing!r} is not a policy; use one of {', '.join(vocab.MISSING_POLICIES)}")


def _describe_missing(present_n: np.ndarray, layer_ids: Sequence[int] | None) -> str:
    idx = np.flatnonzero(~present_n)
    names = [str(layer_ids[i]) if layer_ids is not None else str(i) for i in idx[:5]]
    return f"{idx.size} missing layer(s): {', '.join(names)}{', ...' if idx.size > 5 else ''}"
