"""What a store says about itself: run metadata, sites, samples, and the schema version.

The group attribute ``attributes["layerprobe"]`` of a store's root ``zarr.json`` holds one flat JSON
object (see docs/architecture.md, "Run metadata"). This module is the only place that turns it into
Python objects and back, and the only place that says which of its fields decide whether an
existing store belongs to a new run (resume, shards); ``identity.py`` compares them.

Design choices:
- Tuples, not lists, inside the frozen dataclasses, so a value read back from JSON compares equal to
  the one the caller built.
- ``library_versions`` are read from installed package metadata (``importlib.metadata``), never by
  importing the packages, so the store never pulls in torch or transformers just to describe itself.
- The stored keys are the dataclass fields themselves (:func:`stored_fields`; markers in ``fields.py``),
  so a field is named once. ``identity_field()`` ones decide run identity; the others
  (``library_versions``, ``created_at``, ``extra``) may change between runs. Identity fields are
  stored first, in the order they are compared, so an error names the first that differs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from functools import cache
from typing import Any, NamedTuple

import numpy as np

from layerprobe.errors import StoreError
from layerprobe.store.fields import META_FROM_JSON, META_IDENTITY, META_OMIT_DEFAULT, META_SAME, META_TO_JSON, free_field, identity_field
from layerprobe.store.fields import recorded_or_equal, same_source
from layerprobe.store.versions import library_versions
from layerprobe.vocab import ANSWER_SITE, BFLOAT16, COMPUTE_DTYPES
from layerprobe.vocab import STORED_SPLITS as SPLITS  # the allowed values of the per-sample split column

SCHEMA_VERSION = 3
"""The store layout version this code creates (docs/architecture.md, "The store")."""
CRC32 = "crc32"
"""Chunk checksum of schema 3: CRC-32 (zlib's, 8 hex digits). Why: ``chunkio.CHECKSUM``."""
XXH3_64 = "xxh3_64"
"""Chunk checksum of schema 2: XXH3-64 (16 hex digits)."""
CHUNK_CHECKSUMS = {2: XXH3_64, 3: CRC32}
"""Every schema version this code reads -> the checksum algorithm its commit records name and hold.
The versions differ in nothing else. A store keeps its version (a resumed schema-2 store is still
written with XXH3-64), so one store never mixes algorithms; layerprobe before schema 3 refuses a
schema-3 store with "upgrade layerprobe" instead of finding no valid commit record in it."""

_SITE_NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")
_RESERVED_SITE_NAMES = (ANSWER_SITE, "samples", "commits")


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

    model_id: str = identity_field(same=same_source)
    """Hub id of the model, or its local folder's absolute path; a local model is identified by
    ``model_hash``, its path is information (see :func:`same_source`)."""
    model_revision: str | None = identity_field()
    """Hub revision (commit) if known, else None."""
    model_hash: str = identity_field()
    """SHA-256 over the weight files' names and bytes."""
    model_type: str = identity_field()
    """The HF ``config.model_type`` (selects the family adapter)."""
    adapter: str | None = identity_field(same=same_source)
    """peft adapter folder (absolute path), or None for the base model; identified by ``adapter_hash``."""
    adapter_hash: str | None = identity_field()
    """SHA-256 of the adapter weights, or None."""
    dataset_name: str = identity_field()
    """Dataset recipe or folder name."""
    manifest_sha256: str = identity_field()
    """SHA-256 over the manifest's ids, labels, splits and class names."""
    prompt_template: str = identity_field()
    """The instruction prompt, with its placeholders as given."""
    candidates: tuple[str, ...] = identity_field()
    """Candidate answers; candidate ``i`` is the answer meaning class ``i``."""
    candidate_token_ids: tuple[int, ...] = identity_field()
    """First token id of each candidate answer (the columns of ``answer_logits``)."""
    class_names: tuple[str, ...] = identity_field()
    """Class names; per-sample labels index into this tuple."""
    compute_dtype: str = identity_field(default=BFLOAT16)
    """dtype the model ran in; activations are always stored as bfloat16 bits."""
    answer_tokens: int = identity_field(from_json=int, omit_default=True, default=0)
    """Tokens of greedy generation after the prompt (the generated answer, stored per sample in
    ``samples/answer_text``); 0 (the default, and what a store without the key means) = no
    generation, forced choice over ``answer_logits`` only. Its key is written only when not 0."""
    dicom_frame: str | int | None = identity_field(omit_default=True, default=None)
    """Frame rule for multi-frame DICOM files (``first``, ``middle``, an index; None: refused); another
    rule on resume would mix frames. Its key is written only when set."""
    model_config_hash: str | None = identity_field(same=recorded_or_equal, omit_default=True, default=None)
    """SHA-256 over the model's config, processor and tokenizer files (the same weights under another
    config compute other activations); a store from before this field records none."""
    extra: dict[str, Any] = free_field(from_json=lambda v: v or {}, default_factory=dict)
    """Free-form JSON-serialisable notes; not compared on resume."""

    def __post_init__(self) -> None:
        for name in _fields_typed(RunMeta, "tuple[str, ...]"):
            object.__setattr__(self, name, tuple(str(v) for v in getattr(self, name)))
        try:
            ids = tuple(int(v) for v in self.candidate_token_ids)
        except (TypeError, ValueError):
            raise StoreError(f"candidate_token_ids {self.candidate_token_ids!r} must be a sequence of ints (one per candidate)") from None
        object.__setattr__(self, "candidate_token_ids", ids)
        object.__setattr__(self, "extra", dict(self.extra))
        if isinstance(self.answer_tokens, bool) or not isinstance(self.answer_tokens, (int, np.integer)) or self.answer_tokens < 0:
            raise StoreError(f"RunMeta.answer_tokens={self.answer_tokens!r} must be an int >= 0 (0: no generated answers)")
        object.__setattr__(self, "answer_tokens", int(self.answer_tokens))
        if not self.class_names:
            raise StoreError("class_names is empty; a run needs at least one class")
        if len(set(self.class_names)) != len(self.class_names):
            raise StoreError(f"class_names {list(self.class_names)} has duplicates; class names must be unique")
        if len(self.candidates) != len(self.class_names) or len(ids) != len(self.class_names):
            raise StoreError(f"{len(self.candidates)} candidates and {len(ids)} candidate token ids for {len(self.class_names)} classes;"
                             " give one candidate answer and one token id per class")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise StoreError(f"compute_dtype {self.compute_dtype!r} is not one of {COMPUTE_DTYPES}")
        for name in _fields_typed(RunMeta, "str"):
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

    def digest(self, class_names: tuple[str, ...]) -> str:
        """``manifest_sha256``: what the samples are (see :func:`manifest_digest`)."""
        return manifest_digest(self.ids, self.labels, self.splits, class_names)


def manifest_digest(ids: Any, labels: Any, splits: Any, class_names: Any) -> str:
    """SHA-256 (hex) of the UTF-8 JSON ``{"class_names", "ids", "labels", "splits"}``, keys sorted,
    no spaces: what the samples are, independent of where the files lie. The extractor records it
    as ``RunMeta.manifest_sha256``; ``open_store`` recomputes it from the stored columns, so labels,
    ids, splits or class names edited after extraction are refused, never trained on."""
    doc = {"class_names": [str(c) for c in class_names], "ids": [str(i) for i in ids],
           "labels": [int(v) for v in labels], "splits": [str(s) for s in splits]}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sites_to_json(sites: tuple[SiteSpec, ...]) -> dict[str, Any]:
    return {s.name: {"layer_names": list(s.layer_names), "hidden": s.hidden} for s in sites}


def _sites_from_json(doc: dict[str, Any]) -> tuple[SiteSpec, ...]:
    return tuple(SiteSpec(name, tuple(v["layer_names"]), int(v["hidden"])) for name, v in doc.items())


@dataclass(frozen=True)
class StoreHeader:
    """Everything the root attributes hold: run metadata plus the store's own shape."""

    # kw_only: stored first, passed only to create or resume a store of an older readable version
    schema_version: int = identity_field(from_json=int, default=SCHEMA_VERSION, kw_only=True)
    """Store layout version: ``SCHEMA_VERSION`` for a new store, or another key of ``CHUNK_CHECKSUMS``."""
    meta: RunMeta
    """The run; its fields are stored flat, beside the header's own."""
    sites: tuple[SiteSpec, ...] = identity_field(to_json=_sites_to_json, from_json=_sites_from_json)
    """The capture sites, in storage order."""
    chunk_samples: int = identity_field(from_json=int)
    """Samples per block (one chunk of every array)."""
    n_samples: int = identity_field(from_json=int)
    """Samples in the store."""
    library_versions: dict[str, str] = free_field(to_json=dict, from_json=lambda v: dict(v or {}), default_factory=dict)
    """Installed versions of the packages that shape the bytes, when the store was created."""
    created_at: str = free_field(from_json=str, default="")
    """ISO time of creation (UTC, seconds)."""

    @property
    def chunk_checksum(self) -> str:
        """The checksum algorithm of this store's commit records (``CHUNK_CHECKSUMS``)."""
        return CHUNK_CHECKSUMS[self.schema_version]

    def site(self, name: str) -> SiteSpec:
        for spec in self.sites:
            if spec.name == name:
                return spec
        raise StoreError(f"site {name!r} is not in this store; it has {[s.name for s in self.sites]}")


def new_header(meta: RunMeta, sites: tuple[SiteSpec, ...], chunk_samples: int, n_samples: int,
               schema_version: int = SCHEMA_VERSION) -> StoreHeader:
    """A header for a store created now (``schema_version``: see ``StoreHeader.schema_version``)."""
    if schema_version not in CHUNK_CHECKSUMS:
        raise StoreError(f"store schema version {schema_version!r} cannot be written; use one of {sorted(CHUNK_CHECKSUMS)}")
    names = [s.name for s in sites]
    if not sites:
        raise StoreError("no sites given; a store needs at least one site (e.g. 'llm/final_token')")
    if len(set(names)) != len(names):
        raise StoreError(f"site names {names} repeat; each site once")
    nested = next(((a, b) for a in names for b in names if b.startswith(a + "/")), None)
    if nested:
        raise StoreError(f"site {nested[1]!r} would be nested inside site {nested[0]!r}; rename one of them")
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return StoreHeader(meta, tuple(sites), int(chunk_samples), int(n_samples), library_versions(), now, schema_version=schema_version)


class StoredField(NamedTuple):
    """One key of ``attributes["layerprobe"]``: a field of ``RunMeta`` or of ``StoreHeader``."""

    name: str
    """The key, which is the field's name."""
    of_run: bool
    """A ``RunMeta`` field (else one of the header's own)."""
    identity: bool
    """Decides run identity (see :func:`identity_field`)."""
    to_json: Callable[[Any], Any]
    """Turns the field's value into what the JSON holds (tuples become lists unless the field says otherwise)."""
    from_json: Callable[[Any], Any] | None
    """Turns the stored value into what the dataclass takes; None: taken as stored."""
    same: Callable[[Any, Any], bool] | None
    """``same(stored, new)``: different JSON values that still name one run (None: equal values only)."""
    omit_default: bool = False
    """The key is left out while the value is ``default`` (see :func:`identity_field`)."""
    default: Any = None
    """The value an absent key means (``omit_default`` fields only)."""

    def absent(self) -> Any:
        """What a stored object without this key holds: the default of an ``omit_default`` field, else None."""
        return self.to_json(self.default) if self.omit_default else None


@cache
def stored_fields() -> tuple[StoredField, ...]:
    """Every key of the stored object, in stored order (see the module docstring)."""
    run = [_stored(f, of_run=True) for f in fields(RunMeta)]
    out: list[StoredField] = []
    for f in fields(StoreHeader):
        out += [r for r in run if r.identity] if f.name == "meta" else [_stored(f, of_run=False)]
    return tuple(out + [r for r in run if not r.identity])


def identity_fields() -> tuple[str, ...]:
    """Names of the fields that decide run identity, in the order they are compared."""
    return tuple(f.name for f in stored_fields() if f.identity)


def header_to_attrs(header: StoreHeader, *, every_key: bool = False) -> dict[str, Any]:
    """The JSON object stored as ``attributes["layerprobe"]``; an ``omit_default`` field at its
    default has no key unless ``every_key`` (what a run comparison wants: every field named)."""
    out = {}
    for f in stored_fields():
        value = getattr(header.meta if f.of_run else header, f.name)
        if every_key or not (f.omit_default and value == f.default):
            out[f.name] = f.to_json(value)
    return out


def attrs_to_header(attrs: Any, where: str) -> StoreHeader:
    """Parse ``attributes["layerprobe"]``; ``where`` names the store in error messages."""
    if not isinstance(attrs, dict):
        raise StoreError(f"{where} is not a layerprobe store (its zarr.json has no 'layerprobe' attributes); pass a store made by 'layerprobe extract'")
    version = attrs.get("schema_version")
    known = isinstance(version, int) and not isinstance(version, bool)
    if not known or version not in CHUNK_CHECKSUMS:
        if known and version > SCHEMA_VERSION:
            hint = "upgrade layerprobe to read it"
        elif known and 1 <= version < SCHEMA_VERSION:
            hint = "it was written by an older layerprobe; extract it again into a new path"
        else:
            hint = "it was not written by a compatible layerprobe"
        readable = " and ".join(str(v) for v in sorted(CHUNK_CHECKSUMS))
        raise StoreError(f"{where} has store schema version {version!r}; this layerprobe reads versions {readable} ({hint})")
    try:
        meta = RunMeta(**_from_attrs(attrs, of_run=True))
        header = StoreHeader(meta=meta, **_from_attrs(attrs, of_run=False))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise StoreError(f"{where} has damaged layerprobe metadata ({type(err).__name__}: {err}); re-create the store") from None
    if header.chunk_samples < 1 or header.n_samples < 1:
        raise StoreError(f"{where} has damaged layerprobe metadata (chunk_samples={header.chunk_samples}, n_samples={header.n_samples}); re-create the store")
    return header


def _from_attrs(attrs: dict[str, Any], *, of_run: bool) -> dict[str, Any]:
    """Keyword arguments for ``RunMeta`` (or the header's own fields) from the stored object.

    Identity fields must be there (a KeyError: damaged); a missing free or ``omit_default`` field
    takes its default.
    """
    out = {}
    for f in stored_fields():
        if f.of_run == of_run and ((f.identity and not f.omit_default) or f.name in attrs):
            out[f.name] = attrs[f.name] if f.from_json is None else f.from_json(attrs[f.name])
    return out


def _stored(f: Field[Any], *, of_run: bool) -> StoredField:
    # Every stored field says whether it decides identity: a KeyError here is a field added without identity_field()/free_field().
    omit = bool(f.metadata.get(META_OMIT_DEFAULT))
    return StoredField(f.name, of_run, f.metadata[META_IDENTITY], f.metadata[META_TO_JSON] or _tuples_as_lists, f.metadata[META_FROM_JSON],
                       f.metadata[META_SAME], omit, f.default if omit else None)


def _tuples_as_lists(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@cache
def _fields_typed(cls: type, annotation: str) -> tuple[str, ...]:
    """Fields of ``cls`` annotated exactly ``annotation`` (the source text: annotations are not evaluated here)."""
    return tuple(f.name for f in fields(cls) if f.type == annotation)
