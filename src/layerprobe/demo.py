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

The fine-tuning arm (``finetune=True``, the default): one family (``finetune_family``), built
small (64 wide, 56 px), is fine-tuned on :func:`~layerprobe.testing.easy.make_easy_dataset` (two
classes a random tower already tells apart: what is left to learn is the answer) with the vision
tower frozen and with LoRA (lr 1e-3, 3 epochs: the settings ``tests/test_finetune_learning.py``
measured to learn), and the vision-tower CE baseline is trained on the same splits. The base model
and both adapters are extracted on that set and probed, so the report holds the before/after
overlay, Tables 2 and 3 and the profile before and after fine-tuning. Adapters are named by their
settings (``adapters/<model>-<data>-<tower>-e3-lr0.001-seed0``) and reused when present (a killed
run resumes from ``.partial``), as is the vision-CE row (``results/vision-ce-...parquet``).

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
    finetune: bool = True
    """Run the fine-tuning arm too (frozen and LoRA vision tower, vision-tower CE); False = base runs only."""
    finetune_family: str = "qwen2_vl"
    """The family the arm fine-tunes (built 64 wide at 56 px, as the learning test measured it)."""
    finetune_n_per_class: int = 30
    """Images per class of the easy two-class set the arm trains and tests on (30: test split of 12)."""
    finetune_epochs: int = 3
    """Epochs of each fine-tuning run and of the vision-CE baseline (at lr 1e-3)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        from layerprobe.errors import LayerprobeError

        if self.n_per_class < 10 or self.finetune_n_per_class < 10:
            raise LayerprobeError(f"n_per_class and finetune_n_per_class must be at least 10 for train/val/test splits, "
                                  f"got {self.n_per_class} and {self.finetune_n_per_class}")
        if self.finetune_epochs < 1:
            raise LayerprobeError(f"finetune_epochs must be at least 1, got {self.finetune_epochs}")


FINETUNE_LR = 1e-3
"""The arm's learning rate: the paper's 1e-4 needs more epochs than a demo has (tests/test_finetune_learning.py)."""
FINETUNE_SIZE = {"hidden": 64, "n_layers": 2, "vision_layers": 2, "image_size": 56}
"""The fine-tuned model's size: the one the learning test measured (seconds per run on a CPU)."""


@dataclass(frozen=True)
class ArmPaths:
    """Where the fine-tuning arm's outputs live."""

    data: Path
    """The easy two-class set."""
    adapters: tuple[Path, ...]
    """One adapter folder per vision-tower mode (``vocab.VISION_TOWER_MODES`` order)."""
    stores: tuple[Path, ...]
    """The base model's store, then one per adapter."""
    vision_ce: Path
    """The vision-CE row (results parquet)."""
    results: Path
    """The probe results of the arm's stores."""


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
    arm: ArmPaths | None = None
    """The fine-tuning arm's (None when ``cfg.finetune`` is off)."""


def demo_paths(cfg: DemoConfig) -> DemoPaths:
    """Folders named by the settings that decide them: data by size, stores by family and data,
    results by data, preset, seeds and families; the arm's adapters by model, data and training settings."""
    data_key = f"n{cfg.n_per_class}-{cfg.image_size}px"
    seeds = "+".join(str(s) for s in cfg.seeds)
    out = cfg.out
    return DemoPaths(
        data=out / f"synthetic-ultrasound-{data_key}",
        stores=tuple(out / "stores" / f"{family}-{data_key}.zarr" for family in cfg.families),
        results=out / "results" / f"{data_key}-{cfg.preset}-seeds{seeds}-{'+'.join(cfg.families)}.parquet",
        report=out / "report",
        arm=_arm_paths(cfg, seeds) if cfg.finetune else None,
    )


def _arm_paths(cfg: DemoConfig, seeds: str) -> ArmPaths:
    size = FINETUNE_SIZE
    model_key = f"{cfg.finetune_family}-h{size['hidden']}-s{size['image_size']}"
    data_key = f"easy-n{cfg.finetune_n_per_class}-{size['image_size']}px"
    train_key = f"e{cfg.finetune_epochs}-lr{FINETUNE_LR:g}-seed0"
    out = cfg.out
    adapters = tuple(out / "adapters" / f"{model_key}-{data_key}-{tower}-{train_key}" for tower in vocab.VISION_TOWER_MODES)
    return ArmPaths(
        data=out / f"synthetic-{data_key}",
        adapters=adapters,
        stores=(out / "stores" / f"{model_key}-{data_key}.zarr", *(out / "stores" / f"{a.name}.zarr" for a in adapters)),
        vision_ce=out / "results" / f"vision-ce-{model_key}-{data_key}-{train_key}.parquet",
        results=out / "results" / f"{model_key}-{data_key}-{train_key}-{cfg.preset}-seeds{seeds}.parquet",
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
    arm: ArmPaths | None = None
    """The fine-tuning arm's adapters, stores and tables (None when it was off)."""


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> DemoResult:
    """Build, extract, probe, score and report (see the module docstring)."""

    from layerprobe.extract.model.loading import loading_bars

    # Our own bars say what is happening; transformers' per-checkpoint bars only add noise here
    # (hidden for the demo only: the global setting is restored afterwards).
    with loading_bars(False):
        return _run(cfg, log)


def _run(cfg: DemoConfig, log: Callable[[str], None]) -> DemoResult:
    from layerprobe.fhs.report import build_report
    from layerprobe.testing import build_tiny
    from layerprobe.testing.images import CANDIDATES, CLASS_NAMES, INSTRUCTION, make_dataset

    out, paths = cfg.out, demo_paths(cfg)
    log(f"[1/5] synthetic ultrasound dataset: {cfg.n_per_class} images x {len(CLASS_NAMES)} classes -> {paths.data}")
    data = make_dataset(paths.data, n_per_class=cfg.n_per_class, size=cfg.image_size)
    stores: list[Path] = []
    for i, (family, store) in enumerate(zip(cfg.families, paths.stores), 1):
        log(f"[2/5] tiny {family} model ({i}/{len(cfg.families)}): build or reuse, then extract")
        stores.append(_extract(cfg, build_tiny(family, out / "models"), None, data, store, INSTRUCTION, CANDIDATES))
    log(f"[3/5] probes: every site and layer of {len(stores)} stores, mlp ({cfg.preset} preset) + linear, seeds {list(cfg.seeds)}")
    _probe(cfg, stores, paths.results)
    tables = [paths.results]
    if paths.arm is not None:
        tables += _finetune_arm(cfg, paths.arm, log)
    log("[4/5] feature health scores and [5/5] report")
    report = build_report(tables, paths.report, title="layerprobe demo: tiny random-weight models on synthetic ultrasound")
    profile_md = report.profile_md.read_text()
    return DemoResult(tuple(stores), paths.results, report.folder, profile_md, paths.arm)


def _extract(cfg: DemoConfig, model: Path, adapter: Path | None, data: Path, store: Path, prompt: str, candidates, dtype: str = vocab.AUTO) -> Path:
    from layerprobe.extract.config import ExtractConfig
    from layerprobe.extract.runner import run_extract

    return run_extract(ExtractConfig(model=str(model), adapter=None if adapter is None else str(adapter), dataset=str(data), out=store,
                                     prompt=prompt, candidates=candidates, batch_size=8, device=cfg.device, dtype=dtype, progress=cfg.progress))


def _probe(cfg: DemoConfig, stores: list[Path], results: Path) -> None:
    from layerprobe.probe import SweepConfig, run_sweep

    results.parent.mkdir(parents=True, exist_ok=True)
    run_sweep(SweepConfig(stores=tuple(stores), out=results, kinds=vocab.PROBE_KINDS, seeds=cfg.seeds, preset=cfg.preset, device=cfg.device,
                          progress=cfg.progress))


def _finetune_arm(cfg: DemoConfig, arm: ArmPaths, log: Callable[[str], None]) -> list[Path]:
    """Fine-tune (frozen and LoRA tower), train the vision-CE baseline, extract and probe; return the tables."""
    from layerprobe.finetune.config import FinetuneConfig
    from layerprobe.finetune.run import run_finetune
    from layerprobe.finetune.vision_ce import run_vision_ce
    from layerprobe.finetune.vision_ce_config import VisionCEConfig
    from layerprobe.testing import build_tiny
    from layerprobe.testing.easy import EASY_CANDIDATES, EASY_INSTRUCTION, make_easy_dataset

    size = FINETUNE_SIZE
    log(f"[3/5] fine-tuning arm: tiny {cfg.finetune_family} on an easy 2-class set ({cfg.finetune_n_per_class} per class), "
        f"vision tower {' and '.join(vocab.VISION_TOWER_MODES)}, then the vision-tower CE baseline")
    data = make_easy_dataset(arm.data, n_per_class=cfg.finetune_n_per_class, size=size["image_size"])
    model = build_tiny(cfg.finetune_family, cfg.out / "models", **size)
    common = dict(model=str(model), dataset=str(data), prompt=EASY_INSTRUCTION, candidates=EASY_CANDIDATES, dtype=vocab.FLOAT32,
                  device=cfg.device, learning_rate=FINETUNE_LR, epochs=cfg.finetune_epochs, progress=cfg.progress)
    for tower, adapter in zip(vocab.VISION_TOWER_MODES, arm.adapters, strict=True):
        if not adapter.is_dir():  # named by its settings: present = trained with them (a .partial resumes)
            run_finetune(FinetuneConfig(out=adapter, vision_tower=tower, save_steps=1000, **common))
    if not arm.vision_ce.is_file():
        run_vision_ce(VisionCEConfig(out=arm.vision_ce, **common))
    log("[3/5] fine-tuning arm: extract the base model and both adapters on the easy set, then probe them")
    stores = [_extract(cfg, model, adapter, data, store, EASY_INSTRUCTION, EASY_CANDIDATES, dtype=vocab.FLOAT32)
              for adapter, store in zip((None, *arm.adapters), arm.stores, strict=True)]
    _probe(cfg, stores, arm.results)
    return [arm.results, arm.vision_ce]
