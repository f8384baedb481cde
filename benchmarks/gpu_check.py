"""GPU check, one command (issue 14, item 6): the `gpu`-marked tests, the probe benchmark on CUDA
(small), and an extraction of a realistic-width tiny model on CUDA; one final line.

Under 8 minutes on one GPU: each step runs in a subprocess with its own time limit (tests 200 s,
probe benchmark 170 s, extraction 100 s). On a machine without CUDA it says that it cannot run
and exits 0 (nothing is pretended: the final line says ``not run``).

Run: ``python benchmarks/gpu_check.py [--device cuda:0]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LIMITS = {"tests": 200, "probe": 170, "extract": 100}
"""Seconds per step (total under 8 minutes)."""


def _step(name: str, cmd: list[str]) -> tuple[bool, str, float]:
    """(passed, last output line, seconds) of one subprocess step."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), str(HERE), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=LIMITS[name], cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {LIMITS[name]} s", time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.strip()] or [line for line in proc.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
    return proc.returncode == 0, last, time.perf_counter() - start


def extract_on_cuda(device: str, work: Path) -> str:
    """A realistic-width tiny LLaVA (LLM 4096 wide, 2 layers; vision 1024 wide, 2 blocks; 224 px)
    over 64 images with ``--dtype auto``; returns a one-line summary (raises on failure)."""
    from layerprobe.extract.config import ExtractConfig
    from layerprobe.extract.runner import run_extract
    from layerprobe.store import open_store, verify
    from layerprobe.testing import build_tiny
    from layerprobe.testing.images import CANDIDATES, INSTRUCTION, make_dataset

    data = make_dataset(work / "images", n_per_class=22, size=224)
    model = build_tiny("llava", work / "models", hidden=4096, n_layers=2, vision_layers=2, vision_hidden=1024, image_size=224)
    cfg = ExtractConfig(model=str(model), dataset=str(data), out=work / "gpu.zarr", prompt=INSTRUCTION, candidates=CANDIDATES,
                        batch_size=16, num_workers=2, device=device, progress=False)  # fmt: skip
    start = time.perf_counter()
    run_extract(cfg)
    seconds = time.perf_counter() - start
    store = open_store(cfg.out)
    if not verify(cfg.out).ok or not bool(store.committed.all()):
        raise SystemExit("the CUDA extraction's store does not verify")
    return f"{store.n_samples / seconds:.1f} img/s ({store.meta.compute_dtype}: {store.meta.extra.get('compute_dtype_reason')})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--work-dir", default="bench-out/gpu")
    p.add_argument("--child-extract", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    import torch

    if args.child_extract:
        print("extract: " + extract_on_cuda(args.device, Path(args.work_dir)))
        return
    if not torch.cuda.is_available():
        print(f"gpu_check final: cannot run here: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}) -> not run")
        return
    name = torch.cuda.get_device_name(torch.device(args.device))
    print(f"gpu_check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}; {time.strftime('%Y-%m-%d %H:%M')}")
    steps = {
        "tests": [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests"],
        "probe": [sys.executable, str(HERE / "probe_throughput.py"), "--device", args.device, "--sections", "anchors,thousands",
                  "--samples", "1000", "--hidden", "1024", "--pairs", "1", "--fast-layers", "16", "--fast-seq", "1",
                  "--thousands-samples", "780", "--thousands-hidden", "1024"],
        "extract": [sys.executable, str(HERE / "gpu_check.py"), "--child-extract", "--device", args.device, "--work-dir", args.work_dir],
    }  # fmt: skip
    summary, ok_all = [], True
    for step, cmd in steps.items():
        ok, last, seconds = _step(step, cmd)
        ok_all &= ok
        print(f"{step}: {'ok' if ok else 'FAILED'} in {seconds:.0f}s: {last}", flush=True)
        summary.append(f"{step} {'ok' if ok else 'FAILED'} ({last.split('-> ')[-1] if step == 'probe' else last})")
    print(f"gpu_check final: {name}: " + "; ".join(summary) + f" -> {'all ran' if ok_all else 'FAILED'}")


if __name__ == "__main__":
    main()
