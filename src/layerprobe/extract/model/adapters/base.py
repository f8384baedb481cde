"""What a family adapter is: where the sites are, and which vision rows belong to which image.

An adapter knows nothing about hooks, dtypes or the store. It answers two questions for the
:class:`~layerprobe.extract.capture.Capturer`:

1. *Where?* -- :class:`SitePaths`: dotted module paths (from the top-level transformers model) of
   the vision-tower block list, the connector, optionally the connector's inner activation, the LLM
   decoder-layer list and the LLM's final norm.
2. *Whose?* -- for a vision-block or connector output of a given shape, a ``(B, N)`` 0/1 matrix
   ``w_bn`` over its ``N`` flattened token rows saying which rows make up image ``b``'s mean. One
   matmul ``w_bn @ h_nd`` then pools every image of the batch at once, on the device, whatever the
   layout: one row of tokens per image (LLaVA, Gemma3, PaliGemma), several crops per image
   (LLaVA-NeXT, Idefics3/SmolVLM), or all images' patches packed into one sequence (Qwen).

Design choices:
- Adapters are stateless frozen dataclasses; anything model-specific (a CLS token, the merge size,
  the crop grid) is read from ``config`` and the processor outputs ``batch`` at call time, so one
  adapter serves every checkpoint of its family.
- One image per sample. A batch whose vision rows cannot be assigned to exactly ``B`` images is an
  :class:`~layerprobe.errors.ExtractError`, never a silent misassignment.
- The default layout is "consecutive equal groups of rows per image, minus ``prefix_tokens`` at the
  start of each row"; families override :meth:`Adapter.rows_per_image`, :meth:`Adapter.token_mask`
  or :meth:`Adapter.packed_lengths` only where they differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from layerprobe.errors import ExtractError

if TYPE_CHECKING:
    import torch

Part = Literal["vision", "connector"]


@dataclass(frozen=True)
class SitePaths:
    """Dotted module paths of the sites, relative to the top-level model (``model.named_modules()``)."""

    vision_layers: str
    """ModuleList of vision-tower blocks; each block's output is one ``vision/mean`` layer."""
    connector: str
    """Module whose output is the connector output inserted into the LLM (``connector/mean`` ``output``)."""
    llm_layers: str
    """ModuleList of LLM decoder layers (input of the first = ``embed``; outputs = the following layers)."""
    llm_norm: str
    """The LLM's final norm; its output replaces the last decoder layer's, as ``output_hidden_states`` does."""
    connector_inner: str | None = None
    """Module whose output is the connector MLP's hidden layer after its activation; ``None`` where the
    connector is not an MLP."""

    def __post_init__(self) -> None:
        for name in ("vision_layers", "connector", "llm_layers", "llm_norm", "connector_inner"):
            value = getattr(self, name)
            if value is None and name == "connector_inner":
                continue
            if not isinstance(value, str) or not value.strip() or value != value.strip():
                raise ExtractError(f"site path {name}={value!r} must be a dotted module path such as 'model.language_model.layers'")


def standard_paths(
    connector: str,
    *,
    vision_layers: str = "model.vision_tower.encoder.layers",
    llm: str = "model.language_model",
    connector_inner: str | None = None,
) -> SitePaths:
    """The layout most transformers MLLMs share: decoder layers at ``<llm>.layers``, final norm at ``<llm>.norm``."""
    return SitePaths(vision_layers, connector, f"{llm}.layers", f"{llm}.norm", connector_inner)


@dataclass(frozen=True)
class Adapter:
    """Where one family's sites are; subclasses override the layout hooks where the family differs."""

    model_type: str
    """HF ``config.model_type`` this adapter serves (the registry key)."""
    paths: SitePaths
    """Module paths of the sites."""
    prefix_tokens: int = 0
    """Tokens at the start of each vision row left out of ``vision/mean`` (a CLS token); see
    :meth:`vision_prefix_tokens` for families that decide from the config."""
    plain_prompt: str = "{image}\n{instruction}"
    """Prompt used when the processor has no chat template; ``{image}`` is the image placeholder."""

    # ---------------------------------------------------------------- family-specific hooks

    def vision_prefix_tokens(self, config: Any) -> int:
        """Tokens at the start of each vision row that are not patches (CLS)."""
        return self.prefix_tokens

    def image_token_id(self, config: Any) -> int:
        """Token id marking image positions in ``input_ids``."""
        token_id = getattr(config, "image_token_id", None)
        if token_id is None:
            token_id = getattr(config, "image_token_index", None)
        if token_id is None:
            raise ExtractError(f"{self.model_type}: the config has no image_token_id; give image_token_id in the site spec")
        return int(token_id)

    def rows_per_image(self, part: Part, config: Any, batch: Mapping[str, Any], n_rows: int, n_images: int) -> torch.Tensor:
        """How many consecutive rows (crops) of a ``(rows, tokens, D)`` output belong to each image."""
        import torch

        if n_rows % n_images:
            raise ExtractError(
                f"{self.model_type}: {part} output has {n_rows} rows for {n_images} images; "
                "expected the same number of crops per image (one image per sample)"
            )
        return torch.full((n_images,), n_rows // n_images, dtype=torch.long)

    def token_mask(self, part: Part, config: Any, batch: Mapping[str, Any], n_rows: int, n_tokens: int) -> torch.Tensor | None:
        """``(rows, tokens)`` bool of tokens to keep (e.g. not padding), or ``None`` for all."""
        return None

    def packed_lengths(self, part: Part, config: Any, batch: Mapping[str, Any], n: int) -> torch.Tensor:
        """Per-image row counts of a packed ``(N, D)`` output (all images in one sequence)."""
        raise ExtractError(f"{self.model_type}: {part} output is packed (2-D) but this family does not say how to split it per image")

    # ---------------------------------------------------------------- shared machinery

    def pool_weights(self, part: Part, config: Any, batch: Mapping[str, Any], shape: tuple[int, ...], n_images: int, device: Any) -> torch.Tensor:
        """``(n_images, prod(shape[:-1]))`` 0/1 float32 matrix: row ``b`` selects image ``b``'s tokens."""
        import torch

        if len(shape) == 2:
            lengths_b = self.packed_lengths(part, config, batch, shape[0]).to(device)
            if int(lengths_b.sum()) != shape[0] or len(lengths_b) != n_images:
                raise ExtractError(
                    f"{self.model_type}: {part} output has {shape[0]} packed rows but the images account for "
                    f"{int(lengths_b.sum())} in {len(lengths_b)} images (expected {n_images})"
                )
            owner_n = torch.repeat_interleave(torch.arange(n_images, device=device), lengths_b)
            keep_n = torch.ones(shape[0], dtype=torch.bool, device=device)
        elif len(shape) == 3:
            n_rows, n_tokens = shape[0], shape[1]
            rows_b = self.rows_per_image(part, config, batch, n_rows, n_images).to(device)
            if int(rows_b.sum()) != n_rows or len(rows_b) != n_images:
                raise ExtractError(
                    f"{self.model_type}: {part} output has {n_rows} rows but the batch's {n_images} images account for {int(rows_b.sum())}"
                )
            owner_n = torch.repeat_interleave(torch.arange(n_images, device=device), rows_b).repeat_interleave(n_tokens)
            keep_rt = torch.ones(n_rows, n_tokens, dtype=torch.bool, device=device)
            if part == "vision":
                keep_rt[:, : self.vision_prefix_tokens(config)] = False
            mask_rt = self.token_mask(part, config, batch, n_rows, n_tokens)
            if mask_rt is not None:
                keep_rt &= mask_rt.to(device=device, dtype=torch.bool)
            keep_n = keep_rt.reshape(-1)
        else:
            raise ExtractError(f"{self.model_type}: {part} output has shape {tuple(shape)}; expected (rows, tokens, D) or (tokens, D)")
        w_bn = (owner_n.unsqueeze(0) == torch.arange(n_images, device=device).unsqueeze(1)) & keep_n.unsqueeze(0)
        return w_bn.to(torch.float32)
