"""The ``thousands`` section of probe_throughput.py: >= 2,000 probes from one store, and the projected
wall time of the paper's whole probe budget on this machine (issue 14, item 5).

The child process (``--child-thousands``, so its peak RSS is its own) runs:
1. the thousands sweep: 90 layers x 3 seeds x 8 learning rates of the fast preset on a BUSI-size
   store (``--thousands-samples`` x ``--thousands-hidden``): probes/s and peak RSS under
   ``--max-memory``;
2. the budget's samples: the fast preset as the budget trains it (one lr, seeds 0 and 1) at both
   widths a 7B model's sites have (1024: vision blocks; 4096: connector and LLM) and at both
   training-set sizes (BUSI's 468 rows, where ``min_steps`` shrinks the batch to 59; Chest-Xray's
   5,216, where ``max_steps`` grows it to 652), since seconds per (row x width) differ with both;
   ``BUDGET_PASSES`` timed sweeps of each, in alternating order, after an untimed one-probe sweep
   of its shape, so the once-per-process compile of the optimizer's pass (probe/optim.py) is not
   charged to a few probes; and a 4-probe sample of the paper preset (1024 wide, BUSI size).
The projection: for every (dataset, width) of the budget, probes x rows x width x the seconds per
unit measured at that width and at that dataset's size class (COVID-CT at BUSI's), the median over
the passes; the projection from each pass alone is printed beside it. Beside it, the
budget's GEMM floor (:func:`gemm_floor`): the minutes its training matmuls alone take at the GEMM
peak the child measures right after the samples, which no speed-up that keeps the recipe can beat.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import torch

from _pairs import gemm_gflops, peak_rss_mib
from layerprobe import vocab
from layerprobe.dtypes import dtype_name
from layerprobe.probe.config import PRESETS, SweepConfig, parse_memory
from layerprobe.probe.engine import matmul_dtype
from layerprobe.probe.sweep import sweep_stores
from layerprobe.testing.stores import synthetic_store

PAPER_BUDGET = {"models": 16, "seeds": 2, "train_rows": {"BUSI": 468, "COVID-CT": 425, "Chest-Xray": 5216},
                "widths": {1024: 24, 4096: 2 + 66}}  # fmt: skip
"""The paper's probe budget: train rows per dataset; probed layers of a 7B model per width (24 vision
blocks of 1024; connector 2 and LLM 33 layers x 2 sites of 4096)."""
SIZE_CLASS = {"BUSI": "small", "COVID-CT": "small", "Chest-Xray": "big"}
"""Which measured training-set size stands for each dataset (the fast preset's batch depends on it)."""
SAMPLE_LAYERS = {1024: 16, 4096: 8}
"""Layers of each budget sample (x 2 seeds: 32 and 16 probes; 16 at other widths)."""
BUDGET_PASSES = 2
"""Timed sweeps of each budget sample. The projection charges each sample its median over them, and
the projection of every pass is printed beside it: with one sweep a sample, the same small 4096-wide
sample read 6.1 s in one run and 13.3 s in the next, which moved the projection 111 -> 146 min
(docs/LOG.md, eleventh session)."""


def sweep_cfg(args: argparse.Namespace, **kw) -> SweepConfig:  # type: ignore[no-untyped-def]
    """A sweep of the benchmarks' in-memory stores (the store path is only a label) on ``--device``, no progress bar."""
    return SweepConfig(stores=(Path("bench.zarr"),), progress=False, device=args.device, **kw)


def _cfg(args: argparse.Namespace, **kw) -> SweepConfig:  # type: ignore[no-untyped-def]
    """:func:`sweep_cfg` of MLP probes on ``--threads``: every sweep of this section."""
    return sweep_cfg(args, kinds=(vocab.MLP,), threads=args.threads, **kw)


def _mlp_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("kind") == vocab.MLP)


def _budget_store(n_train: int, width: int):  # type: ignore[no-untyped-def]
    """A budget sample's store: ``n_train`` training rows (60% of its samples) of ``width``."""
    return synthetic_store(math.ceil(n_train / 0.6), width, {"llm/image_mean": SAMPLE_LAYERS.get(width, 16)})


def _budget_sample(args: argparse.Namespace, store) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds per (probe x train row x width) of one sweep of the fast preset as the budget trains it."""
    cfg = _cfg(args, preset="fast", seeds=(0, 1))
    start = time.perf_counter()
    frame = _mlp_rows(sweep_stores(cfg, [store]))
    wall = time.perf_counter() - start
    rows, width = int(frame.get_column("n_train")[0]), next(iter(store.sites.values())).hidden
    return {"probes": frame.height, "wall": wall, "n_train": rows, "s_per_unit": wall / (frame.height * rows * width)}


def _budget_samples(args: argparse.Namespace, widths: list[int]) -> dict[str, list[dict[str, float]]]:
    """Per sample (``"small 1024"``, ...), one :func:`_budget_sample` per pass; the passes visit the
    samples in alternating order, each store after an untimed one-probe sweep of its shape (so the
    once-per-process compile of the optimizer's pass, probe/optim.py, is not charged to a few probes)."""
    sizes = {"small": PAPER_BUDGET["train_rows"]["BUSI"], "big": PAPER_BUDGET["train_rows"]["Chest-Xray"]}
    stores = {f"{size} {w}": _budget_store(rows, w) for size, rows in sizes.items() for w in widths}
    warm = _cfg(args, preset="fast", seeds=(0,), layers="0:1")
    for store in stores.values():
        sweep_stores(warm, [store])
    samples: dict[str, list[dict[str, float]]] = {key: [] for key in stores}
    for k in range(BUDGET_PASSES):
        for key in stores if k % 2 == 0 else reversed(stores):
            samples[key].append(_budget_sample(args, stores[key]))
    return samples


def thousands_child(args: argparse.Namespace) -> dict:
    n, d = args.thousands_samples, args.thousands_hidden
    store = synthetic_store(n, d, {"vision/mean": 30, "llm/image_mean": 30, "llm/final_token": 30})
    rss_data = peak_rss_mib()
    lrs = tuple(float(f"{1e-3 * 2 ** (k / 2 - 2):.3g}") for k in range(8))
    cfg = _cfg(args, preset="fast", seeds=(0, 1, 2), lrs=lrs, max_memory=parse_memory(args.max_memory))
    start = time.perf_counter()
    rows = _mlp_rows(sweep_stores(cfg, [store]))
    wall = time.perf_counter() - start
    rss_sweep = peak_rss_mib()  # before the budget samples' stores exist
    paper_cfg = _cfg(args, preset="paper", sites=("llm/image_mean",), layers="0:4")
    start = time.perf_counter()
    paper = _mlp_rows(sweep_stores(paper_cfg, [store]))
    paper_wall = time.perf_counter() - start
    del store
    widths = sorted(PAPER_BUDGET["widths"]) if args.budget_widths is None else args.budget_widths
    samples = _budget_samples(args, widths)
    peaks = {dtype_name(dt): gemm_gflops(dt, args.device) for dt in (torch.float32, torch.bfloat16)}
    return {"gemm_peaks": peaks, "probes": rows.height, "wall": wall, "paper_probes": paper.height, "paper_wall": paper_wall,
            "n_train": int(rows.get_column("n_train")[0]), "width": d, "peak_rss_mib": rss_sweep, "data_rss_mib": rss_data,
            "failed": int((rows.get_column("status") != vocab.STATUS_OK).sum()), "samples": samples,
            "cuda_peak_mib": torch.cuda.max_memory_allocated() / (1 << 20) if torch.cuda.is_initialized() else None}  # fmt: skip


def project(samples: dict[str, list[dict[str, float]]], which: int | None = None) -> tuple[float, dict[int, int]]:
    """Minutes of the fast preset's budget from the samples (each sample's median over its passes, or
    pass ``which`` alone), and the budget widths that were not sampled -> the sampled width whose cost
    stood in for them (smoke runs; printed as a warning)."""
    sampled = sorted({int(key.split()[1]) for key in samples})
    stand_in = {w: min(sampled, key=lambda s: abs(s - w)) for w in PAPER_BUDGET["widths"]}
    seconds = 0.0
    for dataset, n_train in PAPER_BUDGET["train_rows"].items():
        for width, n_layers in PAPER_BUDGET["widths"].items():
            passes = [p["s_per_unit"] for p in samples[f"{SIZE_CLASS[dataset]} {stand_in[width]}"]]
            unit = statistics.median(passes) if which is None else passes[which]
            seconds += PAPER_BUDGET["models"] * PAPER_BUDGET["seeds"] * n_layers * n_train * width * unit
    return seconds / 60, {w: s for w, s in stand_in.items() if w != s}


def gemm_floor(peaks: dict[str, float], device: str) -> tuple[float, float]:
    """(minutes, TFLOP) of the fast preset's budget training GEMMs at the measured GEMM peaks.

    Per probe: epochs x train rows x 4 x width x hidden FLOPs (the first layer's forward and
    weight-gradient GEMMs; no input gradient is formed), at the peak of the dtype the engine picks
    for that dataset's batch. It leaves out the second layer, the validation passes and the
    optimizer, so the true floor is higher: a projection above this floor is the recipe's cost on
    this hardware, not the engine's overhead."""
    spec = PRESETS[vocab.PRESET_FAST]
    seconds, flops = 0.0, 0.0
    for n_train in PAPER_BUDGET["train_rows"].values():
        dtype, _ = matmul_dtype(device, spec.for_rows(n_train).batch_size)
        for width, n_layers in PAPER_BUDGET["widths"].items():
            f = PAPER_BUDGET["models"] * PAPER_BUDGET["seeds"] * n_layers * spec.epochs * n_train * 4.0 * width * spec.hidden
            flops += f
            seconds += f / (peaks[dtype_name(dtype)] * 1e9)
    return seconds / 60, flops / 1e12


def thousands(args: argparse.Namespace) -> dict[str, float]:
    child = [sys.executable, sys.argv[0], "--child-thousands", "--thousands-samples", str(args.thousands_samples),
             "--thousands-hidden", str(args.thousands_hidden), "--max-memory", args.max_memory, "--device", args.device]  # fmt: skip
    if args.threads:
        child += ["--threads", str(args.threads)]
    if args.budget_widths:
        child += ["--budget-widths", ",".join(map(str, args.budget_widths))]
    proc = subprocess.run(child, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"thousands child failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    unit = r["n_train"] * r["width"]
    paper_s_per_unit = r["paper_wall"] / (r["paper_probes"] * unit)
    widths, rows = PAPER_BUDGET["widths"], PAPER_BUDGET["train_rows"]
    n_budget = PAPER_BUDGET["models"] * PAPER_BUDGET["seeds"] * len(rows) * sum(widths.values())
    fast_min, stand_in = project(r["samples"])
    per_pass = ", ".join(f"{project(r['samples'], k)[0]:.1f}" for k in range(BUDGET_PASSES))
    floor_min, floor_tflop = gemm_floor(r["gemm_peaks"], args.device)
    paper_min = PAPER_BUDGET["models"] * PAPER_BUDGET["seeds"] * sum(n * w for w, n in widths.items()) * sum(rows.values()) * paper_s_per_unit / 60
    cuda_peak = "" if r["cuda_peak_mib"] is None else f", CUDA peak {r['cuda_peak_mib']:.0f} MiB allocated"
    print(f"thousands: {r['probes']} fast probes (90 layers x 3 seeds x 8 lrs, {r['n_train']} train rows x {r['width']}) in {r['wall']:.1f}s = "
          f"{r['probes'] / r['wall']:.1f} probes/s, {r['failed']} failed; peak RSS {r['peak_rss_mib']:.0f} MiB "
          f"({r['data_rss_mib']:.0f} MiB with the store's data, before the sweep){cuda_peak} under --max-memory {args.max_memory}")  # fmt: skip
    print(f"  paper preset sample: {r['paper_probes']} probes in {r['paper_wall']:.1f}s = {r['paper_probes'] / r['paper_wall']:.2f} probes/s")
    for key, passes in r["samples"].items():
        size, width = key.split()
        print(f"  fast preset as the budget trains it ({size}: {passes[0]['n_train']} train rows x {width}): {passes[0]['probes']} probes in "
              + ", ".join(f"{p['wall']:.1f}" for p in passes) + f" s ({len(passes)} passes), "
              + ", ".join(f"{p['s_per_unit']:.3g}" for p in passes) + " s per row x width")  # fmt: skip
    if stand_in:
        print("  WARNING: budget widths not sampled, charged at another width's cost per row x width: "
              + ", ".join(f"{w} at {s}'s" for w, s in stand_in.items()) + " (not a projection for this machine)")
    print(f"  projected paper budget ({n_budget:,} MLP probes: 16 models x 3 datasets x {sum(widths.values())} layers x 2 seeds, "
          f"each (dataset, width) at its measured cost per row x width): fast preset {fast_min:.1f} min "
          f"(per pass: {per_pass}), "
          f"paper preset {paper_min / 60:.1f} h (from its {r['width']}-wide sample) on this machine")  # fmt: skip
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in r["gemm_peaks"].items())
    print(f"  the fast budget's GEMM floor: {floor_tflop:,.0f} TFLOP of first-layer training matmuls at the GEMM peak measured "
          f"after the samples ({peaks} GFLOP/s) = {floor_min:.1f} min; the projection is {fast_min / floor_min:.2f}x that floor")  # fmt: skip
    return {"budget_gemm_floor_min": floor_min, "thousands_probes_per_s": r["probes"] / r["wall"], "budget_fast_min": fast_min, "budget_paper_h": paper_min / 60}
