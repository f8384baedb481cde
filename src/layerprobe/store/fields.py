"""The markers on the stored dataclass fields of ``schema.py``: which decide run identity, and how
each is turned into JSON and back (``schema.stored_fields`` reads them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

# Keys of a stored field's dataclass metadata.
META_IDENTITY = "layerprobe_identity"
META_TO_JSON = "layerprobe_to_json"
META_FROM_JSON = "layerprobe_from_json"
META_SAME = "layerprobe_same"
META_OMIT_DEFAULT = "layerprobe_omit_default"


def identity_field(to_json: Callable[[Any], Any] | None = None, from_json: Callable[[Any], Any] | None = None,
                   same: Callable[[Any, Any], bool] | None = None, omit_default: bool = False, **kwargs: Any) -> Any:
    """A dataclass field that decides run identity: a store whose value differs belongs to another run.

    ``to_json``/``from_json`` convert the stored value when tuples-as-lists is not enough;
    ``same(stored, new)`` (JSON values) says when two different values still name one run (None:
    only equal values do); ``omit_default`` (needs a ``default``): the key is written only when the
    value differs from the default, and an absent key reads as the default, so a field added later
    leaves the stores that do not use it byte-identical and readable; ``kwargs`` go to
    ``dataclasses.field``.
    """
    if omit_default and "default" not in kwargs:
        raise TypeError("identity_field(omit_default=True) needs a default")
    return field(metadata={META_IDENTITY: True, META_TO_JSON: to_json, META_FROM_JSON: from_json, META_SAME: same,
                           META_OMIT_DEFAULT: omit_default}, **kwargs)


def free_field(to_json: Callable[[Any], Any] | None = None, from_json: Callable[[Any], Any] | None = None, **kwargs: Any) -> Any:
    """A stored dataclass field that may differ between sessions of one run (notes, versions, clock)."""
    return field(metadata={META_IDENTITY: False, META_TO_JSON: to_json, META_FROM_JSON: from_json, META_SAME: None}, **kwargs)


def same_source(stored: Any, new: Any) -> bool:
    """Whether two recorded model (or adapter) sources name one run, the hash field after them aside.

    A local folder is recorded as an absolute path (``layerprobe.extract.model.loading.source_id``)
    and identified by its content hash, the next identity field: the same folder typed another way,
    or moved, is the same run, and another folder differs in its hash. Hub ids (never absolute
    paths) are compared as they are. Stores made before this rule recorded a folder as typed, which
    a new run's absolute path still matches.
    """
    if stored == new:
        return True
    return isinstance(stored, str) and isinstance(new, str) and (stored.startswith("/") or new.startswith("/"))


def recorded_or_equal(stored: Any, new: Any) -> bool:
    """For a field added later: a store that predates it (nothing recorded) cannot tell, so it agrees."""
    return stored is None or stored == new


def source_identity(value: Any) -> Any:
    """What of a recorded model (or adapter) source names the run, by :func:`same_source`'s rule:
    a hub id as it is; a local folder (an absolute path) nothing, since its hash identifies it."""
    return "<local>" if isinstance(value, str) and value.startswith("/") else value


__all__ = ["free_field", "identity_field", "recorded_or_equal", "same_source", "source_identity"]
