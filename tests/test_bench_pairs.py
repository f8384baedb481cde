"""The benchmarks' pairing helpers (benchmarks/_pairs.py): the order of interleaved rounds and the
spread every printed ratio carries (issue 14, item 8)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _pairs import Spread, pair_ratios, run_rounds, spread  # noqa: E402


def test_rounds_alternate_their_order_so_a_linear_drift_hits_both_sides_alike() -> None:
    calls: list[tuple[str, int]] = []
    clock = iter(range(1, 100))

    def step(name: str):  # type: ignore[no-untyped-def]
        def run(r: int) -> float:
            calls.append((name, r))
            return float(next(clock))  # each call "slower" than the last: a machine drifting linearly

        return run

    rounds = run_rounds({"a": step("a"), "b": step("b")}, 4)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("b", 3), ("a", 3)]
    assert rounds == {"a": [1.0, 4.0, 5.0, 8.0], "b": [2.0, 3.0, 6.0, 7.0]}
    assert sum(rounds["a"]) == sum(rounds["b"])  # equal work reads equal over AB/BA pairs


def test_pair_ratios_are_baseline_over_candidate_pair_by_pair() -> None:
    rounds = {"base": [2.0, 6.0, 3.0], "new": [1.0, 2.0, 3.0]}
    assert pair_ratios(rounds, "base", "new") == Spread(2.0, 1.0, 3.0, 3)


def test_the_spread_is_the_range_not_quartiles() -> None:
    s = spread([1.0, 5.0, 2.0])
    assert (s.median, s.low, s.high, s.n) == (2.0, 1.0, 5.0, 3)
    assert str(s) == "2.00 (range 1.00-5.00, 3 pairs)"
    assert spread([4.0]) == Spread(4.0, 4.0, 4.0, 1)
