"""Load a model + processor the way a user's checkpoint is loaded, and fingerprint it.

``load_model(model, ...)`` takes a local folder or a Hugging Face id and returns a
:class:`LoadedModel` with everything the store records about the model.

Design choices:
- One path for everyone: a hub id is first resolved to its local snapshot folder (the hub cache,
  downloading if allowed), then loaded from that folder exactly like a local checkpoint, so the
  hash is taken over the very files that were loaded.
- ``model_hash`` = SHA-256 over the weight files' names and bytes (:mod:`.weights`, cached per
  process). A local folder is recorded as its absolute path (:func:`source_id`), as information:
  the store identifies a local model by this hash, so the same folder typed another way, or moved,
  resumes the same run.
- safetensors only by default; a folder with only pickled weights is refused unless
  ``allow_pickle`` (``--allow-pickle``); a truncated ``.safetensors`` (an interrupted download) is a
  one-line error naming the file. ``trust_remote_code`` is off unless asked for.
- A string that reads as a path but is no folder is reported as a missing folder, not sent to the hub.
- ``dtype`` and ``device`` are torch values, parsed once by whoever read them as text (the run's
  config); a string is still taken from direct Python callers and parsed by the same one parser
  (:func:`~.dtypes.compute_dtype`, :func:`layerprobe.devices.parse_device`).
- The model is built with ``dtype`` as the construction dtype (transformers does this for
  ``from_pretrained(dtype=...)``), so rotary buffers are computed in that dtype, not cast later.
- A peft LoRA adapter is loaded unmerged (merging in bf16 shifts outputs by ~2e-2); the injected
  LoRA layers live inside the base model, so ``LoadedModel.model`` is the transformers model and
  every adapter's module paths still apply. The adapter folder's files are hashed like the weights.
  Before peft sees it, the adapter is checked against the model (:mod:`.peft_adapter`: its recorded
  base model, target modules and LoRA shapes); ``force_adapter`` skips that check.
- The processor of Qwen2/2.5/3-VL and SmolVLM is the video-free variant (see :mod:`.processors`);
  the tokenizer is switched to left padding (the final input token is then at position -1).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from layerprobe import vocab
from layerprobe.devices import parse_device
from layerprobe.errors import ExtractError
from layerprobe.dtypes import compute_dtype, dtype_name
from layerprobe.extract.model.peft_adapter import AdapterFolder, check_fits, read_adapter
from layerprobe.extract.model.weights import SAFE_SUFFIX, config_hash, hash_files, model_weights
from layerprobe.hardware import ResolvedDtype, checkpoint_fp32_bytes, resolve_compute_dtype


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
    """What the user passed: a hub id as given, or a local folder's absolute path (:func:`source_id`)."""
    model_revision: str | None
    """Hub revision asked for (``None`` for a local folder or the default branch)."""
    model_hash: str
    """SHA-256 over the weight files' names and bytes."""
    model_config_hash: str | None
    """SHA-256 over the config, processor and tokenizer files (``weights.config_hash``)."""
    adapter: str | None
    """peft adapter folder's absolute path, or ``None``."""
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
    allow_pickle: bool = False,
    force_adapter: bool = False,
    progress: bool = True,
) -> LoadedModel:
    """Load ``model`` (local folder or hub id) + processor; see the module docstring.

    ``allow_pickle`` also reads pickled weights (``*.bin``) where a folder has no safetensors;
    ``force_adapter`` applies an adapter that records another base model (:mod:`.peft_adapter`);
    ``progress=False`` hides the loading bars of transformers and the hub client.
    """
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else compute_dtype(dtype)
    name = dtype_name(torch_dtype)
    torch_device = device if isinstance(device, torch.device) else parse_device(device, ExtractError)
    with loading_bars(progress):
        path = local_folder(str(model), revision)
        weights = model_weights(path, allow_pickle)
        model_hash = hash_files(tuple(weights))
        config = _load_config(path, trust_remote_code)
        net = _load_weights(path, config, torch_dtype, trust_remote_code, weights[0].suffix == SAFE_SUFFIX)
        adapter_hash = None
        if adapter is not None:
            found = read_adapter(Path(adapter).expanduser(), allow_pickle)
            if not force_adapter:
                check_fits(found, net, model=str(model), model_hash=model_hash, model_path=path)
            net, adapter_hash = _attach_adapter(net, found)
    net.to(torch_device).eval()
    processor = load_processor(path, config.model_type, trust_remote_code)
    return LoadedModel(
        model=net,
        processor=processor,
        model_type=config.model_type,
        model_id=source_id(model),
        model_revision=revision,
        model_hash=model_hash,
        model_config_hash=config_hash(path),
        adapter=None if adapter is None else source_id(adapter),
        adapter_hash=adapter_hash,
        compute_dtype=name,
        device=str(torch_device),
        path=path,
    )


def source_id(source: str | os.PathLike) -> str:
    """How a model or adapter is recorded: a local folder as its absolute path, anything else (a hub id) as given.

    The store identifies a local folder by its content hash, not by this path (``store/schema.py``),
    so the same folder typed another way, or moved, resumes the same run.
    """
    path = Path(source).expanduser()
    return os.path.abspath(path) if path.is_dir() else str(source)


def local_hashes(model: str | os.PathLike, adapter: str | os.PathLike | None, allow_pickle: bool) -> dict[str, str]:
    """``model_hash``/``model_config_hash``/``adapter_hash`` of whichever of ``model`` and ``adapter`` are local folders, without loading.

    What a resume can compare before the (slow) load; a hub id or an unreadable folder is left out
    (the load reports it). The hashes are cached, so the load that follows does not hash again.
    """
    out = {}
    for key, source, read in (("model_hash", model, _model_hash), ("model_config_hash", model, lambda p, _: config_hash(p)),
                              ("adapter_hash", adapter, _adapter_hash)):  # fmt: skip
        if source is not None and Path(source).expanduser().is_dir():
            try:
                out[key] = read(Path(source).expanduser(), allow_pickle)
            except (ExtractError, OSError):
                continue
    return out


def _model_hash(path: Path, allow_pickle: bool) -> str:
    return hash_files(tuple(model_weights(path, allow_pickle)))


def _adapter_hash(path: Path, allow_pickle: bool) -> str:
    return hash_files(_adapter_files(read_adapter(path, allow_pickle)))


@contextmanager
def loading_bars(shown: bool) -> Iterator[None]:
    """Hide transformers' and huggingface_hub's progress bars inside the block unless ``shown``."""
    if shown:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    was_tf, was_hub = hf_logging.is_progress_bar_enabled(), not are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    try:
        yield
    finally:
        if was_tf:
            hf_logging.enable_progress_bar()
        if was_hub:
            enable_progress_bars()


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


def local_folder(model: str, revision: str | None) -> Path:
    """A local checkpoint folder for ``model``: the folder itself, or the hub snapshot.

    A string that reads as a path (``./x``, ``../x``, ``/x``, ``~/x``, ``a/b/c``, or ``a/b`` where
    folder ``a`` exists here) and is no folder is a mistyped folder, said so, not sent to the hub.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ExtractError(f"model {model!r} is a file, not a checkpoint folder; pass the folder that holds config.json and the weights")
    first = Path(model.split("/")[0]).expanduser()
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or (model.count("/") == 1 and first.is_dir()):
        raise ExtractError(f"model folder {model!r} does not exist; check the path (a hub id looks like org/name)")
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py", "*.bin", "*.tiktoken"]
    try:
        return Path(snapshot_download(model, revision=revision, allow_patterns=patterns))
    except Exception as err:  # the hub client raises many types (offline, 404, auth)
        raise ExtractError(f"cannot fetch model {model!r} from the hub ({type(err).__name__}: {_one_line(err)}); pass a local folder or check the id and network") from None


def _load_config(path: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except ValueError as err:
        if "trust_remote_code" in str(err) and not trust_remote_code:
            raise ExtractError(f"{path} ships its own model code; rerun with --trust-remote-code if you trust it (plus a --site-spec)") from None
        if "does not recognize this architecture" in str(err):
            raise ExtractError(_unknown_type(path)) from None
        raise ExtractError(f"cannot read the config of {path} ({_one_line(err)})") from None
    except OSError as err:
        raise ExtractError(f"cannot read the config of {path} ({_one_line(err)}); the folder needs a config.json") from None


def _unknown_type(path: Path) -> str:
    """Our own line for transformers' multi-sentence "does not recognize this architecture" message."""
    import transformers

    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    return (f"{path / 'config.json'} has model_type {model_type!r}, which transformers {transformers.__version__} does not know;"
            " upgrade transformers (pip install -U transformers), or pass --trust-remote-code if the checkpoint ships its own code")


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


def _adapter_files(found: AdapterFolder) -> tuple[Path, ...]:
    """The files the adapter hash covers: every ``adapter_*`` file of the folder."""
    return tuple(sorted(p for p in found.path.iterdir() if p.is_file() and p.name.startswith("adapter_")))


@contextmanager
def peft_quietly() -> Iterator[None]:
    """Wrap a peft model in this block: peft reads transformers' deprecated ``is_gradient_checkpointing``,
    a FutureWarning on every wrap that no user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _attach_adapter(net: Any, found: AdapterFolder) -> tuple[Any, str]:
    from peft import PeftModel

    adapter_hash = hash_files(_adapter_files(found))
    try:
        with peft_quietly():
            peft_model = PeftModel.from_pretrained(net, found.path, is_trainable=False)
    except (ValueError, KeyError, RuntimeError, OSError) as err:
        raise ExtractError(f"adapter {found.path} does not fit this model ({_one_line(err)}); pass an adapter trained on this model") from None
    return peft_model.get_base_model(), adapter_hash


def _one_line(err: BaseException | None, limit: int = 200) -> str:
    """The first line of ``err``'s message, cut at a sentence end (else a word end) within ``limit`` characters."""
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    text = lines[0].strip()
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = head.rfind(". ")
    if end > limit // 3:
        return head[: end + 1]
    cut = head.rfind(" ")
    return (head[:cut] if cut > 0 else head).rstrip(",;:") + " ..."


def resolve_for_checkpoint(requested: str, model: str, revision: str | None, device: torch.device | str,
                           *, label: str, progress: bool) -> ResolvedDtype:  # fmt: skip
    """``requested`` (a dtype name or ``auto``) resolved for the checkpoint ``model`` on ``device``:
    a :class:`~layerprobe.hardware.ResolvedDtype` (name + reason), printed as ``label: compute dtype ...``
    when ``progress``. ``auto`` reads the checkpoint's fp32 size from its safetensors headers, on the
    folder ``load_model`` will read, before anything is loaded. Extraction and fine-tuning both
    call this, so one checkpoint resolves alike in both."""
    import sys

    weight_bytes = checkpoint_fp32_bytes(local_folder(model, revision)) if requested == vocab.AUTO else None
    resolved = resolve_compute_dtype(requested, device, weight_bytes)
    if progress:
        print(f"{label}: compute dtype {resolved.name} ({resolved.reason})", file=sys.stderr)
    return resolved
