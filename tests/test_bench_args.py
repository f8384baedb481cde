"""The benchmarks' count flags (benchmarks/_args.py): 0 or a non-number is a one-line usage error
naming the flag, not a StatisticsError after minutes of set-up."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
from _args import count  # noqa: E402


def test_count_takes_whole_numbers_from_one() -> None:
    assert count("1") == 1
    assert count("12") == 12
    for bad in ("0", "-3", "2.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            count(bad)


@pytest.mark.parametrize("script", ["probe_throughput", "extract_throughput", "finetune_throughput", "study_overhead"])
def test_every_benchmark_rejects_zero_pairs_before_any_work(script: str) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), "--pairs", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("argument --pairs: 0 is not a whole number >= 1")
