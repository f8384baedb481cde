"""Family adapters: where each MLLM family's sites are (see :mod:`.base`), keyed by HF ``model_type``.

``get_adapter(model_type_or_model, site_spec=None)`` returns the registered adapter, or a
:class:`~.generic.GenericAdapter` when a site spec is given (a spec always wins, so a registered
family can be re-mapped too). An unknown family without a spec is an ``ExtractError`` that lists
the supported families and says how to write a spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from layerprobe.errors import ExtractError
from layerprobe.extract.model.adapters.base import Adapter, SitePaths
from layerprobe.extract.model.adapters.generic import GenericAdapter, load_site_spec
from layerprobe.extract.model.adapters.registry import register, registry

__all__ = ["Adapter", "GenericAdapter", "SitePaths", "get_adapter", "load_site_spec", "register", "supported_families"]

SPEC_HINT = (
    "write a TOML site spec with the module paths vision_layers, connector and llm_layers "
    "(optional llm_norm, connector_inner, vision_prefix_tokens, image_token_id; example: examples/sitespec-llava.toml) "
    "and pass it as site_spec= (CLI: --site-spec, or --vision-layers/--connector/--llm-layers)"
)


def supported_families() -> tuple[str, ...]:
    """Registered ``model_type`` values, sorted."""
    return tuple(sorted(registry()))


def _model_type(thing: Any) -> str:
    if isinstance(thing, str):
        return thing
    for candidate in (getattr(thing, "model_type", None), getattr(getattr(thing, "config", None), "model_type", None)):
        if isinstance(candidate, str):
            return candidate
    raise ExtractError(f"cannot tell the model_type of {type(thing).__name__}; pass a model_type string, a model or a LoadedModel")


def get_adapter(model_type_or_model: Any, site_spec: str | Path | Mapping[str, Any] | Adapter | None = None) -> Adapter:
    """The adapter for a model_type (or a model / LoadedModel); ``site_spec`` selects the generic adapter."""
    model_type = _model_type(model_type_or_model)
    if isinstance(site_spec, Adapter):
        return site_spec
    if site_spec is not None:
        return load_site_spec(site_spec, model_type=model_type)
    adapters = registry()
    if model_type not in adapters:
        raise ExtractError(f"no adapter for model_type {model_type!r} (supported: {', '.join(sorted(adapters))}); {SPEC_HINT}")
    return adapters[model_type]
