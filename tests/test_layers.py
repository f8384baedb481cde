"""The one layer-selection syntax: parsed once into a LayerSelection, resolved per module."""

from __future__ import annotations

import pytest

from layerprobe.errors import LayerprobeError
from layerprobe.layers import LayerSelection, parse_layers, select_layers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, (0, 1, 2, 3, 4, 5)), ("all", (0, 1, 2, 3, 4, 5)), (":", (0, 1, 2, 3, 4, 5)), (-1, (5,)), (0, (0,)),
        ("0:3", (0, 1, 2)), ("1:", (1, 2, 3, 4, 5)), ("-2:", (4, 5)), ("::2", (0, 2, 4)), ("0,4,-1", (0, 4, 5)),
        ("0:2,-1", (0, 1, 5)), ([0, -1], (0, 5)), ((3, "0:2"), (0, 1, 3)), ("9:", ()),
    ],
)  # fmt: skip
def test_selections(spec, expected) -> None:
    assert select_layers(spec, 6) == expected
    parsed = parse_layers(spec)
    assert parse_layers(parsed) is parsed and parsed.resolve(6) == expected and select_layers(parsed, 6) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x", "layer selection 'x' is not understood"), ("1:2:3:4", "has too many ':'"), ("a:b", "is not of the form"),
        (True, "is not an index, slice or 'all'"),
    ],
)  # fmt: skip
def test_bad_syntax_fails_on_parsing(spec, message) -> None:
    with pytest.raises(LayerprobeError, match=message):
        parse_layers(spec)


def test_out_of_range_fails_on_resolving() -> None:
    selection = parse_layers("0,7")
    assert isinstance(selection, LayerSelection) and selection.spec == "0,7"
    assert selection.resolve(8) == (0, 7)
    with pytest.raises(LayerprobeError, match="layer 7 is out of range for a module with 4 layers"):
        selection.resolve(4)
    with pytest.raises(ValueError, match="n_layers must be >= 0"):
        select_layers(None, -1)
    assert hash(parse_layers([0, -1])) == hash(parse_layers((0, -1)))
