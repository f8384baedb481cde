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

from layerprobe.errors import LayerprobeError

LayerSpec = None | int | str | Sequence[int | str]


def select_layers(spec: LayerSpec, n_layers: int) -> tuple[int, ...]:
    """Resolve ``spec`` against a module with ``n_layers`` layers (see the module docstring)."""
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    if spec is None:
        return tuple(range(n_layers))
    parts: list[int | str]
    if isinstance(spec, (int, str)):
        parts = [spec]
    else:
        parts = list(spec)
    chosen: set[int] = set()
    for part in parts:
        chosen.update(_parse_one(part, n_layers))
    return tuple(sorted(chosen))


def _parse_one(part: int | str, n_layers: int) -> list[int]:
    if isinstance(part, bool):
        raise LayerprobeError(f"layer selection {part!r} is not an index, slice or 'all'")
    if isinstance(part, int):
        return [_check_index(part, n_layers, part)]
    text = part.strip()
    if "," in text:
        out: list[int] = []
        for sub in text.split(","):
            if sub.strip():
                out.extend(_parse_one(sub, n_layers))
        return out
    if text in ("", "all", ":"):
        return list(range(n_layers))
    if ":" in text:
        bits = text.split(":")
        if len(bits) > 3:
            raise LayerprobeError(f"layer slice {text!r} has too many ':'; use 'start:stop[:step]'")
        try:
            nums = [int(b) if b.strip() else None for b in bits]
        except ValueError:
            raise LayerprobeError(f"layer slice {text!r} is not of the form 'start:stop[:step]'") from None
        return list(range(n_layers))[slice(*nums)]
    try:
        index = int(text)
    except ValueError:
        raise LayerprobeError(
            f"layer selection {text!r} is not understood; use an index (-1), a slice (0:8), 'all' or a list (0,4,-1)"
        ) from None
    return [_check_index(index, n_layers, text)]


def _check_index(index: int, n_layers: int, shown: int | str) -> int:
    resolved = index + n_layers if index < 0 else index
    if not 0 <= resolved < n_layers:
        raise LayerprobeError(f"layer {shown} is out of range for a module with {n_layers} layers (valid: 0..{n_layers - 1} or -{n_layers}..-1)")
    return resolved
