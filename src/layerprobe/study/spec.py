"""The study file: what a study is, as frozen dataclasses (the TOML format is :mod:`.parse`'s).

A study is models x datasets x arms, each expanded into steps (finetune -> extract -> probe ->
fhs/report) by :mod:`.plan`. Everything here is plain data, already checked: paths are absolute
(relative ones were taken relative to the study file), registry names were turned into hub ids,
and the probe and FHS settings are the library's own config objects (so a bad value failed when
the file was read, before any step ran).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerprobe import vocab

if TYPE_CHECKING:
    from layerprobe.fhs.config import FHSConfig
    from layerprobe.probe.config import SweepConfig


@dataclass(frozen=True)
class ModelEntry:
    """One model of the study."""

    label: str
    """Short name used in step and output names, e.g. ``MedGemma-4B``."""
    source: str
    """What ``extract --model`` takes: a hub id (from the registry) or an absolute checkpoint folder."""
    is_folder: bool
    """True for a local checkpoint folder: its content hash then names its outputs."""
    revision: str | None = None
    """Hub revision (branch, tag or commit); None = the default branch. Part of the identity."""
    trust_remote_code: bool = False
    """Run the checkpoint's own code (the registry says which models need it)."""
    site_spec: Path | None = None
    """Site-spec file for a model without a built-in adapter (``extract --site-spec``)."""
    params_b: float | None = None
    """Parameters in billions (registry), for size estimates and GPU requests; None = from the folder."""


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the study."""

    label: str
    """Short name used in step and output names, e.g. ``busi``."""
    spec: str
    """What ``extract --dataset`` takes, with absolute paths: a folder, a table, or ``recipe:folder``."""
    prompt: str | None = None
    """Instruction shown with each image; None = the dataset's own (recipes) or the generic one."""
    candidates: tuple[str, ...] | None = None
    """Answer ``i`` means class ``i``; None = the dataset's own (recipes) or the class names."""
    limit: int | None = None
    """Keep only the first ``limit`` samples (a smaller dataset, with its own outputs)."""
    split_file: Path | None = None
    """CSV ``id,split`` replacing the dataset's splits (``extract --split-file``); absolute. Its splits
    are in the manifest digest, so a changed file names new outputs."""


@dataclass(frozen=True)
class ArmEntry:
    """One arm: what is done to each model before extraction."""

    name: str
    """Name in step and output names; by default the kind."""
    kind: str
    """One of ``vocab.ARMS``: ``base`` extracts the model as released; the others fine-tune first."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Extra fine-tuning settings (fields of ``layerprobe.finetune.FinetuneConfig``), e.g. ``epochs``."""


@dataclass(frozen=True)
class ExtractSettings:
    """How every extraction of the study runs (``[extract]`` in the study file)."""

    batch_size: int = 8
    """Images per forward. Decides bf16 bytes slightly (a batch's make-up does), so it names outputs."""
    dtype: str = vocab.BFLOAT16
    """Compute dtype (one of ``vocab.COMPUTE_DTYPES``); names outputs."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as written (GPU and CPU bf16 results differ slightly, so
    the setting names outputs; ``auto`` is one setting wherever it runs)."""
    chunk_samples: int | None = None
    """Samples per store block; None = the store's default. Names outputs."""
    skip_bad: bool = False
    """Record undecodable images as skipped instead of failing the step. Names outputs."""
    num_workers: int = 2
    """Image-decoding worker processes per extraction (runtime only; spawned on Ray workers)."""
    prefetch: int = 2
    """Batches each decoding worker prepares ahead (runtime only)."""
    cpus: float = 1.0
    """CPUs a Ray extraction task asks for (runtime only)."""
    gpu_memory_gb: float = 80.0
    """Memory of one GPU of the cluster, to size GPU requests from the model (runtime only)."""


@dataclass(frozen=True)
class RunSettings:
    """How probes and reports run (``[probe] cpus`` and ``[report]``; none of it names outputs)."""

    probe_cpus: float = 1.0
    """CPUs a Ray probe task asks for."""
    report_title: str = "layerprobe study"
    """Title of the report."""
    report_html: bool = True
    """Also write ``report.html``."""


@dataclass(frozen=True)
class Study:
    """A whole study, read from a study file by :func:`layerprobe.study.parse.load_study`."""

    path: Path
    """The study file."""
    name: str
    """The study's name (``[study] name``; default: the file's stem)."""
    out: Path
    """Output root: every step writes under it, and ``status.json`` records the last run."""
    models: tuple[ModelEntry, ...]
    datasets: tuple[DatasetEntry, ...]
    arms: tuple[ArmEntry, ...]
    extract: ExtractSettings
    probe: SweepConfig
    """The probe grid as a sweep config whose ``stores`` is a placeholder (each probe step fills it)."""
    probe_device: str
    """``[probe] device`` as written (``auto`` is resolved where each probe runs, not here)."""
    fhs: FHSConfig
    run: RunSettings = RunSettings()
