"""How a results table becomes the four-score profile: every choice the paper leaves open.

The defaults reproduce the paper's setting where it states one (accuracy, lambda = 0.2, the MLP
probe, image-token mean for comprehension) and take the least surprising reading where it does not;
each field's docstring says which.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from layerprobe.errors import LayerprobeError
from layerprobe.fhs.scores import PAPER_LAMBDA, MissingPolicy, check_score_params
from layerprobe.layers import LayerSpec

METRICS: tuple[str, ...] = ("accuracy", "f1", "precision", "recall", "auc")
SPLITS: tuple[str, ...] = ("test", "val")
SEED_AGGS: tuple[str, ...] = ("mean_curve", "mean_score")
PROBE_KINDS: tuple[str, ...] = ("mlp", "linear")


@dataclass(frozen=True)
class FHSConfig:
    """Settings that turn probe rows into FHS_V, FHS_C, FHS_L and P_final."""

    metric: str = "accuracy"
    """Probe metric P is made of: accuracy (the paper's Table 1), f1, precision, recall or auc."""
    split: str = "test"
    """Split the metric is read from (column ``<split>_<metric>``); ``val`` is for model selection."""
    lambda_: float = PAPER_LAMBDA
    """Volatility penalty strength; the paper fixes 0.2."""
    vision_site: str = "vision/mean"
    """Site that is module V (one row per vision-tower block)."""
    connector_site: str = "connector/mean"
    """Site that is module C (``inner`` then ``output`` for MLP connectors)."""
    connector_inner_site: str | None = "connector/inner_mean"
    """Where a run has it (connectors whose hidden layer is wider than the LLM, e.g. Qwen mergers),
    its layers come first in module C, before ``connector_site``'s; ``None`` to ignore it."""
    llm_site: str = "llm/image_mean"
    """Site that feeds FHS_L: the image-token mean ("comprehension"), which is what the paper probes
    module by module; the final token ("utilisation") is its section-5 analysis."""
    llm_alt_site: str | None = "llm/final_token"
    """Second LLM site, scored and reported beside FHS_L (``None`` to skip)."""
    vision_layers: LayerSpec = None
    """Vision layers that count (``select_layers`` syntax); ``None`` = every block."""
    connector_layers: LayerSpec = None
    """Connector layers that count; ``None`` = all of them (``inner`` and ``output``, as the paper
    probes "each layer within these modules")."""
    llm_layers: LayerSpec = "1:"
    """LLM layers that count. Default ``1:`` = the decoder layers, leaving out layer 0 (``embed``): for
    the image-token mean it is the connector output again, for the final token it is one fixed prompt
    embedding (chance level), which would set P_start/P_min of FHS_L by construction."""
    probe_kind: str = "mlp"
    """Probe rows used for the curves: ``mlp`` (the paper's 2-layer head) or ``linear``."""
    preset: str | None = None
    """Probe preset to use; ``None`` accepts the only one present and refuses to mix several."""
    seed_agg: str = "mean_curve"
    """``mean_curve``: average P over seeds per layer, then score that curve (the curve the plots
    show). ``mean_score``: score each seed's curve, then average. Both report the spread (sample
    standard deviation over seeds of the per-seed scores)."""
    missing: MissingPolicy = "interpolate"
    """Layers with no usable probe: ``interpolate`` interior gaps (a missing first/last layer gives
    nan), ``nan`` for any gap, or ``error``. See :mod:`layerprobe.fhs.scores`."""
    eps: float = 0.0
    """Floor in percent applied to P before scoring; 0 = none, so P_min = 0 or P_end = 0 gives nan."""

    def __post_init__(self) -> None:
        _one_of("metric", self.metric, METRICS)
        _one_of("split", self.split, SPLITS)
        _one_of("seed_agg", self.seed_agg, SEED_AGGS)
        _one_of("probe_kind", self.probe_kind, PROBE_KINDS)
        check_score_params(self.lambda_, self.eps, self.missing)
        for name in ("vision_site", "connector_site", "llm_site"):
            if not (isinstance(getattr(self, name), str) and getattr(self, name)):
                raise LayerprobeError(f"{name} must be a site name such as 'llm/image_mean'")
        if self.llm_alt_site is not None and self.llm_alt_site == self.llm_site:
            raise LayerprobeError(f"llm_alt_site equals llm_site ({self.llm_site!r}); pick the other LLM site or None")
        sites = [s for group in self.module_sites().values() for s in group]
        if len(set(sites)) != len(sites):
            raise LayerprobeError(f"a site is given to two modules ({', '.join(sites)}); give each module its own site")
        for name in ("vision_layers", "connector_layers", "llm_layers"):
            spec = getattr(self, name)
            if isinstance(spec, list):  # keep the config hashable and truly frozen
                object.__setattr__(self, name, tuple(spec))

    @property
    def column(self) -> str:
        """Results-table column holding P (as a fraction)."""
        return f"{self.split}_{self.metric}"

    @property
    def metric_label(self) -> str:
        """Axis/table label, e.g. ``test accuracy (%)``."""
        return f"{self.split} {self.metric} (%)"

    def module_sites(self) -> dict[str, tuple[str, ...]]:
        """Module key -> its sites in pipeline order: ``V``, ``C``, ``L`` and, when set, ``L_alt``."""
        inner = (self.connector_inner_site,) if self.connector_inner_site else ()
        out = {"V": (self.vision_site,), "C": (*inner, self.connector_site), "L": (self.llm_site,)}
        if self.llm_alt_site is not None:
            out["L_alt"] = (self.llm_alt_site,)
        return out

    def module_layers(self, module: str) -> LayerSpec:
        """Layer selection for a module key (both LLM sites share ``llm_layers``)."""
        return {"V": self.vision_layers, "C": self.connector_layers}.get(module, self.llm_layers)

    def as_dict(self) -> dict[str, object]:
        """Plain values for reports and JSON."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise LayerprobeError(f"{name}={value!r} is not supported; use one of {', '.join(allowed)}")
