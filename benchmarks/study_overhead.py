"""Study overhead: the tiny study on ``--engine ray`` vs ``--engine local``, and planning a paper-size study.

What is timed:
1. The tiny study (``examples/tiny-study.toml``: 2 tiny models x 1 synthetic dataset x 3 arms;
   finetune, extract, probe, fhs, report) on ``--engine ray`` (``--workers`` CPUs) against
   ``--engine local``, each run into a fresh output root, compared like with like (target <= 1.2x
   for both).
   Each ratio is the median of ``--pairs`` interleaved local/ray pairs (local first, then ray
   first, ...), printed with the range of the pair ratios (``benchmarks/_pairs.py``):
   - cold: one command per engine in a fresh interpreter. Both pay the imports and the first
     extraction in a process; Ray also pays starting and stopping its local instance. This is what
     a user waits for.
   - warm: the study in a process that ran it before (local) against an instance whose workers
     ran it before (ray): the scheduling overhead alone. The local runs happen while that instance
     is up, as the ray runs do.
   Also printed, with no target: Ray started in a warm local process (``ray.init``, the study on
   fresh workers, the engine's stop ``stop_local_instance``, timed apart, once). Earlier versions
   held this figure to the target as "cold"; it sets workers that start from nothing against a
   process that has imported torch and transformers and run the study once, so the workers' first
   use (imports, first extraction: the cold study minus the warm one) counts against Ray alone.
   Its breakdown is printed.
2. Planning a study of the paper's size: 16 registry models x 3 datasets x 4 arms (dry run:
   parse, resolve datasets, hash, check markers; target < 2 s). The datasets are small ImageFolder
   trees made here, since the real ones are not on this machine.

Run: ``python benchmarks/study_overhead.py`` (about three and a half minutes on 2 cores);
``python benchmarks/study_overhead.py --prepare examples/tiny-study.toml`` builds the tiny
example's inputs next to it (what its comments say to do) and exits.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from _args import count
from _pairs import pair_ratios, run_rounds

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


def _timed(fn, *args, **kwargs) -> float:
    started = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started


def time_tiny(work: Path, workers: int, pairs: int) -> dict:
    """Seconds of each phase (see the module docstring): ray.init, the cold study and the stop timed
    apart; per engine, a list of seconds per warm run and per fresh command, from ``pairs``
    interleaved rounds each (``_pairs.run_rounds``: local, ray, then ray, local, ...)."""
    import ray

    from layerprobe.study import run_study
    from layerprobe.study.engines.ray_engine import local_instance_options, stop_local_instance

    study = work / TINY_EXAMPLE.name
    shutil.copy(TINY_EXAMPLE, study)
    prepare(study)
    run_study(_with_out(study, "warm"), echo=None)  # imports and page cache warm for both engines
    on_ray = {"engine": "ray", "workers": workers, "echo": None}
    # Cold: what the engine does when it starts the instance itself (same options, same stop), phase by phase.
    t: dict = {"ray.init": _timed(ray.init, **local_instance_options(workers))}
    t["cold study"] = _timed(run_study, _with_out(study, "ray-cold"), **on_ray)
    t["stop"] = _timed(stop_local_instance)
    ray.init(**local_instance_options(workers))
    try:
        run_study(_with_out(study, "ray-warmup"), **on_ray)  # workers import torch once
        t["warm"] = run_rounds({"local": lambda r: _timed(run_study, _with_out(study, f"local-{r}"), echo=None),
                                "ray": lambda r: _timed(run_study, _with_out(study, f"ray-warm-{r}"), **on_ray)}, pairs)  # fmt: skip
    finally:
        stop_local_instance()

    def fresh(engine: str):  # type: ignore[no-untyped-def]
        def step(r: int) -> float:
            command = [sys.executable, "-c", _ONE_COMMAND, str(_with_out(study, f"fresh-{engine}-{r}")), engine, str(workers)]
            return _timed(subprocess.run, command, check=True)

        return step

    t["fresh"] = run_rounds({"local": fresh("local"), "ray": fresh("ray")}, pairs)
    return t


_ONE_COMMAND = "import sys; from layerprobe.study import run_study; run_study(sys.argv[1], engine=sys.argv[2], workers=int(sys.argv[3]), echo=None)"


def report_tiny(t: dict) -> tuple[list[str], dict[str, float]]:
    """The lines printed for the tiny study, and the two ratios with targets (fresh, warm): medians of
    the pairs' ray / local."""
    fresh, warm = pair_ratios(t["fresh"], "ray", "local"), pair_ratios(t["warm"], "ray", "local")
    local, ray_warm = statistics.median(t["warm"]["local"]), statistics.median(t["warm"]["ray"])
    in_process = t["ray.init"] + t["cold study"] + t["stop"]
    ratios = {"fresh_ray_vs_local": fresh.median, "warm_ray_vs_local": warm.median}
    lines = [
        f"tiny study, one command each in a fresh process (cold): local {statistics.median(t['fresh']['local']):.1f} s, "
        f"ray {statistics.median(t['fresh']['ray']):.1f} s: ray/local {fresh} (target <= 1.2x)",
        f"tiny study, warm: local engine {local:.1f} s, ray with instance and workers warm {ray_warm:.1f} s: ray/local {warm} (target <= 1.2x)",
        f"  no target: ray started in the warm local process {in_process:.1f} s ="
        f" ray.init {t['ray.init']:.1f} s + study {t['cold study']:.1f} s + stop {t['stop']:.1f} s;"
        f" the workers' first use (imports, first extraction in a process) = cold study - median warm ray study = {t['cold study'] - ray_warm:.1f} s,"
        " which the warm local process paid before its timing",
    ]
    return lines, ratios


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
    parser.add_argument("--pairs", type=count, default=3, help="interleaved local/ray pairs for each ratio, warm and fresh (default 3)")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare.resolve())
        print(f"built the inputs of {args.prepare}")
        return
    with tempfile.TemporaryDirectory(prefix="study-bench-") as tmp:
        seconds, n_steps = time_paper_plan(Path(tmp))
        print(f"plan of a paper-size study (16 models x 3 datasets x 4 arms, {n_steps} steps, dry run): {seconds:.2f} s (target < 2 s)")
        lines, ratios = report_tiny(time_tiny(Path(tmp), args.workers, args.pairs))
    for line in lines:
        print(line)
    checks = {"plan_s": (seconds, 2.0), **{name: (value, 1.2) for name, value in ratios.items()}}
    summary = " ".join(f"{name}={value:.2f}({'ok' if value <= limit else 'MISS'})" for name, (value, limit) in checks.items())
    met = all(value <= limit for value, limit in checks.values())
    print(f"study_overhead final: {summary} -> " + ("targets met" if met else "TARGETS MISSED"))


if __name__ == "__main__":
    main()
