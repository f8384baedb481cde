"""The steps of a study: one small class per kind, each calling one public library API.

A :class:`Step` is plain, picklable data (it travels to Ray workers): what it reads, what it writes
(``out``, named by ``key``, a hash of everything that decides its bytes) and ``run()``, which does
the work in the calling process. Engines only ever call ``run()`` or, where a step can be split,
the split methods of :class:`ExtractStep` (store blocks) and :class:`ProbeStep` (slab groups).

Adding a kind is one class: subclass :class:`Step`, set ``kind``, implement ``run()`` (and
``needs_all_inputs = False`` if it should run on what its inputs left); the planner builds it
(see :mod:`.finetune_step` for the fine-tuning arms).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from layerprobe import vocab
from layerprobe.study.errors import StudyError
from layerprobe.study.spec import DatasetEntry, ExtractSettings, ModelEntry

if TYPE_CHECKING:
    import polars as pl

    from layerprobe.fhs.config import FHSConfig
    from layerprobe.probe.config import SweepConfig


@dataclass(frozen=True)
class Step:
    """One unit of work whose output is a pure function of its identity."""

    kind: ClassVar[str] = ""
    needs_all_inputs: ClassVar[bool] = True
    """False: the step runs on whatever its inputs produced and says what is missing (fhs, report)."""
    label: str
    """Human name, unique per kind, e.g. ``llava/synthetic/base``."""
    key: str
    """12 hex digits: a hash of the step's settings and its inputs' keys (see :mod:`.plan`)."""
    out: Path
    """Where the step writes (a file or a folder under the output root)."""
    deps: tuple[str, ...]
    """Ids of the steps whose outputs this one reads."""
    est_bytes: int
    """Estimated bytes on disk of ``out`` (the dry run's size column)."""

    @property
    def id(self) -> str:
        """``kind/label``: unique within a plan."""
        return f"{self.kind}/{self.label}"

    def run(self) -> list[str]:
        """Do the work here; return the inputs found missing (empty when all were there)."""
        raise NotImplementedError

    def cpus(self, settings: Any) -> float:
        """CPUs a distributed engine asks for (``settings``: the study's RunSettings)."""
        return settings.probe_cpus

    def gpus(self) -> int:
        """GPUs a distributed engine asks for when the cluster has any."""
        return 0


@dataclass(frozen=True)
class ExtractStep(Step):
    """One store: a model (maybe with an adapter) over a dataset (``run_extract``)."""

    kind: ClassVar[str] = vocab.STEP_EXTRACT
    model: ModelEntry = None  # type: ignore[assignment]
    dataset: DatasetEntry = None  # type: ignore[assignment]
    settings: ExtractSettings = ExtractSettings()
    adapter: Path | None = None
    """Adapter folder written by the arm's finetune step; None for the base arm."""
    n_gpus: int = 1
    """GPUs the model needs (from its size), asked for when the cluster has GPUs."""
    n_blocks: int = 1
    """Store blocks the extraction writes (estimated from the model's widths when ``chunk_samples``
    is not set): the most shards worth running, since a shard writes whole blocks."""

    def config(self, shard: tuple[int, int] = (0, 1)) -> Any:
        from layerprobe.extract.config import ExtractConfig

        s = self.settings
        return ExtractConfig(
            model=self.model.source, dataset=self.dataset.spec, out=self.out, revision=self.model.revision,
            adapter=None if self.adapter is None else str(self.adapter), trust_remote_code=self.model.trust_remote_code,
            site_spec=self.model.site_spec, prompt=self.dataset.prompt, candidates=self.dataset.candidates,
            batch_size=s.batch_size, num_workers=s.num_workers, prefetch=s.prefetch, dtype=s.dtype, device=s.device,
            shard=shard, limit=self.dataset.limit, split_file=self.dataset.split_file, skip_bad=s.skip_bad, chunk_samples=s.chunk_samples, progress=False,
        )  # fmt: skip

    def run(self) -> list[str]:
        self.run_shard(0, 1)
        self.finish()
        return []

    def run_shard(self, k: int, n: int) -> None:
        """Write blocks ``k, k+n, ...`` of the store (the block-aligned ``--shard k/n`` rule)."""
        from transformers.utils import logging as hf_logging

        from layerprobe.extract.runner import run_extract

        hf_logging.disable_progress_bar()  # the study prints a line per step; per-checkpoint bars are noise
        run_extract(self.config((k, n)))

    def finish(self) -> None:
        """After every shard: the store must be complete; write ``samples.parquet`` if no shard did."""
        from layerprobe.store import open_store, write_samples_parquet

        store = open_store(self.out)
        if not store.complete:
            missing = int((~store.committed).sum())
            raise StudyError(f"store {self.out} still misses {missing} samples after every shard ran; rerun the study to resume it")
        if not (self.out / "samples.parquet").exists():
            write_samples_parquet(store)

    def cpus(self, settings: Any) -> float:
        return self.settings.cpus

    def gpus(self) -> int:
        return self.n_gpus


@dataclass(frozen=True)
class ProbeStep(Step):
    """The probe sweep of one store into one results table (``run_sweep``)."""

    kind: ClassVar[str] = vocab.STEP_PROBE
    store: Path = Path()
    sweep: SweepConfig = None  # type: ignore[assignment]
    """The study's probe grid (its ``stores`` a placeholder)."""
    device: str = "cpu"
    """``[probe] device`` as written, parsed where the sweep runs (``auto`` = that machine's CUDA)."""

    def config(self, out: Path | None = None, **changes: Any) -> SweepConfig:
        from dataclasses import replace

        return replace(self.sweep, stores=(self.store,), out=out, device=self.device, **changes)

    def run(self) -> list[str]:
        from layerprobe.probe.sweep import run_sweep

        run_sweep(self.config(self.out))
        return []

    def parts(self, n_parts: int) -> list[dict[str, Any]]:
        """The sweep cut into about ``n_parts`` sweeps of one site and a run of its layers each: the
        changes to :meth:`config` of each, so that a part's config (and its device) is made where it
        runs."""
        from layerprobe.store import open_store

        store = open_store(self.store)
        sites = [s for s in (self.sweep.sites or tuple(store.sites)) if s != vocab.ANSWER_SITE and s in store.sites]
        if not sites:  # let run_sweep say what is wrong, in one line
            return [{}]
        layers = {s: self.sweep.layers.resolve(len(store.sites[s].layer_names)) for s in sites}
        total = sum(len(v) for v in layers.values())
        parts = []
        for site in sites:
            chosen = list(layers[site])
            pieces = max(1, min(len(chosen), round(n_parts * len(chosen) / total)))
            size = -(-len(chosen) // pieces)
            parts.extend({"sites": (site,), "layers": chosen[i : i + size]} for i in range(0, len(chosen), size))
        return parts

    def merge(self, frames: list[pl.DataFrame]) -> None:
        """One table from the parts' tables: each part scored the model's own answer; keep the first."""
        import polars as pl

        from layerprobe.probe.output import write_parquet
        from layerprobe.results import check_results

        rest = [f.filter(pl.col("kind") != vocab.MODEL_KIND) for f in frames[1:]]
        merged = check_results(pl.concat([frames[0], *rest], how="vertical"), source=f"merged table of {self.id}")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(merged.frame, self.out)


@dataclass(frozen=True)
class FhsStep(Step):
    """The four-score profile of one dataset's tables (``profile_runs``)."""

    kind: ClassVar[str] = vocab.STEP_FHS
    needs_all_inputs: ClassVar[bool] = False
    tables: tuple[Path, ...] = ()
    fhs: FHSConfig = None  # type: ignore[assignment]

    def run(self) -> list[str]:
        from layerprobe.fhs import load_results, profile_frame, profile_runs, write_profile_table

        present, missing = _present(self.tables)
        _fresh_folder(self.out)
        if present:
            frame = profile_frame(profile_runs(load_results(present), self.fhs))
            write_profile_table(frame, self.out / "profile.csv")
            write_profile_table(frame, self.out / "profile.md")
        _write_missing(self.out, missing)
        return missing


@dataclass(frozen=True)
class ReportStep(Step):
    """The study's report over every table there is (``build_report``), saying what is missing."""

    kind: ClassVar[str] = vocab.STEP_REPORT
    needs_all_inputs: ClassVar[bool] = False
    tables: tuple[Path, ...] = ()
    fhs: FHSConfig = None  # type: ignore[assignment]
    title: str = "layerprobe study"
    html_page: bool = True

    def run(self) -> list[str]:
        from layerprobe.fhs.report import build_report

        present, missing = _present(self.tables)
        _fresh_folder(self.out)
        if present:
            report = build_report(present, self.out, config=self.fhs, html_page=self.html_page, title=self.title)
            if missing:
                lines = ["", "## Missing from this study", "", "These results tables were not produced (see status.json):", ""]
                with report.markdown.open("a") as f:
                    f.write("\n".join([*lines, *(f"- `{m}`" for m in missing), ""]))
        _write_missing(self.out, missing)
        return missing


def _present(tables: tuple[Path, ...]) -> tuple[list[Path], list[str]]:
    return [t for t in tables if t.is_file()], [str(t) for t in tables if not t.is_file()]


def _fresh_folder(folder: Path) -> None:
    # The folder is this step's alone (named by its key): what a killed run left is redone whole.
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)


def _write_missing(folder: Path, missing: list[str]) -> None:
    import json

    (folder / "missing.json").write_text(json.dumps({"missing": missing}, indent=1) + "\n")
