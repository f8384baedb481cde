"""Weight files of a checkpoint or adapter folder: which files are read, their hash, their soundness.

- Safetensors only by default. A folder whose only weights are pickled (``*.bin``, ``*.pt``,
  ``*.pth``) is refused with the reason (unpickling can run code) unless ``allow_pickle``; with it,
  safetensors still win when both are present, so the files hashed are always the files loaded.
- ``hash_files`` = SHA-256 over the files' names and bytes (sorted by name; each name is followed by
  a NUL and the file's bytes), cached per process by (paths, sizes, mtimes): hashing a 7B checkpoint
  takes tens of seconds, and the extractor hashes a local model before loading it (resume check).
- ``config_hash`` = the same hash over the folder's config, processor and tokenizer files: the same
  weights under another config (e.g. LLaVA's ``vision_feature_layer``) compute other activations.
- ``check_safetensors`` reads only the 8-byte length and the JSON header of a ``.safetensors`` file
  and compares the size the header needs with the file's size: an interrupted download or copy is
  caught as one line naming the file, before transformers or peft map it (they would fail with a
  multi-line error or read past the end).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

from layerprobe.errors import ExtractError

SAFE_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth"})
_CONFIG_SUFFIXES = frozenset({".json", ".jinja", ".model"})
_HEADER_LIMIT = 100 << 20
"""Largest JSON header accepted (the safetensors library's own limit is 100 MB)."""


def weight_files(path: Path, allow_pickle: bool, *, prefix: str = "", exclude_prefix: str = "adapter_") -> list[Path]:
    """The weight files of folder ``path`` that are loaded (see the module docstring), checked for truncation.

    ``prefix`` keeps names that start with it (``adapter_`` for an adapter folder); ``exclude_prefix``
    drops names that start with it (a model folder may hold an adapter's files beside its own).
    """
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.startswith(prefix)
                   and not (exclude_prefix and p.name.startswith(exclude_prefix)))
    safe = [p for p in files if p.suffix == SAFE_SUFFIX]
    pickled = [p for p in files if p.suffix in PICKLE_SUFFIXES]
    if safe:
        for p in safe:
            check_safetensors(p)
        return safe
    if pickled and not allow_pickle:
        raise ExtractError(
            f"{path} has only pickled weights ({pickled[0].name}), which can run code when loaded; convert them to"
            " safetensors, or pass --allow-pickle (allow_pickle=True) if you trust their source"
        )
    return pickled


def check_safetensors(path: Path) -> dict[str, Any]:
    """The JSON header of a ``.safetensors`` file; a truncated or damaged file is a one-line ExtractError."""
    redo = "an interrupted download or copy: fetch or save it again"
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            (n_header,) = struct.unpack("<Q", raw) if len(raw) == 8 else (None,)
            if n_header is None or n_header > _HEADER_LIMIT or 8 + n_header > size:
                raise ExtractError(f"{path} is truncated or not a safetensors file ({size} bytes, no complete header); {redo}")
            header = json.loads(handle.read(n_header))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise ExtractError(f"{path} has a damaged safetensors header ({type(err).__name__}); {redo}") from None
    need = 8 + n_header + max(ends, default=0)
    if size < need:
        raise ExtractError(f"{path} is truncated ({size} bytes, its header needs {need}); {redo}")
    return header


@functools.lru_cache(maxsize=64)
def _hash_cached(files: tuple[tuple[str, str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for rel, full, _size, _mtime in files:
        digest.update(rel.encode() + b"\0")
        with open(full, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def hash_files(files: tuple[Path, ...]) -> str:
    """SHA-256 over the files' names (relative to their common folder) and bytes; cached by size+mtime."""
    root = Path(os.path.commonpath([f.parent for f in files]))
    keyed = []
    for f in sorted(files):
        stat = f.stat()
        keyed.append((f.relative_to(root).as_posix(), str(f), stat.st_size, stat.st_mtime_ns))
    return _hash_cached(tuple(keyed))


def config_files(path: Path) -> tuple[Path, ...]:
    """The files of model folder ``path`` besides its weights that decide what it computes from an
    image and a prompt: model, generation, processor and tokenizer files (``*.json``, ``*.jinja``,
    ``*.model``, ``merges.txt``); not an adapter's files, nor a sharded checkpoint's index (weights)."""
    return tuple(sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("adapter_") and not p.name.endswith(".index.json")
                        and (p.suffix in _CONFIG_SUFFIXES or p.name == "merges.txt")))  # fmt: skip


def config_hash(path: Path) -> str | None:
    """:func:`hash_files` over :func:`config_files` (None: the folder has none)."""
    files = config_files(path)
    return hash_files(files) if files else None


def model_weights(path: Path, allow_pickle: bool) -> list[Path]:
    """The model weight files of checkpoint folder ``path``; none at all is a one-line ExtractError."""
    files = weight_files(path, allow_pickle)
    if not files:
        raise ExtractError(f"no weight files (*.safetensors) in {path}; point --model at a checkpoint folder")
    for index in sorted(path.glob(f"*{files[0].suffix}.index.json")):  # a sharded checkpoint: every shard it names must be there
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ExtractError(f"{index} is damaged ({type(err).__name__}); fetch the checkpoint again") from None
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise ExtractError(f"{path} lacks {missing[0]} (listed in {index.name}): an interrupted download; fetch the checkpoint again")
    return files
