"""How a results table becomes the four-score profile: every choice the paper leaves open.

The defaults reproduce the paper's setting where it states one (accuracy, lambda = 0.2, the MLP
probe, image-token mean for comprehension) and take the least surprising reading where it does not;
each field's docstring says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from layerprobe import vocab
from layerprobe.errors import LayerprobeError
from layerprobe.fhs.scores import PAPER_LAMBDA, MissingPolicy, check_score_params
from layerprobe.layers import LayerSelection, LayerSpec, parse_layers

_SITE_FIELDS = ("vision_site", "connector_site", "connector_inner_site", "llm_site", "llm_alt_site")
_LAYER_FIELDS = {"V": "vision_layers", "C": "connector_layers", "L": "llm_layers"}


@dataclass(frozen=True)
class FHSConfig:
    """Settings that turn probe rows into FHS_V, FHS_C, FHS_L and P_final."""

    metric: str = vocab.ACCURACY
    """Probe metric P is made of: accuracy (the paper's Table 1), f1, precision, recall or auc."""
    split: str = vocab.TEST
    """Split the metric is read from (column ``<split>_<metric>``); ``val`` is for model selection."""
    lambda_: float = PAPER_LAMBDA
    """Volatility penalty strength; the paper fixes 0.2."""
    vision_site: str = vocab.VISION
    """Site that is module V (one row per vision-tower block)."""
    connector_site: str = vocab.CONNECTOR
    """Site that is module C (``inner`` then ``output`` for MLP connectors)."""
    connector_inner_site: str | None = vocab.CONNECTOR_INNER
    """Where a run has it (connectors whose hidden layer is wider than the LLM, e.g. Qwen mergers),
    its layers come first in module C, before ``connector_site``'s; ``None`` to ignore it."""
    llm_site: str = vocab.LLM_IMAGE
    """Site that feeds FHS_L: the image-token mean ("comprehension"), which is what the paper probes
    module by module; the final token ("utilisation") is its section-5 analysis."""
    llm_alt_site: str | None = vocab.LLM_FINAL
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
    probe_kind: str = vocab.MLP
    """Probe rows used for the curves: ``mlp`` (the paper's 2-layer head) or ``linear``."""
    preset: str | None = None
    """Probe preset to use; ``None`` accepts the only one present and refuses to mix several."""
    seed_agg: str = vocab.MEAN_CURVE
    """``mean_curve``: average P over seeds per layer, then score that curve (the curve the plots
    show). ``mean_score``: score each seed's curve, then average. Both report the spread (sample
    standard deviation over seeds of the per-seed scores)."""
    missing: MissingPolicy = vocab.MISSING_INTERPOLATE
    """Layers with no usable probe: ``interpolate`` interior gaps (a missing first/last layer gives
    nan), ``nan`` for any gap, or ``error``. See :mod:`layerprobe.fhs.scores`."""
    eps: float = 0.0
    """Floor in percent applied to P before scoring; 0 = none, so P_min = 0 or P_end = 0 gives nan."""
    p_final: str = vocab.P_FINAL_AUTO
    """Which P_final the profile uses (``vocab.P_FINAL_KINDS``): ``generated`` = the model's generated
    answer parsed to a candidate (the paper's; rows of site ``answer_text``, from stores extracted with
    ``--answer-tokens``), ``forced`` = argmax over the candidates' first-token logits (site
    ``answer_logits``), ``auto`` (default) = generated where the run has it, else forced. Each
    profile records which one it used (``p_final_kind``)."""
    _selections: dict[str, LayerSelection] = field(init=False, repr=False, compare=False)
    """Module key -> its layer selection, parsed once on construction (:meth:`module_layers`)."""

    def __post_init__(self) -> None:
        _one_of("metric", self.metric, vocab.METRICS)
        _one_of("split", self.split, vocab.SCORED_SPLITS)
        _one_of("seed_agg", self.seed_agg, vocab.SEED_AGGS)
        _one_of("probe_kind", self.probe_kind, vocab.PROBE_KINDS)
        _one_of("p_final", self.p_final, vocab.P_FINAL_KINDS)
        check_score_params(self.lambda_, self.eps, self.missing)
        for name in _SITE_FIELDS:
            site = getattr(self, name)
            if site is None and name in ("connector_inner_site", "llm_alt_site"):
                continue
            _one_of(name, site, vocab.SITES)  # a misspelt site would otherwise score as n/a without a word
        if self.llm_alt_site is not None and self.llm_alt_site == self.llm_site:
            raise LayerprobeError(f"llm_alt_site equals llm_site ({self.llm_site!r}); pick the other LLM site or None")
        sites = [s for group in self.module_sites().values() for s in group]
        if len(set(sites)) != len(sites):
            raise LayerprobeError(f"a site is given to two modules ({', '.join(sites)}); give each module its own site")
        for name in _LAYER_FIELDS.values():
            spec = getattr(self, name)
            if isinstance(spec, list):  # keep the config hashable and truly frozen
                object.__setattr__(self, name, tuple(spec))
        object.__setattr__(self, "_selections", {module: parse_layers(getattr(self, name)) for module, name in _LAYER_FIELDS.items()})

    @property
    def column(self) -> str:
        """Results-table column holding P (as a fraction)."""
        return vocab.metric_column(self.split, self.metric)

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

    def module_layers(self, module: str) -> LayerSelection:
        """Layer selection for a module key (both LLM sites share ``llm_layers``)."""
        return self._selections.get(module, self._selections["L"])

    def as_dict(self) -> dict[str, object]:
        """Plain values for reports and JSON: the settings as given."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise LayerprobeError(f"{name}={value!r} is not supported; use one of {', '.join(allowed)}")
