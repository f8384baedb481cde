"""The generated-answer parser on real-looking answers."""

from __future__ import annotations

import pytest

from layerprobe.answers import parse_answer

BUSI = ("Normal", "Benign", "Malignant")
YES_NO = ("Yes", "No")
COVID = ("COVID", "non-COVID")


@pytest.mark.parametrize(
    "text, candidates, expected",
    [
        ("Benign.", BUSI, 1),
        ("The answer is: malignant", BUSI, 2),
        ("no", YES_NO, 1),
        ("Yes, pneumonia is present", YES_NO, 0),
        ("No, there is no pneumonia.", YES_NO, 1),
        ("Normal or benign", BUSI, None),
        ("", BUSI, None),
        ("   \n", YES_NO, None),
        ("I cannot tell from this image.", BUSI, None),
        ("yesterday", YES_NO, None),
        ("**MALIGNANT**", BUSI, 2),
        ("non-COVID", COVID, 1),
        ("covid", COVID, 0),
        ("Answer: Benign\n", BUSI, 1),
        ("not malignant", BUSI, 2),  # negation is not interpreted (documented)
    ],
)
def test_parse_answer(text, candidates, expected) -> None:
    assert parse_answer(text, candidates) == expected
