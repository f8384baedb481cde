"""The generic adapter: sites given as module paths, for any model the registry does not know.

A custom-code model (loaded with an explicit ``trust_remote_code=True``), or a registered family
whose layout you want to override, is described by a small TOML *site spec*::

    # layerprobe site spec -- module paths as printed by model.named_modules()
    vision_layers   = "model.vision_tower.encoder.layers"  # ModuleList of vision blocks
    connector       = "model.multi_modal_projector"         # output = connector/mean "output"
    llm_layers      = "model.language_model.layers"         # ModuleList of decoder layers
    # optional:
    llm_norm        = "model.language_model.norm"           # default: <parent of llm_layers>.norm
    connector_inner = "model.multi_modal_projector.act"     # the connector MLP's hidden activation
    vision_prefix_tokens = 1     # CLS-like tokens at the start of each vision row (default 0)
    image_token_id  = 32000      # default: config.image_token_id
    spatial_merge_size = 2       # packed towers only: connector rows per image = patches / merge^2
    plain_prompt    = "{image}\\n{instruction}"  # prompt when the processor has no chat template

(``examples/sitespec-llava.toml`` is a complete one.) The same keys can be given as a mapping or
as CLI flags (``--vision-layers``, ``--connector``, ``--llm-layers``...).

How rows are assigned to images (one image per sample, ``B`` per batch):
- a ``(rows, tokens, D)`` output: rows split into ``B`` equal consecutive groups (crops of one
  image are consecutive), minus ``vision_prefix_tokens`` at the start of each vision row;
- a packed ``(N, D)`` output: split with ``image_grid_thw`` when the processor returns it (vision:
  ``prod(thw)`` rows per image, connector: that over ``spatial_merge_size**2``), else into ``B``
  equal parts.
Anything that does not divide evenly is an error, never a guess. Registered families whose crops
vary per image (LLaVA-NeXT, Idefics3/SmolVLM) need their own adapter for exact pooling.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from layerprobe.errors import ExtractError
from layerprobe.extract.model.adapters.base import Adapter, Part, SitePaths

_PATH_KEYS = tuple(f.name for f in fields(SitePaths))
_OPTION_KEYS = ("vision_prefix_tokens", "image_token_id", "spatial_merge_size", "plain_prompt", "model_type")


@dataclass(frozen=True)
class GenericAdapter(Adapter):
    """Adapter configured entirely by a site spec."""

    image_token: int | None = None
    """Image token id; ``None`` reads ``config.image_token_id``."""
    spatial_merge_size: int | None = None
    """Merge factor of a packed tower; ``None`` reads ``config.vision_config.spatial_merge_size`` (or 1)."""

    def image_token_id(self, config: Any) -> int:
        return self.image_token if self.image_token is not None else super().image_token_id(config)

    def packed_lengths(self, part: Part, config: Any, batch: Mapping[str, Any], n: int) -> torch.Tensor:
        if "image_grid_thw" in batch:
            patches_b = batch["image_grid_thw"].prod(-1)
            if part == "vision":
                return patches_b
            merge = self.spatial_merge_size or getattr(getattr(config, "vision_config", None), "spatial_merge_size", 1)
            return patches_b // merge**2
        n_images = len(batch["input_ids"])
        if n % n_images:
            raise ExtractError(f"site spec: packed {part} output of {n} rows does not split evenly over {n_images} images")
        return torch.full((n_images,), n // n_images, dtype=torch.long)


def load_site_spec(spec: str | Path | Mapping[str, Any], model_type: str = "custom") -> GenericAdapter:
    """Build a :class:`GenericAdapter` from a TOML file path or a mapping of the keys above."""
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        try:
            data: Mapping[str, Any] = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ExtractError(f"site spec {path} does not exist; see examples/sitespec-llava.toml for the format") from None
        except tomllib.TOMLDecodeError as err:
            raise ExtractError(f"site spec {path} is not valid TOML ({err}); see examples/sitespec-llava.toml") from None
        where = str(path)
    else:
        data, where = spec, "site spec"
    unknown = sorted(set(data) - set(_PATH_KEYS) - set(_OPTION_KEYS))
    if unknown:
        raise ExtractError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_PATH_KEYS + _OPTION_KEYS)}")
    missing = [key for key in ("vision_layers", "connector", "llm_layers") if not data.get(key)]
    if missing:
        raise ExtractError(f"{where}: missing {', '.join(missing)}; a site spec needs vision_layers, connector and llm_layers module paths")
    llm_layers = str(data["llm_layers"])
    norm_default = llm_layers.rpartition(".")[0] + ".norm" if "." in llm_layers else "norm"
    paths = SitePaths(
        vision_layers=str(data["vision_layers"]),
        connector=str(data["connector"]),
        llm_layers=llm_layers,
        llm_norm=str(data.get("llm_norm") or norm_default),
        connector_inner=data.get("connector_inner") or None,
    )
    prefix = data.get("vision_prefix_tokens", 0)
    merge = data.get("spatial_merge_size")
    token = data.get("image_token_id")
    for key, value in (("vision_prefix_tokens", prefix), ("spatial_merge_size", merge), ("image_token_id", token)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ExtractError(f"{where}: {key} must be a non-negative integer, got {value!r}")
    return GenericAdapter(
        model_type=str(data.get("model_type", model_type)),
        paths=paths,
        prefix_tokens=prefix,
        plain_prompt=str(data.get("plain_prompt", Adapter.plain_prompt)),
        image_token=token,
        spatial_merge_size=merge,
    )
