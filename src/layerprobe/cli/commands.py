"""The list of CLI commands; each lives in its own module beside this one."""

from __future__ import annotations

import importlib

import click

# module name -> command attribute names in it
_COMMANDS: dict[str, tuple[str, ...]] = {
    "extract_cmd": ("extract",),
    "probe_cmd": ("probe",),
    "fhs_cmd": ("fhs", "report"),
    "store_cmd": ("info", "verify"),
    "models_cmd": ("models",),
    "finetune_cmd": ("finetune",),
    "demo_cmd": ("demo",),
    "study_cmd": ("study",),
}


def all_commands() -> list[click.Command]:
    out: list[click.Command] = []
    for module_name, names in _COMMANDS.items():
        module = importlib.import_module(f"layerprobe.cli.{module_name}")
        out.extend(getattr(module, name) for name in names)
    return out
