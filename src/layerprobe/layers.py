"""One way to name layers, used by extract, probe and fhs alike.

A layer selection is one of:
- ``None`` or ``"all"``: every layer;
- an ``int`` ``k >= 0``: layer ``k``; a negative int counts from the end (``-1`` is the last);
- a string ``"a:b"`` or ``"a:b:s"``: a Python slice (either end may be empty or negative);
- a comma-separated string or a sequence mixing the above, e.g. ``"0,4,-1"`` or ``"0:8,-1"``.
The result is a sorted tuple of distinct non-negative indices; an index outside ``[0, n_layers)``
is an error, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from layerprobe.errors import LayerprobeError

LayerSpec = None | int | str | Sequence[int | str]


class _Index(NamedTuple):
    index: int
    shown: int | str
    """The part as written, for the out-of-range message."""


class _Slice(NamedTuple):
    start: int | None
    stop: int | None
    step: int | None


_ALL = _Slice(None, None, None)


@dataclass(frozen=True)
class LayerSelection:
    """A layer selection whose syntax is checked: parse once (:func:`parse_layers`), then resolve
    against each module's layer count (:meth:`resolve`)."""

    spec: LayerSpec
    """The selection as given (lists as tuples), for messages and reports."""
    parts: tuple[_Index | _Slice, ...]
    """The parsed pieces, in the order given."""

    def resolve(self, n_layers: int) -> tuple[int, ...]:
        """The sorted, distinct layer indices this selection picks of a module with ``n_layers`` layers."""
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        chosen: set[int] = set()
        for part in self.parts:
            if isinstance(part, _Index):
                chosen.add(_check_index(part.index, n_layers, part.shown))
            else:
                chosen.update(range(n_layers)[slice(*part)])
        return tuple(sorted(chosen))


def parse_layers(spec: LayerSpec | LayerSelection) -> LayerSelection:
    """``spec`` as a :class:`LayerSelection` (returned as is when it is one already)."""
    if isinstance(spec, LayerSelection):
        return spec
    if spec is None:
        return LayerSelection(None, (_ALL,))
    given = spec if isinstance(spec, (int, str)) else tuple(spec)
    items = [given] if isinstance(given, (int, str)) else list(given)
    return LayerSelection(given, tuple(p for item in items for p in _parse_one(item)))


def select_layers(spec: LayerSpec | LayerSelection, n_layers: int) -> tuple[int, ...]:
    """Resolve ``spec`` against a module with ``n_layers`` layers (see the module docstring)."""
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    return parse_layers(spec).resolve(n_layers)


def _parse_one(part: int | str) -> list[_Index | _Slice]:
    if isinstance(part, bool):
        raise LayerprobeError(f"layer selection {part!r} is not an index, slice or 'all'")
    if isinstance(part, int):
        return [_Index(part, part)]
    text = part.strip()
    if "," in text:
        out: list[_Index | _Slice] = []
        for sub in text.split(","):
            if sub.strip():
                out.extend(_parse_one(sub))
        return out
    if text in ("", "all", ":"):
        return [_ALL]
    if ":" in text:
        bits = text.split(":")
        if len(bits) > 3:
            raise LayerprobeError(f"layer slice {text!r} has too many ':'; use 'start:stop[:step]'")
        try:
            nums = [int(b) if b.strip() else None for b in bits]
        except ValueError:
            raise LayerprobeError(f"layer slice {text!r} is not of the form 'start:stop[:step]'") from None
        if len(nums) == 3 and nums[2] == 0:
            raise ValueError("slice step cannot be zero")
        return [_Slice(*nums, *([None] * (3 - len(nums))))]
    try:
        index = int(text)
    except ValueError:
        raise LayerprobeError(
            f"layer selection {text!r} is not understood; use an index (-1), a slice (0:8), 'all' or a list (0,4,-1)"
        ) from None
    return [_Index(index, text)]


def _check_index(index: int, n_layers: int, shown: int | str) -> int:
    resolved = index + n_layers if index < 0 else index
    if not 0 <= resolved < n_layers:
        raise LayerprobeError(f"layer {shown} is out of range for a module with {n_layers} layers (valid: 0..{n_layers - 1} or -{n_layers}..-1)")
    return resolved
