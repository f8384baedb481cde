"""Registries fill themselves from the modules on disk (``layerprobe.discovery``)."""

from __future__ import annotations

import sys

from layerprobe.discovery import import_submodules


def test_every_public_module_of_a_package_is_imported_in_name_order(tmp_path, monkeypatch):
    package = tmp_path / "fampkg"
    package.mkdir()
    (package / "__init__.py").write_text("SEEN = []\n")
    for name in ("zeta", "alpha", "_private"):
        (package / f"{name}.py").write_text(f"from fampkg import SEEN\nSEEN.append({name!r})\n")
    (package / "notes.txt").write_text("not a module")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert import_submodules("fampkg") == ("alpha", "zeta")
        assert sys.modules["fampkg"].SEEN == ["alpha", "zeta"]
        assert "fampkg._private" not in sys.modules
        assert import_submodules("fampkg") == ("alpha", "zeta") and sys.modules["fampkg"].SEEN == ["alpha", "zeta"]  # imported once
    finally:
        for name in [m for m in sys.modules if m == "fampkg" or m.startswith("fampkg.")]:
            del sys.modules[name]


def test_a_new_adapter_module_is_found_without_a_list(tmp_path):
    """The adapter registry holds exactly what the family modules of its package register."""
    from layerprobe.extract.model import adapters
    from layerprobe.extract.model.adapters.registry import registry

    found = import_submodules(adapters.__name__)
    assert {"llava", "gemma3", "idefics3"} <= set(found)
    by_module = {a.__class__.__module__.rsplit(".", 1)[-1] for a in registry().values()}
    assert by_module <= set(found)
