"""Reading a study file (TOML, documented in docs/study.md) into a checked :class:`~.spec.Study`.

Rules, applied once here so nothing downstream re-checks:
- every table accepts only its documented keys; an unknown key is a one-line error naming the key,
  the table and the file (a typo would otherwise silently fall back to a default);
- relative paths (model folders, datasets, site specs, ``out``) are relative to the study file;
- a model is a registry name or hub id (``layerprobe models``) or an existing folder, else an error;
- ``[probe]`` and ``[fhs]`` become the library's ``SweepConfig`` and ``FHSConfig``, so their own
  checks run now, before any step.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from layerprobe import vocab
from layerprobe.errors import LayerprobeError
from layerprobe.study.errors import StudyError
from layerprobe.study.spec import ArmEntry, DatasetEntry, ExtractSettings, ModelEntry, RunSettings, Study

_TOP = ("study", "models", "datasets", "arms", "extract", "probe", "fhs", "report")
_STUDY = ("name", "out")
_MODEL = ("source", "name", "revision", "trust_remote_code", "site_spec")
_DATASET = ("spec", "name", "prompt", "candidates", "limit", "split_file")
_ARM = ("name", "kind", "settings")
_REPORT = ("title", "html")
_PROBE_RUNTIME = ("stores", "out", "progress")
"""SweepConfig fields a study sets itself (never given in ``[probe]``)."""
_RECIPE = re.compile(r"^([A-Za-z][\w.-]+):(.+)$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_LABEL = re.compile(r"[^A-Za-z0-9._-]+")
PLACEHOLDER_STORE = Path("<each probe step's store>")
"""The store in ``Study.probe`` (a template; each probe step replaces it)."""


def load_study(path: str | Path) -> Study:
    """Read and check the study file at ``path`` (see the module docstring)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise StudyError(f"study file {path} does not exist; pass the path of a .toml study file (see examples/)")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise StudyError(f"study file {path} is not valid TOML ({err}); fix the syntax") from None
    r = _Reader(path)
    r.keys(doc, _TOP, "the top level")
    head = r.table(doc, "study")
    r.keys(head, _STUDY, "[study]")
    models = tuple(r.model(item) for item in r.array(doc, "models"))
    datasets = tuple(r.dataset(item) for item in r.array(doc, "datasets"))
    arms = tuple(r.arm(item) for item in doc.get("arms", [vocab.ARM_BASE]))
    for what, items in (("model", models), ("dataset", datasets), ("arm", arms)):
        r.unique_labels(what, [getattr(i, "label", getattr(i, "name", "")) for i in items])
    probe_table = r.table(doc, "probe")
    report = r.table(doc, "report")
    r.keys(report, _REPORT, "[report]")
    run = RunSettings(probe_cpus=float(probe_table.get("cpus", 1.0)), report_title=str(report.get("title", RunSettings.report_title)),
                      report_html=bool(report.get("html", True)))  # fmt: skip
    probe = r.probe(probe_table)
    if any(a.kind != vocab.ARM_BASE for a in arms):
        r.same_split_as_trainers(probe)
    return Study(
        path=path, name=str(head.get("name", path.stem)), out=r.path(head.get("out", f"{path.stem}-out")),
        models=models, datasets=datasets, arms=arms, extract=r.extract(r.table(doc, "extract")),
        probe=probe, probe_device=str(probe_table.get("device", "cpu")), fhs=r.fhs(r.table(doc, "fhs")), run=run,
    )  # fmt: skip


def label_of(text: str) -> str:
    """``text`` as a file-name-safe label (letters, digits, ``.``, ``_``, ``-``)."""
    return _LABEL.sub("-", text).strip("-") or "x"


class _Reader:
    """The checks of one study file; every error names the file."""

    def __init__(self, path: Path) -> None:
        self.file = path
        self.base = path.parent

    def fail(self, message: str) -> StudyError:
        return StudyError(f"study file {self.file}: {message}")

    def keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(f"unknown key {key!r} in {where}; use one of: {', '.join(allowed)}")

    def table(self, doc: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = doc.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"[{key}] must be a table")
        return value

    def array(self, doc: Mapping[str, Any], key: str) -> list[Any]:
        value = doc.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail(f"{key!r} must be a non-empty array (e.g. {key} = [\"...\"] or [[{key}]] tables)")
        return value

    def entry(self, item: Any, key: str, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
        """A string item as ``{key: item}``; a table checked for unknown keys and the required one."""
        if isinstance(item, str):
            return {key: item}
        if not isinstance(item, dict) or not isinstance(item.get(key), str):
            raise self.fail(f"each of {where} is a string or a table with a {key!r} string, got {item!r}")
        self.keys(item, allowed, f"{where} entry {item.get(key)!r}")
        return item

    def path(self, text: Any) -> Path:
        return (self.base / Path(str(text)).expanduser()).resolve()

    def unique_labels(self, what: str, labels: list[str]) -> None:
        seen = set()
        for label in labels:
            if label in seen:
                raise self.fail(f"two {what}s are named {label!r}; give each a distinct name (key 'name')")
            seen.add(label)

    def model(self, item: Any) -> ModelEntry:
        from layerprobe.extract.model.model_registry import find_model

        t = self.entry(item, "source", _MODEL, "models")
        source = t["source"]
        site_spec = self.path(t["site_spec"]) if t.get("site_spec") else None
        folder = self.path(source)
        if folder.is_dir():
            return ModelEntry(label_of(t.get("name", folder.name)), str(folder), True, t.get("revision"),
                              bool(t.get("trust_remote_code", False)), site_spec)  # fmt: skip
        recipe = find_model(source)
        if recipe is None:
            raise self.fail(
                f"model {source!r} is neither a model of the registry (see `layerprobe models`) nor a folder "
                f"(looked for {folder}); fix the name or the path"
            )
        return ModelEntry(label_of(t.get("name", recipe.name)), recipe.hub_id, False, t.get("revision"),
                          bool(t.get("trust_remote_code", recipe.trust_remote_code)), site_spec, recipe.params_b)  # fmt: skip

    def dataset(self, item: Any) -> DatasetEntry:
        t = self.entry(item, "spec", _DATASET, "datasets")
        text = t["spec"]
        recipe = _RECIPE.match(text)
        if recipe and len(recipe.group(1)) > 1:  # one letter before ':' is a Windows drive
            spec, default = f"{recipe.group(1)}:{self.path(recipe.group(2))}", recipe.group(1)
        else:
            spec, default = str(self.path(text)), self.path(text).stem
        candidates = t.get("candidates")
        if candidates is not None and (not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates)):
            raise self.fail(f"dataset {text!r}: candidates must be a list of strings, one per class")
        limit = t.get("limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise self.fail(f"dataset {text!r}: limit must be a positive integer, got {limit!r}")
        split_file = None if t.get("split_file") is None else self.path(t["split_file"])
        return DatasetEntry(label_of(t.get("name", default)), spec, t.get("prompt"), tuple(candidates) if candidates else None, limit,
                            split_file)

    def arm(self, item: Any) -> ArmEntry:
        t = self.entry(item, "kind", _ARM, "arms")
        if t["kind"] not in vocab.ARMS:
            raise self.fail(f"arm kind {t['kind']!r} is not known; use one of: {', '.join(vocab.ARMS)}")
        settings = t.get("settings", {})
        if not isinstance(settings, dict) or (settings and t["kind"] == vocab.ARM_BASE):
            raise self.fail(f"arm {t.get('name', t['kind'])!r}: settings must be a table, and the base arm takes none")
        if settings:  # checked now, with placeholder paths, so that a bad setting fails before any step runs
            from layerprobe.study.finetune_step import trainer_config

            try:
                trainer_config(t["kind"], settings, model="<model>", dataset="<dataset>", out="<out>.parquet")
            except StudyError as err:
                raise self.fail(str(err)) from None
        return ArmEntry(label_of(t.get("name", t["kind"])), t["kind"], dict(settings))

    def same_split_as_trainers(self, probe: Any) -> None:
        """The trainers split a dataset without its own splits as the probe sweep does by default;
        a probe grid that splits otherwise would test probes and P_final of a fine-tuned model on
        images it was trained on."""
        if probe.kfold is not None or probe.split_seed != vocab.SPLIT_SEED or tuple(probe.split_fractions) != vocab.SPLIT_FRACTIONS:
            raise self.fail(
                f"[probe] kfold, split_seed or split_fractions differ from the split the fine-tuning arms train on (seed "
                f"{vocab.SPLIT_SEED}, fractions {vocab.SPLIT_FRACTIONS}, no k-fold): probes and P_final would be tested on images the "
                "fine-tuned model saw; remove them from [probe], or run the base arm alone"
            )

    def extract(self, table: dict[str, Any]) -> ExtractSettings:
        known = {f.name: f.default for f in fields(ExtractSettings)}
        self.keys(table, tuple(known), "[extract]")
        for key, value in table.items():
            default = known[key]
            wanted = (int,) if default is None else (int, float) if isinstance(default, float) else (type(default),)
            if isinstance(value, bool) != (bool in wanted) or not isinstance(value, wanted):
                raise self.fail(f"[extract] {key} = {value!r} must be of type {wanted[-1].__name__}")
        if table.get("dtype", vocab.BFLOAT16) not in vocab.COMPUTE_DTYPES:
            raise self.fail(f"[extract] dtype {table['dtype']!r} is not one of {', '.join(vocab.COMPUTE_DTYPES)}")
        return ExtractSettings(**table)

    def probe(self, table: dict[str, Any]) -> Any:
        from layerprobe.probe.config import LinearSpec, SweepConfig, parse_memory

        known = [f.name for f in fields(SweepConfig) if f.init and f.name not in _PROBE_RUNTIME]
        self.keys(table, (*known, "cpus"), "[probe]")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items() if k not in ("cpus", "device")}
        if not _DEVICE.match(str(table.get("device", "cpu"))):
            raise self.fail(f"[probe] device {table['device']!r} is not auto, cpu, cuda or cuda:N")
        try:
            if "linear" in kwargs:
                self.keys(kwargs["linear"], tuple(f.name for f in fields(LinearSpec)), "[probe.linear]")
                kwargs["linear"] = LinearSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs["linear"].items()})
            if "max_memory" in kwargs:
                kwargs["max_memory"] = parse_memory(kwargs["max_memory"])
            # device is parsed where each sweep runs (ProbeStep.device): this machine may have no GPU,
            # and a Ray driver that only plans need not import torch
            return SweepConfig(stores=(PLACEHOLDER_STORE,), progress=False, device=None, **kwargs)
        except LayerprobeError as err:
            raise self.fail(f"[probe]: {err}") from None
        except TypeError as err:
            raise self.fail(f"[probe] has a value of the wrong type ({err}); see docs/study.md") from None

    def fhs(self, table: dict[str, Any]) -> Any:
        from layerprobe.fhs.config import FHSConfig

        table = {("lambda_" if k == "lambda" else k): v for k, v in table.items()}
        known = [f.name for f in fields(FHSConfig) if f.init]
        self.keys(table, tuple(known), "[fhs]")
        try:
            return FHSConfig(**table)
        except LayerprobeError as err:
            raise self.fail(f"[fhs]: {err}") from None
        except TypeError as err:
            raise self.fail(f"[fhs] has a value of the wrong type ({err}); see docs/study.md") from None


def probe_for(template: Any, store: Path, out: Path | None) -> Any:
    """The study's probe sweep for one store (``template`` is ``Study.probe``)."""
    return replace(template, stores=(store,), out=out)


def settings_of(config: Any, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every init field of a config dataclass as text (``repr``), for hashing: stable and complete."""
    return {f.name: repr(getattr(config, f.name)) for f in fields(config) if f.init and f.name not in skip}
