"""Load a model + processor the way a user's checkpoint is loaded, and fingerprint it.

``load_model(model, ...)`` takes a local folder or a Hugging Face id and returns a
:class:`LoadedModel` with everything the store records about the model.

Design choices:
- One path for everyone: a hub id is first resolved to its local snapshot folder (the hub cache,
  downloading if allowed), then loaded from that folder exactly like a local checkpoint, so the
  hash is taken over the very files that were loaded.
- ``model_hash`` = SHA-256 over the weight files' names and bytes (sorted by name; each name is
  followed by a NUL and the file's bytes). It is computed once per process per (folder, sizes,
  mtimes) and cached, since hashing a 7B checkpoint takes tens of seconds.
- safetensors only by default (no pickle is unpickled unless ``use_safetensors=False``);
  ``trust_remote_code`` is off unless asked for.
- ``dtype`` and ``device`` are torch values, parsed once by whoever read them as text (the run's
  config); a string is still taken from direct Python callers and parsed by the same one parser
  (:func:`~.dtypes.compute_dtype`, :func:`layerprobe.devices.parse_device`).
- The model is built with ``dtype`` as the construction dtype (transformers does this for
  ``from_pretrained(dtype=...)``), so rotary buffers are computed in that dtype, not cast later.
- A peft LoRA adapter is loaded unmerged (merging in bf16 shifts outputs by ~2e-2); the injected
  LoRA layers live inside the base model, so ``LoadedModel.model`` is the transformers model and
  every adapter's module paths still apply. The adapter folder's files are hashed like the weights.
- The processor of Qwen2/2.5/3-VL and SmolVLM is the video-free variant (see :mod:`.processors`);
  the tokenizer is switched to left padding (the final input token is then at position -1).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from layerprobe.devices import parse_device
from layerprobe.errors import ExtractError
from layerprobe.extract.model.dtypes import compute_dtype, dtype_name

_WEIGHT_SUFFIXES = {True: (".safetensors",), False: (".safetensors", ".bin", ".pt", ".pth")}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for extraction, with what the store records about it."""

    model: Any
    """The transformers model (eval mode, on ``device``, LoRA layers injected when an adapter is given)."""
    processor: Any
    """Its processor (image processor + tokenizer, left padding)."""
    model_type: str
    """``config.model_type``: selects the family adapter."""
    model_id: str
    """What the user passed: a hub id or the folder as given."""
    model_revision: str | None
    """Hub revision asked for (``None`` for a local folder or the default branch)."""
    model_hash: str
    """SHA-256 over the weight files' names and bytes."""
    adapter: str | None
    """peft adapter folder as given, or ``None``."""
    adapter_hash: str | None
    """SHA-256 over the adapter folder's files, or ``None``."""
    compute_dtype: str
    """Name of the dtype the model runs in (one of ``vocab.COMPUTE_DTYPES``), as the store records it."""
    device: str
    """Device the model runs on, e.g. ``cpu`` or ``cuda:0``."""
    path: Path
    """Local folder the weights were loaded from."""


def load_model(
    model: str | os.PathLike,
    *,
    dtype: torch.dtype | str = torch.bfloat16,
    device: torch.device | str = "cpu",
    adapter: str | os.PathLike | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    use_safetensors: bool = True,
) -> LoadedModel:
    """Load ``model`` (local folder or hub id) + processor; see the module docstring."""
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else compute_dtype(dtype)
    name = dtype_name(torch_dtype)
    torch_device = device if isinstance(device, torch.device) else parse_device(device, ExtractError)
    path = _local_folder(str(model), revision)
    weights = _weight_files(path, use_safetensors)
    model_hash = _hash_files(tuple(weights))
    config = _load_config(path, trust_remote_code)
    net = _load_weights(path, config, torch_dtype, trust_remote_code, use_safetensors)
    adapter_hash = None
    if adapter is not None:
        net, adapter_hash = _attach_adapter(net, Path(adapter))
    net.to(torch_device).eval()
    processor = load_processor(path, config.model_type, trust_remote_code)
    return LoadedModel(
        model=net,
        processor=processor,
        model_type=config.model_type,
        model_id=str(model),
        model_revision=revision,
        model_hash=model_hash,
        adapter=None if adapter is None else str(adapter),
        adapter_hash=adapter_hash,
        compute_dtype=name,
        device=str(torch_device),
        path=path,
    )


def load_processor(path: str | os.PathLike, model_type: str, trust_remote_code: bool = False) -> Any:
    """The processor of a checkpoint folder (video-free where needed), tokenizer padding on the left."""
    from transformers import AutoProcessor

    from layerprobe.extract.model.processors import IMAGE_ONLY_PROCESSORS

    processor_class = IMAGE_ONLY_PROCESSORS.get(model_type)
    try:
        if processor_class is not None:
            processor = processor_class.from_pretrained(path)
        else:
            processor = AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ExtractError(f"cannot load the processor of {path} ({type(err).__name__}: {_one_line(err)}); the folder needs its processor/tokenizer files") from None
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None:
        raise ExtractError(f"the processor of {path} has no tokenizer; an image+text processor is needed")
    tokenizer.padding_side = "left"
    return processor


def _local_folder(model: str, revision: str | None) -> Path:
    """A local checkpoint folder for ``model``: the folder itself, or the hub snapshot."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ExtractError(f"model {model!r} is not a checkpoint folder; pass a folder with config.json or a hub id like org/name")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py", "*.bin", "*.tiktoken"]
    try:
        return Path(snapshot_download(model, revision=revision, allow_patterns=patterns))
    except Exception as err:  # the hub client raises many types (offline, 404, auth)
        raise ExtractError(f"cannot fetch model {model!r} from the hub ({type(err).__name__}: {_one_line(err)}); pass a local folder or check the id and network") from None


def _weight_files(path: Path, use_safetensors: bool) -> list[Path]:
    suffixes = _WEIGHT_SUFFIXES[use_safetensors]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in suffixes and not p.name.startswith("adapter_"))
    if not files:
        hint = "" if not use_safetensors else " (only .safetensors is read unless use_safetensors=False / --allow-pickle)"
        raise ExtractError(f"no weight files in {path}{hint}; point --model at a checkpoint folder")
    return files


@functools.lru_cache(maxsize=64)
def _hash_cached(files: tuple[tuple[str, str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for rel, full, _size, _mtime in files:
        digest.update(rel.encode() + b"\0")
        with open(full, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _hash_files(files: tuple[Path, ...]) -> str:
    """SHA-256 over the files' names (relative to their common folder) and bytes; cached by size+mtime."""
    root = Path(os.path.commonpath([f.parent for f in files]))
    keyed = []
    for f in sorted(files):
        stat = f.stat()
        keyed.append((f.relative_to(root).as_posix(), str(f), stat.st_size, stat.st_mtime_ns))
    return _hash_cached(tuple(keyed))


def _load_config(path: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except ValueError as err:
        if "trust_remote_code" in str(err) and not trust_remote_code:
            raise ExtractError(f"{path} ships its own model code; rerun with --trust-remote-code if you trust it (plus a --site-spec)") from None
        raise ExtractError(f"cannot read the config of {path} ({_one_line(err)})") from None
    except OSError as err:
        raise ExtractError(f"cannot read the config of {path} ({_one_line(err)}); the folder needs a config.json") from None


def _load_weights(path: Path, config: Any, dtype: Any, trust_remote_code: bool, use_safetensors: bool) -> Any:
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText

    custom = getattr(config, "auto_map", None) or {}
    for auto in (AutoModelForImageTextToText, AutoModelForCausalLM, AutoModel):
        if type(config) in auto._model_mapping or (trust_remote_code and auto.__name__ in custom):
            try:
                return auto.from_pretrained(path, config=config, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=use_safetensors)
            except (OSError, ValueError) as err:
                raise ExtractError(f"cannot load the weights of {path} ({type(err).__name__}: {_one_line(err)})") from None
    raise ExtractError(f"transformers has no model class for model_type {config.model_type!r} in {path}; a custom-code model needs --trust-remote-code")


def _attach_adapter(net: Any, adapter: Path) -> tuple[Any, str]:
    if not (adapter / "adapter_config.json").is_file():
        raise ExtractError(f"adapter {adapter} is not a peft adapter folder (no adapter_config.json); pass the folder saved by save_pretrained")
    from peft import PeftModel

    files = tuple(sorted(p for p in adapter.iterdir() if p.is_file() and p.name.startswith("adapter_")))
    adapter_hash = _hash_files(files)
    try:
        peft_model = PeftModel.from_pretrained(net, adapter, is_trainable=False)
    except (ValueError, KeyError, RuntimeError) as err:
        raise ExtractError(f"adapter {adapter} does not fit this model ({_one_line(err)})") from None
    return peft_model.get_base_model(), adapter_hash


def _one_line(err: BaseException | None) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
