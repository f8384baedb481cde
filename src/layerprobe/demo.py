"""The one-command demo: the whole study on tiny offline models and a synthetic dataset.

Nothing is downloaded. For each family it builds a tiny random-weight checkpoint of the real
transformers class (saved and reloaded through the same path as a user's checkpoint), writes a
synthetic three-class ultrasound-like dataset, then runs extract -> probe -> fhs -> report exactly
as a user would with their own models. Every step reuses what a previous run left: a rerun builds
nothing twice and resumes the stores.

Folders are named by the settings that decide their contents (:func:`demo_paths`), so a changed
setting builds beside what exists instead of clashing with it, and a plain rerun finds its own:
``synthetic-ultrasound-n48-224px/`` (images per class, image size), ``stores/<family>-n48-224px.zarr``
and ``results/<data>-<preset>-seeds0+1-<families>.parquet``; ``report/`` is the latest run's. The
dataset is built in a hidden folder and renamed into place, models likewise (``build_tiny``), stores
resume after an interruption, and the results table is written to a temporary file and moved, so no
step leaves a half-built folder that a rerun would take for a finished one.

Random-weight models still carry the images' signal through their layers (a random network is a
rich random feature map), so the probe curves and the four-score profile are meaningful as a
demonstration of the pipeline, not as a statement about any real model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from layerprobe import vocab

DEMO_FAMILIES = ("llava", "qwen2_vl", "gemma3")
"""Three families behind most of the paper's models: LLaVA (HuatuoGPT-34B), Qwen2-VL (MedVLM-R1,
and the Qwen2.5-VL line shares its adapter) and Gemma3 (MedGemma)."""


@dataclass(frozen=True)
class DemoConfig:
    """What the demo builds and runs."""

    out: Path = Path("layerprobe-demo")
    """Folder for models, data, stores, results and the report; a rerun reuses what its settings built."""
    families: tuple[str, ...] = DEMO_FAMILIES
    """Tiny model families to build (see ``layerprobe.testing.TINY_FAMILIES``)."""
    n_per_class: int = 48
    """Synthetic images per class (three classes); 48 keeps the whole demo around a minute or two."""
    image_size: int = 224
    """Side of the synthetic images in pixels."""
    seeds: tuple[int, ...] = (0, 1)
    """Probe seeds; two give the error bands in the plots."""
    preset: str = "fast"
    """Probe preset (``fast`` or ``paper``)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if self.n_per_class < 10:
            from layerprobe.errors import LayerprobeError

            raise LayerprobeError(f"n_per_class must be at least 10 for train/val/test splits, got {self.n_per_class}")


@dataclass(frozen=True)
class DemoPaths:
    """Where one demo configuration's outputs live (see the module docstring)."""

    data: Path
    """The synthetic ImageFolder tree."""
    stores: tuple[Path, ...]
    """One store per family, in ``cfg.families`` order."""
    results: Path
    """The probe results table."""
    report: Path
    """The report folder (the latest run's)."""


def demo_paths(cfg: DemoConfig) -> DemoPaths:
    """Folders named by the settings that decide them: data by size, stores by family and data,
    results by data, preset, seeds and families."""
    data_key = f"n{cfg.n_per_class}-{cfg.image_size}px"
    seeds = "+".join(str(s) for s in cfg.seeds)
    out = cfg.out
    return DemoPaths(
        data=out / f"synthetic-ultrasound-{data_key}",
        stores=tuple(out / "stores" / f"{family}-{data_key}.zarr" for family in cfg.families),
        results=out / "results" / f"{data_key}-{cfg.preset}-seeds{seeds}-{'+'.join(cfg.families)}.parquet",
        report=out / "report",
    )


@dataclass(frozen=True)
class DemoResult:
    """Where the demo's outputs are."""

    stores: tuple[Path, ...]
    """One store per family."""
    results: Path
    """The probe results table (parquet)."""
    report: Path
    """The report folder (``report.md``, ``report.html``, figures, tables)."""
    profile_markdown: str
    """The four-score table as markdown."""


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> DemoResult:
    """Build, extract, probe, score and report (see the module docstring)."""

    from layerprobe.extract.model.loading import loading_bars

    # Our own bars say what is happening; transformers' per-checkpoint bars only add noise here
    # (hidden for the demo only: the global setting is restored afterwards).
    with loading_bars(False):
        return _run(cfg, log)


def _run(cfg: DemoConfig, log: Callable[[str], None]) -> DemoResult:
    from layerprobe.extract.config import ExtractConfig
    from layerprobe.extract.runner import run_extract
    from layerprobe.fhs.report import build_report
    from layerprobe.probe import SweepConfig, run_sweep
    from layerprobe.testing import build_tiny
    from layerprobe.testing.images import CANDIDATES, CLASS_NAMES, INSTRUCTION, make_dataset

    out, paths = cfg.out, demo_paths(cfg)
    log(f"[1/5] synthetic ultrasound dataset: {cfg.n_per_class} images x {len(CLASS_NAMES)} classes -> {paths.data}")
    data = make_dataset(paths.data, n_per_class=cfg.n_per_class, size=cfg.image_size)

    stores: list[Path] = []
    for i, (family, store) in enumerate(zip(cfg.families, paths.stores), 1):
        log(f"[2/5] tiny {family} model ({i}/{len(cfg.families)}): build or reuse, then extract")
        model_dir = build_tiny(family, out / "models")
        stores.append(
            run_extract(
                ExtractConfig(
                    model=str(model_dir),
                    dataset=str(data),
                    out=store,
                    prompt=INSTRUCTION,
                    candidates=CANDIDATES,
                    batch_size=8,
                    device=cfg.device,
                    progress=cfg.progress,
                )
            )
        )

    results = paths.results
    results.parent.mkdir(parents=True, exist_ok=True)
    log(f"[3/5] probes: every site and layer of {len(stores)} stores, mlp ({cfg.preset} preset) + linear, seeds {list(cfg.seeds)}")
    run_sweep(
        SweepConfig(
            stores=tuple(stores),
            out=results,
            kinds=vocab.PROBE_KINDS,
            seeds=cfg.seeds,
            preset=cfg.preset,
            device=cfg.device,
            progress=cfg.progress,
        )
    )

    log("[4/5] feature health scores and [5/5] report")
    report = build_report([results], paths.report, title="layerprobe demo: tiny random-weight models on synthetic ultrasound")
    profile_md = report.profile_md.read_text()
    return DemoResult(tuple(stores), results, report.folder, profile_md)
