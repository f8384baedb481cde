"""A peft LoRA adapter folder: read it, check that it was made for this model, then attach it.

peft itself accepts an adapter made for another model whenever the module names happen to match
(a Gemma3 LoRA loads into a LLaVA without a word: both name their attention ``q_proj``/``v_proj``).
Before peft sees the folder, this module compares what the adapter records with the model:

1. damage first, never skipped: ``adapter_config.json`` must parse; ``adapter_model.safetensors``
   must be whole (:func:`~.weights.check_safetensors`); a pickled ``adapter_model.bin`` alone is
   refused unless ``allow_pickle``;
2. the base model the adapter was trained on: the base model hash of layerprobe's own fine-tuning
   metadata (``layerprobe-finetune.json``, written by ``layerprobe finetune``) when present, then
   peft's ``auto_mapping.base_model_class`` (the transformers class it was trained on), then
   ``base_model_name_or_path``: the ``model_type`` of that folder's ``config.json`` when the
   folder exists here, or the hub id when both sides are hub ids;
3. the structure: every ``target_modules`` name must match a module of the model (peft's rule:
   the full name or a ``.``-suffix; a string is a regular expression), and every LoRA tensor must
   belong to an existing module and fit its shape (read from the file's header, no weights loaded).

Steps 2 and 3 are skipped with ``force`` (``--force-adapter``): a user who knows that an adapter
transfers can still apply it. Each refusal is one line naming the adapter, what it records and
what the model is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerprobe.errors import ExtractError
from layerprobe.extract.model.weights import SAFE_SUFFIX, check_safetensors, weight_files

ADAPTER_CONFIG = "adapter_config.json"
FINETUNE_METADATA = "layerprobe-finetune.json"
"""Written beside the adapter by ``layerprobe finetune`` (``layerprobe.finetune.output`` writes it;
its name and the facts below live here, the lower floor, because ``extract --adapter`` reads them)."""
FINETUNE_FORMAT = "layerprobe-finetune"
"""The metadata file's ``format``."""
ARM_FACTS = ("format_version", "base_model_id", "base_model_revision", "base_model_hash", "model_type", "dataset_name",
             "manifest_sha256", "vision_tower", "connector", "hyperparameters", "kept", "splits")
"""Metadata keys that identify a fine-tuned arm, copied into a store's ``RunMeta.extra["finetune"]`` by
``extract --adapter`` (:func:`finetune_extra`); the per-epoch metrics, timings and versions stay in the folder."""
_KEY_PREFIX = "base_model.model."
_LORA = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(\.weight)?$")
_FORCE = "pass the model it was trained on, or --force-adapter (force_adapter=True) to apply it anyway"


@dataclass(frozen=True)
class AdapterFolder:
    """What an adapter folder records about the model it was made for."""

    path: Path
    config: dict[str, Any]
    """``adapter_config.json``."""
    weights: tuple[Path, ...]
    """The adapter weight file(s) peft will load (``adapter_model.safetensors``, or ``.bin`` if allowed)."""
    finetune: dict[str, Any] | None
    """``layerprobe-finetune.json``, when the adapter was made by ``layerprobe finetune``."""


def read_adapter(path: Path, allow_pickle: bool) -> AdapterFolder:
    """Read and check an adapter folder for damage (step 1 of the module docstring)."""
    config_file = path / ADAPTER_CONFIG
    if not config_file.is_file():
        raise ExtractError(f"adapter {path} is not a peft adapter folder (no {ADAPTER_CONFIG}); pass the folder saved by save_pretrained")
    config = _read_json(config_file, "save the adapter again")
    weights = weight_files(path, allow_pickle, prefix="adapter_", exclude_prefix="")
    if not weights:
        raise ExtractError(f"adapter {path} has no adapter_model{SAFE_SUFFIX}; pass the folder saved by save_pretrained")
    return AdapterFolder(path, config, tuple(weights), read_finetune_metadata(path))


def read_finetune_metadata(folder: Path) -> dict[str, Any] | None:
    """The :data:`FINETUNE_METADATA` document of an adapter folder, checked to be one; None for a
    folder without it (an adapter trained elsewhere, or a hub id)."""
    path = folder / FINETUNE_METADATA
    if not path.is_file():
        return None
    doc = _read_json(path, "restore the file from the fine-tuning run or remove it")
    if doc.get("format") != FINETUNE_FORMAT:
        raise ExtractError(f"{path} is not a layerprobe fine-tuning metadata file (format {FINETUNE_FORMAT!r}); restore it or remove it")
    return doc


def arm_facts(adapter: str | Path) -> dict[str, Any] | None:
    """The :data:`ARM_FACTS` of the fine-tuning run that wrote ``adapter`` (None: not one of ours)."""
    doc = read_finetune_metadata(Path(adapter).expanduser())
    return None if doc is None else {key: doc[key] for key in ARM_FACTS if key in doc}


def finetune_extra(adapter: str | Path | None) -> dict[str, Any]:
    """What ``extract`` adds to ``RunMeta.extra``: ``{"finetune": arm_facts(adapter)}`` for an adapter made
    by ``layerprobe finetune``, else nothing."""
    facts = arm_facts(adapter) if adapter is not None else None
    return {"finetune": facts} if facts else {}


def check_fits(adapter: AdapterFolder, net: Any, *, model: str, model_hash: str, model_path: Path) -> None:
    """Refuse an adapter made for another model (steps 2 and 3 of the module docstring)."""
    _check_base(adapter, net, model, model_hash, model_path)
    names = {name for name, _ in net.named_modules()}
    _check_targets(adapter, names, model)
    _check_tensors(adapter, net, names, model)


def _check_base(adapter: AdapterFolder, net: Any, model: str, model_hash: str, model_path: Path) -> None:
    where = f"adapter {adapter.path}"
    if adapter.finetune is not None and adapter.finetune.get("base_model_hash"):
        base_hash = str(adapter.finetune["base_model_hash"])
        if base_hash != model_hash:
            base = adapter.finetune.get("base_model_id", "?")
            raise ExtractError(f"{where} was fine-tuned from {base} (model hash {base_hash[:12]}), but {model} has hash {model_hash[:12]}; {_FORCE}")
        return  # the hash settles it
    trained_class = (adapter.config.get("auto_mapping") or {}).get("base_model_class")
    if trained_class and trained_class != type(net).__name__:
        raise ExtractError(f"{where} was trained on a {trained_class}, but {model} is a {type(net).__name__}; {_FORCE}")
    base = adapter.config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        return
    base_folder = Path(base).expanduser()
    if (base_folder / "config.json").is_file():
        if base_folder.resolve() == model_path.resolve():
            return
        try:
            base_type = json.loads((base_folder / "config.json").read_text()).get("model_type")
        except (OSError, ValueError, AttributeError):
            return  # the base folder is not readable: nothing to compare
        model_type = getattr(net.config, "model_type", None)
        if base_type and model_type and base_type != model_type:
            raise ExtractError(f"{where} was trained on {base} (model_type {base_type!r}), but {model} has model_type {model_type!r}; {_FORCE}")
    elif _is_hub_id(base) and _is_hub_id(model) and base.lower() != model.lower():
        raise ExtractError(f"{where} was trained on {base}, not {model}; {_FORCE}")


def _is_hub_id(name: str) -> bool:
    return not name.startswith((".", "/", "~")) and name.count("/") <= 1 and not Path(name).expanduser().exists()


def _check_targets(adapter: AdapterFolder, names: set[str], model: str) -> None:
    targets = adapter.config.get("target_modules")
    if isinstance(targets, str):
        if targets != "all-linear" and not any(re.fullmatch(targets, n) for n in names):
            raise ExtractError(f"adapter {adapter.path} targets modules matching {targets!r}, and {model} has none; {_FORCE}")
        return
    for target in targets or ():
        if not any(n == target or n.endswith("." + target) for n in names):
            raise ExtractError(f"adapter {adapter.path} targets module {target!r}, which {model} does not have; {_FORCE}")


def _check_tensors(adapter: AdapterFolder, net: Any, names: set[str], model: str) -> None:
    for key, shape in _tensor_shapes(adapter):
        match = _LORA.match(key.removeprefix(_KEY_PREFIX))
        if match is None:
            continue  # not a LoRA matrix (e.g. a fully trained module); peft checks those itself
        module_name, kind = match.group("module"), match.group("kind")
        if module_name not in names:
            raise ExtractError(f"adapter {adapter.path} holds LoRA weights for {module_name}, which {model} does not have; {_FORCE}")
        want = _expected_dim(net.get_submodule(module_name), kind)
        got = shape[1] if kind.endswith("_A") else shape[0]
        if want is not None and len(shape) >= 2 and got != want:
            raise ExtractError(
                f"adapter {adapter.path}: {key} has shape {list(shape)}, which does not fit {module_name} of {model}"
                f" (expected {want} {'inputs' if kind.endswith('_A') else 'outputs'}); {_FORCE}"
            )


def _expected_dim(module: Any, kind: str) -> int | None:
    """Input width (``lora_A``) or output width (``lora_B``) the module needs, when it says."""
    names = {"lora_A": "in_features", "lora_B": "out_features", "lora_embedding_A": "num_embeddings", "lora_embedding_B": "embedding_dim"}
    value = getattr(module, names[kind], None)
    return value if isinstance(value, int) else None


def _tensor_shapes(adapter: AdapterFolder) -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = []
    for path in adapter.weights:
        if path.suffix == SAFE_SUFFIX:
            header = check_safetensors(path)
            out += [(k, tuple(v["shape"])) for k, v in header.items() if k != "__metadata__"]
        else:  # pickled, allowed: peft will unpickle it anyway; weights_only keeps it to tensors
            import torch

            try:
                state = torch.load(path, map_location="meta", weights_only=True)
            except Exception as err:  # noqa: BLE001 -- torch raises many types for a bad pickle
                raise ExtractError(f"adapter weights {path} cannot be read ({type(err).__name__}); save the adapter again") from None
            out += [(k, tuple(v.shape)) for k, v in state.items() if hasattr(v, "shape")]
    return out


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ExtractError(f"{path} cannot be read as JSON ({type(err).__name__}); {fix}") from None
    if not isinstance(doc, dict):
        raise ExtractError(f"{path} is not a JSON object; {fix}")
    return doc
