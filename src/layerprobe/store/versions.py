"""The package versions a store header (and a fine-tuning run's metadata) records."""

from __future__ import annotations

from functools import cache
from importlib import metadata

PACKAGES = ("layerprobe", "numpy", "zarr", "torch", "transformers", "peft", "ml_dtypes")
"""Packages whose versions shape a store's bytes (python's is recorded too)."""


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` and python, from package metadata (nothing is
    imported). A fresh dict each call of values read once a process: reading them took 8 ms,
    which every store and every shard of a sharded extraction paid."""
    return dict(_read())


@cache
def _read() -> tuple[tuple[str, str], ...]:
    import platform

    found = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(found)
