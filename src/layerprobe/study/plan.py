"""A study expanded into its graph of steps, each named by a hash of what decides its bytes.

For every dataset x model x arm: (finetune ->) extract -> probe, or for the vision-ce arm one
finetune step that writes its results row; then one fhs step per dataset over those tables and one
report over everything. A step's ``key`` is the SHA-256 (12 hex digits) of a JSON document of
its kind, its own settings and the keys of its inputs, so:

- a rerun finds every finished step by its key and skips it;
- a changed setting changes the keys of that step and of everything downstream, and nothing else
  (a new probe setting reruns probe, fhs and report, never an extraction);
- two steps that would write the same bytes have the same key: the planner refuses them (two arms
  or models that differ only in name), since one would silently stand in for the other.

What names outputs: a local model folder's content hash (a hub model: its id and revision), the
dataset's manifest digest (ids, labels, splits, class names), prompt, candidates and limit, the
adapter's key, the site spec's bytes, and the settings that change stored values (extract:
batch size, dtype, device, chunk size, skip_bad; probe: every grid field; fhs and report: all).
Runtime settings (workers, CPUs, progress) never do. The layerprobe version does not either: a
library upgrade that changes stored bytes is a new store schema, which the store itself refuses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerprobe import vocab
from layerprobe.study.errors import StudyError
from layerprobe.study.finetune_step import FinetuneStep, VisionCEStep
from layerprobe.study.parse import settings_of
from layerprobe.study.sources import DatasetInfo, ModelShape, dataset_info, gpus_for, model_identity, model_shape
from layerprobe.study.spec import ArmEntry, DatasetEntry, ModelEntry, Study
from layerprobe.study.steps import ExtractStep, FhsStep, ProbeStep, ReportStep, Step

_EXTRACT_NAMING = ("batch_size", "dtype", "device", "chunk_samples", "skip_bad")
"""``[extract]`` settings that change stored values (the rest are runtime only)."""
_ROW_BYTES = 700
"""About one results-table row in parquet (for the size estimate)."""


@dataclass(frozen=True)
class Plan:
    """Every step of a study, inputs before the steps that read them."""

    study: Study
    steps: tuple[Step, ...]

    def by_id(self) -> dict[str, Step]:
        return {s.id: s for s in self.steps}


def digest(doc: Any) -> str:
    """12 hex digits of the SHA-256 of ``doc`` as canonical JSON."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()[:12]


def plan_study(study: Study) -> Plan:
    """Expand ``study`` into its steps (resolving every model and dataset: errors come now)."""
    models = [(m, model_identity(m, study.out), model_shape(m)) for m in study.models]
    datasets = [(d, dataset_info(d)) for d in study.datasets]
    probe_settings = {**settings_of(study.probe, skip=("stores", "out", "progress")), "device": study.probe_device}
    fhs_settings = settings_of(study.fhs)
    steps: list[Step] = []
    tables: dict[str, list[Step]] = {}
    for d, info in datasets:
        for m, identity, shape in models:
            for arm in study.arms:
                chain = _chain(study, m, identity, shape, d, info, arm, probe_settings)
                steps.extend(chain)
                tables.setdefault(d.label, []).append(chain[-1])
    for label, probes in tables.items():
        key = digest({"kind": vocab.STEP_FHS, "tables": [p.key for p in probes], "fhs": fhs_settings})
        steps.append(FhsStep(label, key, study.out / "fhs" / f"{label}-{key}", tuple(p.id for p in probes), 1 << 16,
                             tables=tuple(p.out for p in probes), fhs=study.fhs))  # fmt: skip
    every = [p for probes in tables.values() for p in probes]
    report = {"kind": vocab.STEP_REPORT, "tables": [p.key for p in every], "fhs": fhs_settings, "title": study.run.report_title,
              "html": study.run.report_html}  # fmt: skip
    key = digest(report)
    steps.append(ReportStep(study.name, key, study.out / "report" / key, tuple(p.id for p in every), (1 << 20) * len(tables),
                            tables=tuple(p.out for p in every), fhs=study.fhs, title=study.run.report_title,
                            html_page=study.run.report_html))  # fmt: skip
    _refuse_same_output(steps)
    return Plan(study, tuple(steps))


def _chain(study: Study, m: ModelEntry, identity: str, shape: ModelShape, d: DatasetEntry, info: DatasetInfo,
           arm: ArmEntry, probe_settings: dict[str, str]) -> list[Step]:  # fmt: skip
    """The steps of one model x dataset x arm: (finetune,) extract, probe; or the vision-ce step alone.
    The last step is the one that writes the arm's results table."""
    label = f"{m.label}/{d.label}/{arm.name}"
    slug = label.replace("/", "-")
    data = {"name": info.name, "manifest": info.manifest_sha256, "prompt": d.prompt, "candidates": d.candidates, "limit": d.limit}
    model = {"model": identity, "trust_remote_code": m.trust_remote_code, "site_spec": _file_digest(m.site_spec)}
    n_gpus = gpus_for(shape, study.extract.gpu_memory_gb)
    out: list[Step] = []
    adapter_key = None
    if arm.kind != vocab.ARM_BASE:
        key = digest({"kind": vocab.STEP_FINETUNE, **model, "dataset": data, "arm": arm.kind, "settings": arm.settings,
                      "device": study.extract.device})  # fmt: skip
        trainer = {"model": m, "dataset": d, "arm_kind": arm.kind, "settings": arm.settings, "device": study.extract.device,
                   "n_gpus": n_gpus, "n_cpus": study.extract.cpus}  # fmt: skip
        if arm.kind == vocab.ARM_VISION_CE:  # one results row is the arm's whole output: no store, no probes
            return [VisionCEStep(label, key, study.out / "vision-ce" / f"{slug}-{key}.parquet", (), _ROW_BYTES, **trainer)]
        out.append(FinetuneStep(label, key, study.out / "adapters" / f"{slug}-{key}", (), shape.weight_bytes // 200, **trainer))
        adapter_key = key
    settings = {name: getattr(study.extract, name) for name in _EXTRACT_NAMING}
    key = digest({"kind": vocab.STEP_EXTRACT, **model, "dataset": data, "adapter": adapter_key, "settings": settings})
    extract = ExtractStep(label, key, study.out / "stores" / f"{slug}-{key}.zarr", tuple(s.id for s in out),
                          info.n_samples * shape.store_bytes_per_sample(), model=m, dataset=d, settings=study.extract,
                          adapter=out[0].out if out else None, n_gpus=n_gpus, n_blocks=_n_blocks(study, shape, info))  # fmt: skip
    key = digest({"kind": vocab.STEP_PROBE, "store": extract.key, "probe": probe_settings})
    probe = ProbeStep(label, key, study.out / "probes" / f"{slug}-{key}.parquet", (extract.id,), _probe_rows(study, shape) * _ROW_BYTES,
                      store=extract.out, sweep=study.probe, device=study.probe_device)  # fmt: skip
    return [*out, extract, probe]


def _n_blocks(study: Study, shape: ModelShape, info: DatasetInfo) -> int:
    from layerprobe.store.layout import default_chunk_samples

    per_block = study.extract.chunk_samples or default_chunk_samples(max(shape.vision_hidden, shape.llm_hidden), info.n_samples)
    return max(1, -(-info.n_samples // per_block))


def _probe_rows(study: Study, shape: ModelShape) -> int:
    cfg = study.probe
    layers = shape.vision_layers + 2 + 2 * (shape.llm_layers + 1)
    per_layer = (len(cfg.seeds) * len(cfg.mlp_specs()) if vocab.MLP in cfg.kinds else 0) + (1 if vocab.LINEAR in cfg.kinds else 0)
    return 1 + layers * per_layer


def _file_digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        raise StudyError(f"site spec {path} cannot be read; fix the path in the study file") from None


def _refuse_same_output(steps: list[Step]) -> None:
    seen: dict[tuple[str, str], Step] = {}
    for step in steps:
        first = seen.setdefault((step.kind, step.key), step)
        if first is not step:
            raise StudyError(
                f"{step.kind} steps {first.label} and {step.label} would write the same output (same inputs and settings, "
                "different names only); remove one of the arms, models or datasets, or change its settings"
            )
