"""Splits: store column, stratified, k-fold, and the one-line errors for unusable ones."""

from __future__ import annotations

import numpy as np
import pytest

from layerprobe.errors import ProbeError
from layerprobe.probe.splits import make_splits

NAMES = ("benign", "malignant", "normal")


def _labels(n: int = 90, n_classes: int = 3) -> np.ndarray:
    return np.arange(n) % n_classes


def test_stratified_split_is_a_seeded_partition_keeping_class_balance() -> None:
    labels = _labels()
    valid = np.ones(labels.size, bool)
    valid[[3, 4]] = False
    (split,) = make_splits(labels, [""] * labels.size, valid, class_names=NAMES, seed=1)
    parts = np.concatenate([split.train, split.val, split.test])
    assert sorted(parts.tolist()) == np.flatnonzero(valid).tolist()
    for part, share in ((split.train, 0.6), (split.val, 0.2), (split.test, 0.2)):
        counts = np.bincount(labels[part], minlength=3)
        assert np.all(np.abs(counts - share * 29.3) <= 1.5)
    (again,) = make_splits(labels, [""] * labels.size, valid, class_names=NAMES, seed=1)
    (other,) = make_splits(labels, [""] * labels.size, valid, class_names=NAMES, seed=2)
    assert np.array_equal(again.test, split.test) and not np.array_equal(other.test, split.test)


def test_store_split_column_wins_and_missing_val_is_carved_from_train() -> None:
    labels = _labels(60)
    column = ["test" if i % 5 == 0 else "train" for i in range(60)]
    column[7] = ""  # unassigned samples are left out when others have a split
    (split,) = make_splits(labels, column, np.ones(60, bool), class_names=NAMES)
    assert split.name == "store"
    assert split.test.tolist() == [i for i in range(60) if i % 5 == 0]
    assert 7 not in np.concatenate([split.train, split.val])
    assert set(split.val) <= {i for i in range(60) if column[i] == "train"}
    assert len(split.val) == pytest.approx(47 * 0.25, abs=2)


def test_kfold_tests_every_sample_once() -> None:
    labels = _labels(50)
    splits = make_splits(labels, ["train"] * 50, np.ones(50, bool), class_names=NAMES, kfold=5, seed=0)
    assert len(splits) == 5
    tested = np.concatenate([s.test for s in splits])
    assert sorted(tested.tolist()) == list(range(50))
    for s in splits:
        assert not set(s.train) & set(s.val) and not set(s.train) & set(s.test) and not set(s.val) & set(s.test)
        assert len(s.train) + len(s.val) + len(s.test) == 50


@pytest.mark.parametrize(
    ("labels", "column", "kwargs", "message"),
    [
        (np.zeros(20, int), [""] * 20, {}, "single class ('benign')"),
        (np.array([0, 1, 0, 1]), [""] * 4, {"kfold": 5}, "kfold=5 needs at least 5 valid samples"),
        (_labels(30), ["dev"] * 30, {}, "split column has value(s) ['dev']"),
        (_labels(30), ["train"] * 20 + ["test"] * 10, {}, None),
        (np.array([0] * 10 + [1] * 10), ["train"] * 10 + ["test"] * 10, {}, "single class"),
    ],
)
def test_unusable_splits_raise_one_line_errors(labels: np.ndarray, column: list[str], kwargs: dict, message: str | None) -> None:
    valid = np.ones(labels.size, bool)
    if message is None:
        make_splits(labels, column, valid, class_names=NAMES, **kwargs)
        return
    with pytest.raises(ProbeError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")) as err:
        make_splits(labels, column, valid, class_names=NAMES, where="store x.zarr", **kwargs)
    assert "\n" not in str(err.value) and "store x.zarr" in str(err.value)


def test_no_valid_samples() -> None:
    with pytest.raises(ProbeError, match="no valid samples"):
        make_splits(_labels(9), [""] * 9, np.zeros(9, bool), class_names=NAMES)
