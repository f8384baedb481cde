"""What the planner needs to know about a study's inputs, without loading a model.

- :func:`model_identity`: the text that names a model's outputs. A local folder is named by the
  SHA-256 of its files (names and bytes), so an edited checkpoint gets new outputs; the digest is
  cached under the output root, keyed by each file's size and mtime, so a rerun does not re-read
  gigabytes. A hub model is named by its id and revision (its bytes are not here to hash).
- :func:`model_shape`: layer counts and widths (from ``config.json`` when the folder is here, else
  a rough estimate from the parameter count), for the dry run's size estimates and GPU requests.
- :func:`dataset_info`: the manifest (ids, labels, splits, class names) of a dataset spec. Its
  digest names outputs; image bytes are not hashed at plan time (the store records each image's
  SHA-256), so an image edited in place under the same name is not noticed by the planner.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from layerprobe.errors import LayerprobeError
from layerprobe.study.errors import StudyError
from layerprobe.study.spec import DatasetEntry, ModelEntry

_CACHE = Path(".cache") / "content-hashes.json"


def model_identity(model: ModelEntry, out_root: Path) -> str:
    """``sha256:<digest>`` of a local folder's files, or ``hub:<id>@<revision>``."""
    if not model.is_folder:
        return f"hub:{model.source}@{model.revision or 'default'}"
    return "sha256:" + folder_digest(Path(model.source), out_root / _CACHE)


def folder_digest(folder: Path, cache_file: Path) -> str:
    """SHA-256 over every file's relative path and bytes under ``folder`` (cached by size and mtime)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    stamp = hashlib.sha256(json.dumps([(p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]).encode()).hexdigest()
    cache = _read_cache(cache_file)
    hit = cache.get(str(folder))
    if hit and hit.get("stamp") == stamp:
        return hit["sha256"]
    h = hashlib.sha256()
    for p in files:
        rel = p.relative_to(folder).as_posix().encode()
        h.update(len(rel).to_bytes(8, "little") + rel)
        with p.open("rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
    digest = h.hexdigest()
    cache[str(folder)] = {"stamp": stamp, "sha256": digest}
    _write_cache(cache_file, cache)
    return digest


def _read_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path, cache: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError:  # a read-only output root only costs re-hashing next time
        pass


class ModelShape(NamedTuple):
    """What the store of a model holds per sample, and how big the model is."""

    vision_layers: int
    vision_hidden: int
    llm_layers: int
    llm_hidden: int
    weight_bytes: int
    exact: bool
    """True when read from the checkpoint's files, False for an estimate from the parameter count."""

    def store_bytes_per_sample(self) -> int:
        """bf16 bytes of every site of one sample (vision, connector, both LLM sites)."""
        return 2 * (self.vision_layers * self.vision_hidden + 2 * self.llm_hidden + 2 * (self.llm_layers + 1) * self.llm_hidden)


def model_shape(model: ModelEntry) -> ModelShape:
    """The model's shape from its ``config.json`` (local folder), else estimated from ``params_b``."""
    if model.is_folder:
        folder = Path(model.source)
        weights = sum(p.stat().st_size for p in folder.rglob("*.safetensors")) or sum(p.stat().st_size for p in folder.rglob("*.bin"))
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            config = {}
        text, vision = config.get("text_config", config), config.get("vision_config", {})
        return ModelShape(
            int(vision.get("num_hidden_layers", vision.get("depth", 24))), int(vision.get("hidden_size", vision.get("embed_dim", 1024))),
            int(text.get("num_hidden_layers", 28)), int(text.get("hidden_size", 2048)), weights, "text_config" in config,
        )  # fmt: skip
    params = (model.params_b or 7.0) * 1e9
    layers = 28 if params < 10e9 else 64
    hidden = int(round(math.sqrt(params / (12 * layers)) / 128) * 128)  # a decoder holds about 12 L d^2 weights
    return ModelShape(32, 1280, layers, hidden, int(2 * params), False)


@dataclass(frozen=True)
class DatasetInfo:
    """A resolved dataset: its digest names outputs, its size sizes stores."""

    name: str
    manifest_sha256: str
    n_samples: int


def dataset_info(dataset: DatasetEntry) -> DatasetInfo:
    """Resolve ``dataset.spec`` (as extraction does); a missing or unreadable dataset is a StudyError."""
    from layerprobe.extract.data.datasets import resolve_dataset

    try:
        manifest = resolve_dataset(dataset.spec, split_file=dataset.split_file)
    except LayerprobeError as err:
        raise StudyError(f"dataset {dataset.label!r}: {err}") from None
    if dataset.limit is not None:
        manifest = manifest.head(dataset.limit)
    return DatasetInfo(manifest.name, manifest.sha256, manifest.n_samples)


def gpus_for(shape: ModelShape, gpu_memory_gb: float) -> int:
    """Whole GPUs a model's bf16 weights need with 25% headroom (activations, the processor's batch)."""
    return max(1, math.ceil(1.25 * shape.weight_bytes / (gpu_memory_gb * 1e9)))
