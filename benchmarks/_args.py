"""Command-line value types shared by the benchmarks. Imports only the standard library: the
benchmarks that start children import torch lazily (child start-up and peak RSS), so this module
must not pull it in."""

from __future__ import annotations

import argparse


def count(text: str) -> int:
    """argparse type of a count that must be at least 1 (rounds, pairs, images, processes): 0 would
    leave a median of nothing, which ends in a bare StatisticsError far from the flag."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value
