"""What a store says about itself: run metadata, sites, samples, and the schema version.

The group attribute ``attributes["layerprobe"]`` of a store's root ``zarr.json`` holds one flat JSON
object (see docs/architecture.md, "Run metadata"). This module is the only place that turns it into
Python objects and back, and decides whether an existing store matches a new run (resume, shards).

Design choices:
- Tuples, not lists, inside the frozen dataclasses, so a value read back from JSON compares equal to
  the one the caller built.
- ``library_versions`` are read from installed package metadata (``importlib.metadata``), never by
  importing the packages, so the store never pulls in torch or transformers just to describe itself.
- Resume compatibility compares fields in the documented order and names the first one that differs;
  ``library_versions``, ``created_at`` and ``extra`` may change between runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass, field
from importlib import metadata as _metadata
from typing import Any

import numpy as np

from layerprobe.errors import StoreError

SCHEMA_VERSION = 2
"""The store layout version this code writes and reads (docs/architecture.md, "The store")."""

SPLITS = ("train", "val", "test", "")
"""Allowed values of the per-sample split column ("" = not assigned; the probe engine splits)."""

COMPUTE_DTYPES = ("bfloat16", "float16", "float32")

_SITE_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")
_RESERVED_SITE_NAMES = ("answer_logits", "samples", "commits")

# Fields that must match on resume, in the order they are compared (the first mismatch is reported).
RESUME_FIELDS = (
    "schema_version", "model_id", "model_revision", "model_hash", "model_type", "adapter",
    "adapter_hash", "dataset_name", "manifest_sha256", "prompt_template", "candidates",
    "candidate_token_ids", "class_names", "compute_dtype", "sites", "chunk_samples", "n_samples",
)

_VERSIONED_PACKAGES = ("layerprobe", "numpy", "zarr", "torch", "transformers", "peft", "ml_dtypes")


@dataclass(frozen=True)
class SiteSpec:
    """One capture site: an array ``(layer, sample, hidden)`` in the store."""

    name: str
    """Site name, e.g. ``"llm/final_token"``; also its path under ``sites/`` in the store."""
    layer_names: tuple[str, ...]
    """Names of the layers in storage order (``"embed"``, ``"0"``, ... for LLM sites)."""
    hidden: int
    """Width of one stored row (the hidden size at this site)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_names", tuple(str(n) for n in self.layer_names))
        if not isinstance(self.name, str) or not _SITE_NAME.match(self.name) or self.name.split("/")[0] in _RESERVED_SITE_NAMES:
            raise StoreError(f"site name {self.name!r} is not valid; use lower-case words joined by '/', e.g. 'llm/final_token'")
        if not self.layer_names:
            raise StoreError(f"site {self.name!r} has no layers; give at least one layer name")
        if len(set(self.layer_names)) != len(self.layer_names):
            raise StoreError(f"site {self.name!r} repeats a layer name in {list(self.layer_names)}; layer names must be unique")
        if isinstance(self.hidden, bool) or not isinstance(self.hidden, (int, np.integer)) or self.hidden < 1:
            raise StoreError(f"site {self.name!r} has hidden={self.hidden!r}; it must be a positive int")
        object.__setattr__(self, "hidden", int(self.hidden))

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)


@dataclass(frozen=True)
class RunMeta:
    """What the run was: model, adapter, dataset, prompt and answers. Stored in the root attributes."""

    model_id: str
    """Hub id or local path of the model, as the user gave it."""
    model_revision: str | None
    """Hub revision (commit) if known, else None."""
    model_hash: str
    """SHA-256 over the weight files' names and bytes."""
    model_type: str
    """The HF ``config.model_type`` (selects the family adapter)."""
    adapter: str | None
    """peft adapter path or id, or None for the base model."""
    adapter_hash: str | None
    """SHA-256 of the adapter weights, or None."""
    dataset_name: str
    """Dataset recipe or folder name."""
    manifest_sha256: str
    """SHA-256 over the manifest's ids, labels, splits and class names."""
    prompt_template: str
    """The instruction prompt, with its placeholders as given."""
    candidates: tuple[str, ...]
    """Candidate answers; candidate ``i`` is the answer meaning class ``i``."""
    candidate_token_ids: tuple[int, ...]
    """First token id of each candidate answer (the columns of ``answer_logits``)."""
    class_names: tuple[str, ...]
    """Class names; per-sample labels index into this tuple."""
    compute_dtype: str = "bfloat16"
    """dtype the model ran in; activations are always stored as bfloat16 bits."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form JSON-serialisable notes; not compared on resume."""

    def __post_init__(self) -> None:
        for name in ("candidates", "class_names"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))
        try:
            ids = tuple(int(v) for v in self.candidate_token_ids)
        except (TypeError, ValueError):
            raise StoreError(f"candidate_token_ids {self.candidate_token_ids!r} must be a sequence of ints (one per candidate)") from None
        object.__setattr__(self, "candidate_token_ids", ids)
        object.__setattr__(self, "extra", dict(self.extra))
        if not self.class_names:
            raise StoreError("class_names is empty; a run needs at least one class")
        if len(set(self.class_names)) != len(self.class_names):
            raise StoreError(f"class_names {list(self.class_names)} has duplicates; class names must be unique")
        if len(self.candidates) != len(self.class_names) or len(ids) != len(self.class_names):
            raise StoreError(
                f"{len(self.candidates)} candidates and {len(ids)} candidate token ids for {len(self.class_names)} classes;"
                " give one candidate answer and one token id per class"
            )
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise StoreError(f"compute_dtype {self.compute_dtype!r} is not one of {COMPUTE_DTYPES}")
        for name in ("model_id", "model_hash", "model_type", "dataset_name", "manifest_sha256", "prompt_template"):
            if not isinstance(getattr(self, name), str):
                raise StoreError(f"RunMeta.{name} must be a str, got {type(getattr(self, name)).__name__}")
        try:
            json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise StoreError(f"RunMeta.extra is not JSON-serialisable ({err}); keep it to str/int/float/bool/list/dict") from None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class SampleInfo:
    """Per-sample columns known before extraction (from the dataset manifest), and the one place
    their per-sample rules are checked: ids unique, splits known, labels in range."""

    ids: tuple[str, ...]
    """Sample ids (relative image paths or given ids), unique."""
    labels: np.ndarray
    """int64 ``(n_samples,)``: index into ``RunMeta.class_names``."""
    splits: tuple[str, ...]
    """``"train"``, ``"val"``, ``"test"`` or ``""`` per sample."""
    n_classes: int | None = None
    """How many classes the labels index; given, every label must lie in ``0..n_classes-1``
    (``None`` leaves the range to whoever knows the class names)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(str(i) for i in self.ids))
        object.__setattr__(self, "splits", tuple(str(s) for s in self.splits))
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
            raise StoreError(f"labels must be a 1-d integer array, got dtype {labels.dtype} and shape {labels.shape}")
        labels = labels.astype(np.int64, copy=True)
        labels.flags.writeable = False
        object.__setattr__(self, "labels", labels)
        n = len(self.ids)
        if n == 0:
            raise StoreError("a store needs at least one sample; the manifest is empty")
        if len(labels) != n or len(self.splits) != n:
            raise StoreError(f"{n} ids, {len(labels)} labels and {len(self.splits)} splits; give one of each per sample")
        seen: set[str] = set()
        for sample_id in self.ids:
            if sample_id in seen:
                raise StoreError(f"sample ids are not unique ({sample_id!r} appears twice); each sample needs its own id (e.g. its relative path)")
            seen.add(sample_id)
        bad = sorted(set(self.splits) - set(SPLITS))
        if bad:
            raise StoreError(f"unknown split value(s) {bad}; use 'train', 'val', 'test' or ''")
        if self.n_classes is not None:
            outside = labels[(labels < 0) | (labels >= self.n_classes)]
            if outside.size:
                raise StoreError(
                    f"label {int(outside[0])} is outside 0..{self.n_classes - 1} ({self.n_classes} classes); labels index class_names"
                )

    @property
    def n_samples(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class StoreHeader:
    """Everything the root attributes hold: run metadata plus the store's own shape."""

    meta: RunMeta
    sites: tuple[SiteSpec, ...]
    chunk_samples: int
    n_samples: int
    library_versions: dict[str, str]
    created_at: str

    def site(self, name: str) -> SiteSpec:
        for spec in self.sites:
            if spec.name == name:
                return spec
        raise StoreError(f"site {name!r} is not in this store; it has {[s.name for s in self.sites]}")


def new_header(meta: RunMeta, sites: tuple[SiteSpec, ...], chunk_samples: int, n_samples: int) -> StoreHeader:
    """A header for a store created now."""
    names = [s.name for s in sites]
    if not sites:
        raise StoreError("no sites given; a store needs at least one site (e.g. 'llm/final_token')")
    if len(set(names)) != len(names):
        raise StoreError(f"site names {names} repeat; each site once")
    for a in names:
        for b in names:
            if b.startswith(a + "/"):
                raise StoreError(f"site {b!r} would be nested inside site {a!r}; rename one of them")
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return StoreHeader(meta, tuple(sites), int(chunk_samples), int(n_samples), library_versions(), now)


def library_versions() -> dict[str, str]:
    """Installed versions of the packages that shape a store's bytes (metadata only, no imports)."""
    import platform

    out = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            out[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            continue
    return out


def header_to_attrs(header: StoreHeader) -> dict[str, Any]:
    """The JSON object stored as ``attributes["layerprobe"]``."""
    m = header.meta
    return {
        "schema_version": SCHEMA_VERSION,
        "model_id": m.model_id,
        "model_revision": m.model_revision,
        "model_hash": m.model_hash,
        "model_type": m.model_type,
        "adapter": m.adapter,
        "adapter_hash": m.adapter_hash,
        "dataset_name": m.dataset_name,
        "manifest_sha256": m.manifest_sha256,
        "prompt_template": m.prompt_template,
        "candidates": list(m.candidates),
        "candidate_token_ids": list(m.candidate_token_ids),
        "class_names": list(m.class_names),
        "compute_dtype": m.compute_dtype,
        "sites": {s.name: {"layer_names": list(s.layer_names), "hidden": s.hidden} for s in header.sites},
        "chunk_samples": header.chunk_samples,
        "n_samples": header.n_samples,
        "library_versions": dict(header.library_versions),
        "created_at": header.created_at,
        "extra": m.extra,
    }


def attrs_to_header(attrs: Any, where: str) -> StoreHeader:
    """Parse ``attributes["layerprobe"]``; ``where`` names the store in error messages."""
    if not isinstance(attrs, dict):
        raise StoreError(f"{where} is not a layerprobe store (its zarr.json has no 'layerprobe' attributes); pass a store made by 'layerprobe extract'")
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        known = isinstance(version, int) and not isinstance(version, bool)
        if known and version > SCHEMA_VERSION:
            hint = "upgrade layerprobe to read it"
        elif known and 1 <= version < SCHEMA_VERSION:
            hint = "it was written by an older layerprobe; extract it again into a new path"
        else:
            hint = "it was not written by a compatible layerprobe"
        raise StoreError(f"{where} has store schema version {version!r}; this layerprobe reads version {SCHEMA_VERSION} ({hint})")
    try:
        meta = RunMeta(
            **{k: attrs[k] for k in ("model_id", "model_revision", "model_hash", "model_type", "adapter", "adapter_hash",
                                     "dataset_name", "manifest_sha256", "prompt_template", "candidates",
                                     "candidate_token_ids", "class_names", "compute_dtype")},
            extra=attrs.get("extra") or {},
        )
        sites = tuple(SiteSpec(name, tuple(v["layer_names"]), int(v["hidden"])) for name, v in attrs["sites"].items())
        header = StoreHeader(meta, sites, int(attrs["chunk_samples"]), int(attrs["n_samples"]),
                             dict(attrs.get("library_versions") or {}), str(attrs.get("created_at", "")))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise StoreError(f"{where} has damaged layerprobe metadata ({type(err).__name__}: {err}); re-create the store") from None
    if header.chunk_samples < 1 or header.n_samples < 1:
        raise StoreError(f"{where} has damaged layerprobe metadata (chunk_samples={header.chunk_samples}, n_samples={header.n_samples}); re-create the store")
    return header


def first_difference(stored: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Name of the first resume field (``RESUME_FIELDS`` order) whose value differs, else None."""
    for name in RESUME_FIELDS:
        if _canonical(stored.get(name)) != _canonical(new.get(name)):
            return name
    return None


def describe_difference(stored: Any, new: Any) -> str:
    """A short one-line ``stored != new`` for error messages (long values are cut)."""
    def short(v: Any) -> str:
        text = json.dumps(v, sort_keys=True)
        return text if len(text) <= 60 else text[:57] + "..."

    return f"{short(stored)} in the store, {short(new)} now"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True, default=str)

