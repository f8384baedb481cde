"""Study overhead: the tiny study on ``--engine ray`` vs ``--engine local``, and planning a paper-size study.

What is timed:
1. The tiny study (``examples/tiny-study.toml``: 2 tiny models x 1 synthetic dataset x base arm;
   extract, probe, fhs, report) end to end on the local engine (after a warm-up run, so torch and
   transformers are imported), then on the ray engine with ``--workers`` CPUs, each into a fresh
   output root. Ray is timed twice: cold (``ray.init`` and the workers' first imports inside: what
   one CLI call costs) and warm (an instance whose workers ran a study already: the scheduling
   overhead, target <= 1.2x local).
2. Planning a study of the paper's size: 16 registry models x 3 datasets x 4 arms (dry run:
   parse, resolve datasets, hash, check markers; target < 2 s). The datasets are small ImageFolder
   trees made here, since the real ones are not on this machine.

Run: ``python benchmarks/study_overhead.py`` (about a minute on 2 cores);
``python benchmarks/study_overhead.py --prepare examples/tiny-study.toml`` builds the tiny
example's inputs next to it (what its comments say to do) and exits.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_EXAMPLE = ROOT / "examples" / "tiny-study.toml"
_TINY_NAME = re.compile(r"^(?P<family>\w+?)-h(?P<hidden>\d+)-l(?P<layers>\d+)-v(?P<vision>\d+)-s(?P<size>\d+)-seed(?P<seed>\d+)-(?P<dtype>\w+)$")


def prepare(study: Path, n_per_class: int = 16, image_size: int = 56) -> None:
    """Build the tiny checkpoints and the synthetic dataset a tiny study file names, next to it."""
    from layerprobe.testing import build_tiny, make_dataset

    doc = tomllib.loads(study.read_text())
    for model in doc["models"]:
        folder = study.parent / (model["source"] if isinstance(model, dict) else model)
        m = _TINY_NAME.match(folder.name)
        if m is None:
            raise SystemExit(f"{folder.name} is not a tiny model folder name (family-hH-lL-vV-sS-seedN-dtype)")
        build_tiny(m["family"], folder.parent, hidden=int(m["hidden"]), n_layers=int(m["layers"]), vision_layers=int(m["vision"]),
                   image_size=int(m["size"]), seed=int(m["seed"]), dtype=m["dtype"])  # fmt: skip
    for dataset in doc["datasets"]:
        spec = dataset["spec"] if isinstance(dataset, dict) else dataset
        make_dataset(study.parent / spec, n_per_class=n_per_class, size=image_size)


def _with_out(study: Path, out: str) -> Path:
    path = study.with_name(f"{out}.toml")
    path.write_text(study.read_text().replace('out = "tiny-study/out"', f'out = "{out}"'))
    return path


def time_tiny(work: Path, workers: int) -> dict[str, float]:
    import ray

    from layerprobe.study import run_study

    study = work / TINY_EXAMPLE.name
    shutil.copy(TINY_EXAMPLE, study)
    prepare(study)
    run_study(_with_out(study, "warm"), echo=None)  # imports and page cache warm for both engines
    times = {}
    started = time.perf_counter()
    run_study(_with_out(study, "local"), echo=None)
    times["local"] = time.perf_counter() - started
    started = time.perf_counter()
    run_study(_with_out(study, "ray-cold"), engine="ray", workers=workers, echo=None)
    times["ray, ray.init included"] = time.perf_counter() - started
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        run_study(_with_out(study, "ray-warmup"), engine="ray", workers=workers, echo=None)  # workers import torch once
        started = time.perf_counter()
        run_study(_with_out(study, "ray-warm"), engine="ray", workers=workers, echo=None)
        times["ray, instance and workers warm"] = time.perf_counter() - started
    finally:
        ray.shutdown()
    return times


def time_paper_plan(work: Path) -> tuple[float, int]:
    from layerprobe.extract.model.model_registry import MODELS
    from layerprobe.study import run_study
    from layerprobe.testing import make_dataset

    datasets = []
    for name in ("busi", "covid-ct", "chest-xray"):
        make_dataset(work / "data" / name, n_per_class=10, size=32)
        datasets.append(f'{{ spec = "data/{name}", name = "{name}" }}')
    models = ", ".join(f'"{m.name}"' for m in MODELS)
    study = work / "paper-size.toml"
    study.write_text(
        f'arms = ["base", "sft-frozen", "sft-lora", "vision-ce"]\nmodels = [{models}]\ndatasets = [{", ".join(datasets)}]\n'
        '[study]\nout = "paper-out"\n[probe]\npreset = "paper"\nseeds = [0, 1]\n'
    )
    started = time.perf_counter()
    result = run_study(study, dry_run=True, echo=None)
    return time.perf_counter() - started, len(result.plan.steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="build a tiny study file's inputs next to it, then exit")
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs (default 2)")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare.resolve())
        print(f"built the inputs of {args.prepare}")
        return
    with tempfile.TemporaryDirectory(prefix="study-bench-") as tmp:
        seconds, n_steps = time_paper_plan(Path(tmp))
        print(f"plan of a paper-size study (16 models x 3 datasets x 4 arms, {n_steps} steps, dry run): {seconds:.2f} s (target < 2 s)")
        times = time_tiny(Path(tmp), args.workers)
    local = times["local"]
    for name, value in times.items():
        print(f"tiny study, {name}: {value:.1f} s ({value / local:.2f}x local; target <= 1.2x)")


if __name__ == "__main__":
    main()
