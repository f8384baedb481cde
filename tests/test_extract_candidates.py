"""Candidates are matched to classes by what they say or by an explicit mapping, never by position."""

from __future__ import annotations

import pytest

from layerprobe.errors import ExtractError
from layerprobe.extract.data.candidates import match_candidates, parse_candidates

FOLDER_ORDER = ("benign", "malignant", "normal")  # how an image folder sorts BUSI's classes


def test_answers_that_name_the_classes_are_matched_in_any_order() -> None:
    # the demo's bug: positional pairing scored "Normal" as the answer for benign
    assert match_candidates(FOLDER_ORDER, ("Normal", "Benign", "Malignant")) == ("Benign", "Malignant", "Normal")
    assert match_candidates(FOLDER_ORDER, [" benign.", "MALIGNANT", "Normal"]) == (" benign.", "MALIGNANT", "Normal")


def test_a_mapping_pairs_answers_that_name_no_class() -> None:
    assert match_candidates(("normal", "pneumonia"), {"pneumonia": "Yes", "normal": "No"}) == ("No", "Yes")
    assert match_candidates(("normal", "pneumonia"), {"PNEUMONIA": "Yes", "Normal": "No"}) == ("No", "Yes")


@pytest.mark.parametrize(
    "given, message",
    [
        (("Yes", "No", "Maybe"), "names none of the classes"),
        (("Benign", "benign", "Normal"), "both name class 'benign'"),
        (("Benign", "Normal"), "no candidate answer for class(es) 'malignant'"),
        ({"benign": "Normal", "malignant": "Malignant", "normal": "Benign"}, "is given for class 'benign' but names class 'normal'"),
        ({"benign": "B", "malignant": "M", "cyst": "C"}, "names class 'cyst'"),
        ({"benign": "B", "malignant": "B", "normal": "N"}, "repeat"),
    ],
)
def test_wrong_candidates_are_one_line_errors(given, message) -> None:
    with pytest.raises(ExtractError) as info:
        match_candidates(FOLDER_ORDER, given)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_parse_candidates() -> None:
    assert parse_candidates("Yes,No") == ("Yes", "No")
    assert parse_candidates("pneumonia=Yes, normal=No") == {"pneumonia": "Yes", "normal": "No"}
    for bad in ("Yes,,No", "pneumonia=Yes,No", "=Yes,normal=No", "a=1,a=2"):
        with pytest.raises(ExtractError):
            parse_candidates(bad)
