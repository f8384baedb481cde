"""The library versions a store records: read once a process, handed out as fresh dicts."""

from __future__ import annotations

from importlib import metadata

from layerprobe.store.versions import library_versions


def test_versions_are_the_installed_ones_and_each_call_gets_its_own_dict():
    first = library_versions()
    assert first["torch"] == metadata.version("torch") and "python" in first
    first["torch"] = "edited by a caller"  # finetune's metadata adds its own packages to the dict it gets
    assert library_versions()["torch"] == metadata.version("torch")
