"""Run identity: is an existing store the same run as the one about to write into it?

One comparator, :func:`first_difference`, over the fields that ``schema.py`` marks ``identity_field()``,
in their stored order, with values compared as the JSON the store holds. Three callers use it: the
extractor before it loads a model (what the config and the dataset know), the extractor after it
was handed a loaded model (that model against the config), and ``StoreWriter.open`` (every field,
then the codec and the per-sample columns, which are not header fields). Each error names the
first field that differs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from layerprobe.errors import StoreError
from layerprobe.store.schema import RunMeta, SampleInfo, SiteSpec, StoreHeader, header_to_attrs, identity_fields, stored_fields

if TYPE_CHECKING:
    from layerprobe.store.reader import Store


class Difference(NamedTuple):
    """The first identity field whose value differs."""

    field: str
    have: Any
    """The value that exists (in the store, or in the loaded model)."""
    want: Any
    """The value the new run asks for."""

    def describe(self) -> str:
        """A short one-line ``have != want`` for error messages (long values are cut)."""
        return f"{_short(self.have)} in the store, {_short(self.want)} now"


def first_difference(have: Mapping[str, Any], want: Mapping[str, Any]) -> Difference | None:
    """The first identity field (in stored order) that ``want`` names and ``have`` holds differently, else None.

    Values are compared as JSON (tuples equal lists), or by the field's own ``same`` rule where it
    has one (a local model is identified by its hash, not its path: ``schema.same_source``); a
    field ``have`` lacks counts as None, or as its default for an ``omit_default`` field (a store
    without ``answer_tokens`` holds 0). ``want``
    may name stored fields only (the free ones are not compared), so a misspelt name fails here
    instead of being silently skipped.
    """
    unknown = sorted(set(want) - {f.name for f in stored_fields()})
    if unknown:
        raise ValueError(f"{unknown} are not stored run fields; the identity fields are {list(identity_fields())}")
    for f in stored_fields():
        if not f.identity or f.name not in want:
            continue
        ours, theirs = have.get(f.name, f.absent()), want.get(f.name, f.absent())  # an absent omit_default key is its default
        if _canonical(ours) == _canonical(theirs):
            continue
        if f.same is None or not f.same(json.loads(_canonical(ours)), json.loads(_canonical(theirs))):
            return Difference(f.name, ours, theirs)
    return None


def check_same_run(store: Store, fields: Mapping[str, Any]) -> None:
    """Refuse to resume ``store`` when one of these identity fields differs (values as stored in JSON).

    Only the given fields are compared: the extractor checks what it knows before it loads a model;
    ``StoreWriter.open`` checks them all (:func:`check_resume`).
    """
    diff = first_difference(header_to_attrs(store.header), fields)
    if diff is not None:
        raise _other_run(store, diff)


def check_resume(store: Store, meta: RunMeta, sites: tuple[SiteSpec, ...], samples: SampleInfo,
                 chunk_samples: int | None, codec: str | None, schema_version: int | None = None) -> None:
    """Refuse to write into a store made for another run; name the first field that differs.

    ``chunk_samples``, ``codec`` and ``schema_version`` None mean "as stored": a store of an older
    readable schema is resumed in its own version (and checksum algorithm).
    """
    wanted = StoreHeader(meta, sites, chunk_samples or store.chunk_samples, samples.n_samples,
                         schema_version=schema_version or store.header.schema_version)
    diff = first_difference(header_to_attrs(store.header), header_to_attrs(wanted, every_key=True))
    if diff is None and codec is not None and codec != store.codec:
        diff = Difference("codec", store.codec, codec)
    if diff is None:
        diff = _first_sample_difference(store, samples)
    if diff is not None:
        raise _other_run(store, diff)


def _first_sample_difference(store: Store, samples: SampleInfo) -> Difference | None:
    columns: Sequence[tuple[str, Sequence[Any], Sequence[Any]]] = (
        ("ids", store.ids, samples.ids),
        ("labels", tuple(store.labels.tolist()), samples.labels.tolist()),
        ("splits", store.splits, samples.splits),
    )
    for name, ours, theirs in columns:
        if tuple(ours) != tuple(theirs):
            first = next(i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y)
            return Difference(f"samples.{name}[{first}]", ours[first], theirs[first])
    return None


_WHAT_CHANGED = {
    "model_hash": "the model's weight files differ",
    "model_config_hash": "the model folder's config, processor or tokenizer files (*.json, *.jinja, *.model, merges.txt) differ",
    "adapter_hash": "the adapter's files differ",
}
"""What a differing hash field means, for the error."""


def _other_run(store: Store, diff: Difference) -> StoreError:
    why = f": {_WHAT_CHANGED[diff.field]}" if diff.field in _WHAT_CHANGED else ""
    return StoreError(
        f"{store.path} was created with a different {diff.field} ({diff.describe()}){why};"
        " rerun with the original settings or choose a new output path"
    )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=True, default=str)
