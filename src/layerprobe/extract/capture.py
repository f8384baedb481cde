"""One forward per batch captures every site, pooled on the device inside forward hooks.

Sites and layers (the normative table is in ``docs/architecture.md``):

- ``vision/mean``: layers ``block_0 .. block_{V-1}``, the output of each vision-tower block, mean over
  the image's patch tokens (CLS left out where the tower has one, all crops of an image together);
- ``connector/mean``: ``inner`` (the connector MLP's hidden layer after its activation, where the
  connector is an MLP whose hidden layer has the LLM's width, as in LLaVA) then ``output``, mean
  over the image's connector output tokens;
- ``connector/inner_mean``: ``inner`` alone, only where the connector MLP's hidden layer is wider
  than the LLM (the Qwen mergers: 4x the vision width), so it cannot share ``connector/mean``'s array;
- ``llm/image_mean`` and ``llm/final_token``: layers ``embed, layer_1 .. layer_L``; layer ``i`` is
  exactly ``output_hidden_states[i]`` of transformers (``embed`` = the first decoder layer's input,
  with image features inserted; ``layer_i`` = decoder layer ``i``'s output, 1-based; ``layer_L`` is
  taken after the final norm). ``image_mean`` averages the image-token positions, ``final_token`` is
  the last position (batches are left-padded, so it is every sample's final input token);
- ``answer_logits``: the model's own final-position logits at the candidates' first tokens.

Design choices:
- Hooks pool on the device and write into preallocated ``(L, B, D)`` buffers, so no per-token
  state ever leaves the forward and nothing is copied to the host here (results stay on the
  model's device; the runner moves them). Pooling is one matmul with a 0/1 ``(B, N)`` matrix that
  the adapter builds once per batch and shape (:meth:`Adapter.pool_weights`), in the activations'
  dtype (0/1 are exact in bf16; the matmul accumulates in fp32), then divided by the counts in fp32;
  outputs laid out so that their rows do not flatten are summed row by row instead (:class:`Pooling`).
- The hooks are registered for one ``run`` and removed after it, so the model is untouched between
  batches and any other forward (a reference pass, ``generate``) sees no hooks. With generation
  the hooks disarm after the prompt's forward, so decoding steps leave the sites alone.
- Logits come from the model's own forward with ``logits_to_keep=1`` (its head, soft-capping and
  all), not from re-applying ``lm_head`` to a captured state.
- Every slot is checked after the forward: a hook that never fired (a layer the model skipped) is
  an error, never a row of zeros.
- Widths are read from the modules (the last norm/linear of a block; the linear feeding the inner
  activation; the LLM's final norm), so the generic adapter needs only paths.
"""

from __future__ import annotations

import difflib
import inspect
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from layerprobe.errors import ExtractError
from layerprobe.extract.model.adapters.base import Adapter, Part
from layerprobe.extract.pooling import Pooling
from layerprobe.vocab import (
    CONNECTOR, CONNECTOR_INNER, INNER, LLM_FINAL, LLM_IMAGE, VISION, connector_layer_names, llm_layer_names, vision_layer_names,
)

if TYPE_CHECKING:
    from layerprobe.store import SiteSpec

_DROPPED_INPUTS = ("labels",)  # PaliGemma's processor always returns labels; a forward with them computes a loss


class CaptureResult(NamedTuple):
    """What one batch yields."""

    acts: dict[str, torch.Tensor]
    """site -> ``(L, B, D)`` tensor in the capturer's ``out_dtype`` (bf16 by default), on the model's device."""
    answer_logits: torch.Tensor
    """``(B, C)`` float32 final-position logits at the candidates' first tokens."""
    generated_ids: torch.Tensor | None = None
    """``(B, T)`` greedy continuation token ids (``T <= max_new_tokens``; padded after an end token),
    or None when no generation was asked for."""


@dataclass(frozen=True)
class _Sites:
    """Resolved modules and the layout of every site."""

    vision_blocks: nn.ModuleList
    connector: nn.Module
    inner: nn.Module | None
    llm_layers: nn.ModuleList
    llm_norm: nn.Module
    widths: dict[str, int]
    layers: dict[str, tuple[str, ...]]


_WARM_MODELS: weakref.WeakSet[nn.Module] = weakref.WeakSet()
"""Models that have run a forward in this process (:meth:`Capturer.warm_up`)."""


class Capturer:
    """Captures every site of ``loaded.model`` in one forward per batch (see the module docstring)."""

    def __init__(self, loaded: Any, adapter: Adapter, candidate_token_ids: Sequence[int], *, out_dtype: torch.dtype = torch.bfloat16):
        """``loaded``: a :class:`~layerprobe.extract.model.loading.LoadedModel` (or anything with ``.model``).

        ``out_dtype`` is the dtype of the returned activations; bf16 is what the store keeps, fp32 is
        for exactness tests on fp32 models.
        """
        self.model: nn.Module = getattr(loaded, "model", loaded)
        self.adapter = adapter
        self.config = self.model.config
        self.out_dtype = out_dtype
        ids = [int(i) for i in candidate_token_ids]
        head = self.model.get_output_embeddings()
        vocab = head.weight.shape[0] if head is not None else self.config.get_text_config().vocab_size
        if not ids or not all(0 <= i < vocab for i in ids):
            raise ExtractError(f"candidate token ids {ids} must be non-empty and within the vocabulary (0..{vocab - 1})")
        if len(set(ids)) != len(ids):
            raise ExtractError(f"candidate token ids {ids} repeat a token; every candidate needs its own first token")
        self.candidate_token_ids = tuple(ids)
        self.image_token_id = adapter.image_token_id(self.config)
        self._sites = _resolve(self.model, adapter)
        self._takes_logits_to_keep = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def site_specs(self) -> list[SiteSpec]:
        """One :class:`~layerprobe.store.SiteSpec` per site, in a fixed order."""
        from layerprobe.store import SiteSpec

        return [SiteSpec(name, layers, self._sites.widths[name]) for name, layers in self._sites.layers.items()]

    def warm_up(self, inputs: Mapping[str, Any], *, max_new_tokens: int = 0) -> None:
        """Run ``inputs`` once and drop the result, the first time this process runs this model.

        Why: on a CPU with AMX, with two threads, a process's first bf16 forward differed from later
        forwards of the same batch by 1 ulp in a few rows (the kill + resume tests with two threads
        failed 3 runs of 6; with this warm-up 14 of 14 passed; small synthetic bf16 matmuls as the
        warm-up did not help, 2 of 8 failed). So every stored batch is computed by an already-warm model, and a resumed or
        sharded run starting anywhere gives the bytes of an uninterrupted one. Cost: one batch per
        process. Inputs of a shape the process has not seen yet are not warmed again: whether a new
        shape alone can also differ (variable-resolution batches) is not established.
        """
        if self.model in _WARM_MODELS:
            return
        self.run(inputs, max_new_tokens=max_new_tokens)
        _WARM_MODELS.add(self.model)

    def run(self, inputs: Mapping[str, Any], *, max_new_tokens: int = 0) -> CaptureResult:
        """Forward one processor batch (left-padded, one image per sample) and return every site.

        With ``max_new_tokens > 0`` the same pass also decodes greedily that many tokens at most
        (``model.generate``): the sites are still taken from the prompt's forward (the hooks disarm
        once it is done, so decoding steps never touch them) and the candidate logits are that
        forward's final-position logits, as without generation.
        """
        device = next(self.model.parameters()).device
        batch = _to_device(inputs, device, self.model.dtype)
        input_ids = batch.get("input_ids")
        if input_ids is None or input_ids.ndim != 2:
            raise ExtractError("capture needs a processor batch with 2-D input_ids (call encode_batch on the images and prompt)")
        n_batch = input_ids.shape[0]
        attention = batch.get("attention_mask")
        if attention is not None and not bool(attention[:, -1].all()):
            raise ExtractError("batch is right-padded: the final position is padding for some sample; set the tokenizer's padding_side='left'")
        image_bt = input_ids == self.image_token_id
        n_image_b = image_bt.sum(1)
        if bool((n_image_b == 0).any()):
            first = int((n_image_b == 0).nonzero()[0, 0])
            raise ExtractError(f"sample {first} of the batch has no image token (id {self.image_token_id}); the prompt must carry the image placeholder")
        state = _BatchState(self, batch, n_batch, image_bt, n_image_b, device)
        handles = state.install()
        try:
            with torch.inference_mode():
                last_logits, generated = self._generate(batch, max_new_tokens) if max_new_tokens else (self._forward(batch), None)
        finally:
            for handle in handles:
                handle.remove()
        state.check_filled()
        return CaptureResult(state.buffers, last_logits[:, list(self.candidate_token_ids)].float(), generated)

    def _forward(self, batch: dict[str, Any]) -> torch.Tensor:
        kwargs: dict[str, Any] = {"use_cache": False}
        if self._takes_logits_to_keep:
            kwargs["logits_to_keep"] = 1
        return self.model(**batch, **kwargs).logits[:, -1]

    def _generate(self, batch: dict[str, Any], max_new_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers import GenerationConfig

        from layerprobe.extract.generation import generation_stop_ids

        stops = list(generation_stop_ids(self.model)) or None
        own_pad = self.model.generation_config.pad_token_id
        pad = own_pad if own_pad is not None else (stops[0] if stops else None)
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=stops, pad_token_id=pad,
                                  return_dict_in_generate=True, output_logits=True)
        out = self.model.generate(**batch, generation_config=config)
        return out.logits[0], out.sequences[:, batch["input_ids"].shape[1]:]


class _BatchState:
    """Hooks, buffers and pooling weights of one batch."""

    def __init__(self, capturer: Capturer, batch: dict[str, Any], n_batch: int, image_bt: torch.Tensor, n_image_b: torch.Tensor, device: torch.device):
        self.c = capturer
        self.batch = batch
        self.n_batch = n_batch
        self.image_b1t = image_bt.unsqueeze(1)
        self.n_image_b1 = n_image_b.unsqueeze(1).float()
        self.device = device
        sites = capturer._sites
        self.buffers = {
            name: torch.empty(len(layers), n_batch, sites.widths[name], dtype=capturer.out_dtype, device=device)
            for name, layers in sites.layers.items()
        }
        self.filled = {name: [False] * len(layers) for name, layers in sites.layers.items()}
        self.armed = True
        """False once the prompt's forward is captured: decoding steps of ``generate`` are not sites."""
        self._weights: dict[tuple[Part, tuple[int, ...], torch.dtype], Pooling] = {}

    def install(self) -> list[torch.utils.hooks.RemovableHandle]:
        sites = self.c._sites
        handles = [block.register_forward_hook(self._vision_hook(i)) for i, block in enumerate(sites.vision_blocks)]
        handles.append(sites.connector.register_forward_hook(self._connector_hook(CONNECTOR, len(sites.layers[CONNECTOR]) - 1)))
        if sites.inner is not None:
            inner_site = CONNECTOR if CONNECTOR_INNER not in sites.layers else CONNECTOR_INNER
            handles.append(sites.inner.register_forward_hook(self._connector_hook(inner_site, 0)))
        handles.append(sites.llm_layers[0].register_forward_pre_hook(self._embed_hook, with_kwargs=True))
        n_llm = len(sites.llm_layers)
        for i, layer in enumerate(sites.llm_layers[: n_llm - 1]):
            handles.append(layer.register_forward_hook(self._llm_hook(i + 1)))
        handles.append(sites.llm_norm.register_forward_hook(self._llm_hook(n_llm)))
        return handles

    def check_filled(self) -> None:
        for name, slots in self.filled.items():
            missing = [self.c._sites.layers[name][i] for i, done in enumerate(slots) if not done]
            if missing:
                raise ExtractError(
                    f"{self.c.adapter.model_type}: site {name} layer(s) {', '.join(missing)} never ran in the forward; "
                    "the adapter's module paths do not match this model (give a site spec)"
                )

    # ------------------------------------------------------------------ pooling

    def _pool(self, part: Part, h: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` float32 per-image mean of a vision/connector output of any layout."""
        shape = tuple(h.shape)
        key = (part, shape, h.dtype)
        if key not in self._weights:
            pooling = Pooling.of(self.c.adapter.pool_weights(part, self.c.config, self.batch, shape, self.n_batch, h.device), shape, h.dtype)
            if bool((pooling.count_b1 == 0).any()):
                raise ExtractError(f"{self.c.adapter.model_type}: some image has no {part} tokens in this batch")
            self._weights[key] = pooling
        return self._weights[key].mean(h)

    def _store(self, site: str, slot: int, value_bd: torch.Tensor) -> None:
        buffer = self.buffers[site]
        if value_bd.shape != buffer.shape[1:]:
            raise ExtractError(
                f"{self.c.adapter.model_type}: site {site} got rows of shape {tuple(value_bd.shape)}, expected {tuple(buffer.shape[1:])}; "
                "the adapter's module paths or image layout do not match this model"
            )
        if self.filled[site][slot]:  # a module run twice (e.g. crops in sub-batches) would overwrite half the images
            raise ExtractError(
                f"{self.c.adapter.model_type}: site {site} layer {self.c._sites.layers[site][slot]} ran twice in one forward; "
                "pooling would be wrong, so this model needs its own adapter"
            )
        buffer[slot] = value_bd
        self.filled[site][slot] = True

    # ------------------------------------------------------------------ hooks

    def _vision_hook(self, slot: int):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.armed:
                self._store(VISION, slot, self._pool("vision", _first(output)))

        return hook

    def _connector_hook(self, site: str, slot: int):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.armed:
                self._store(site, slot, self._pool("connector", _first(output)))

        return hook

    def _llm(self, slot: int, h_btd: torch.Tensor) -> None:
        image_bd = (torch.bmm(self.image_b1t.to(h_btd.dtype), h_btd).squeeze(1).float()) / self.n_image_b1
        self._store(LLM_IMAGE, slot, image_bd)
        self._store(LLM_FINAL, slot, h_btd[:, -1])

    def _embed_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self.armed:
            self._llm(0, args[0] if args else kwargs["hidden_states"])

    def _llm_hook(self, slot: int):
        last = slot == len(self.c._sites.llm_layers)  # the final norm: the prompt's forward is complete

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.armed:
                self._llm(slot, _first(output))
                self.armed = not last

        return hook


def _first(output: Any) -> torch.Tensor:
    """A module's main output tensor (decoder layers of some versions return tuples)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _to_device(inputs: Mapping[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Tensors to ``device``; floating ones (pixels) to the model's dtype; processor-only keys dropped."""
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in _DROPPED_INPUTS:
            continue
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype if value.is_floating_point() else None, non_blocking=True)
        out[key] = value
    return out


# ---------------------------------------------------------------------------- resolution


def _resolve(model: nn.Module, adapter: Adapter) -> _Sites:
    paths = adapter.paths
    vision_blocks = _module_list(model, paths.vision_layers, adapter)
    llm_layers = _module_list(model, paths.llm_layers, adapter)
    connector = _module(model, paths.connector, adapter)
    llm_norm = _module(model, paths.llm_norm, adapter)
    inner = _module(model, paths.connector_inner, adapter) if paths.connector_inner else None
    llm_width = _out_width(llm_norm, paths.llm_norm)
    widths = {VISION: _out_width(vision_blocks[0], paths.vision_layers + ".0"), CONNECTOR: llm_width, LLM_IMAGE: llm_width, LLM_FINAL: llm_width}
    layers: dict[str, tuple[str, ...]] = {VISION: vision_layer_names(len(vision_blocks))}
    inner_in_connector = False
    if inner is not None:
        inner_width = _inner_width(model, paths.connector_inner or "")
        inner_in_connector = inner_width == llm_width
        if not inner_in_connector:
            widths[CONNECTOR_INNER] = inner_width
    layers[CONNECTOR] = connector_layer_names(inner_in_connector)
    if CONNECTOR_INNER in widths:
        layers[CONNECTOR_INNER] = (INNER,)
    llm_names = llm_layer_names(len(llm_layers))
    layers[LLM_IMAGE] = llm_names
    layers[LLM_FINAL] = llm_names
    return _Sites(vision_blocks, connector, inner, llm_layers, llm_norm, widths, layers)


def _module(model: nn.Module, path: str, adapter: Adapter) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [name for name, _ in model.named_modules()]
        close = difflib.get_close_matches(path, names, n=3, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ExtractError(f"{adapter.model_type}: module path {path!r} is not in the model{hint}; fix the site spec") from None


def _module_list(model: nn.Module, path: str, adapter: Adapter) -> nn.ModuleList:
    found = _module(model, path, adapter)
    if not isinstance(found, (nn.ModuleList, nn.Sequential)) or len(found) == 0:
        raise ExtractError(f"{adapter.model_type}: module path {path!r} is a {type(found).__name__}, not a non-empty list of layers")
    return found  # type: ignore[return-value]


def _out_width(module: nn.Module, path: str) -> int:
    """Output width of a block: its last linear's ``out_features`` or its last 1-D (norm) weight."""
    for sub in reversed(list(module.modules())):
        width = getattr(sub, "out_features", None)
        if isinstance(width, int):
            return width
        weight = getattr(sub, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim == 1:
            return int(weight.numel())
    raise ExtractError(f"cannot tell the output width of {path!r} (no linear or norm layer inside); check the site spec")


def _inner_width(model: nn.Module, path: str) -> int:
    """Width of the inner activation: ``out_features`` of the last linear registered before it in its parent."""
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    width = None
    for child_name, child in parent.named_children():
        if child_name == name:
            break
        out = getattr(child, "out_features", None)
        width = out if isinstance(out, int) else width
    if width is None:
        raise ExtractError(f"cannot tell the width of connector_inner {path!r}: no linear layer before it in its parent")
    return width
