"""Probe throughput: the batched engine against per-probe baselines and a torch.func ensemble.

Every ratio printed is the median of interleaved A/B pairs with the range of the pair ratios
beside it, and every share of peak divides by a peak measured right after the timed work
(``benchmarks/_pairs.py``; issue 14, item 8). Sections (``--sections``, all by default):

- ``anchors`` (a store of ``--samples`` x ``--hidden``: 33 LLM layers x 2 sites + a 24-layer vision
  site with a realistic spectrum, ``layerprobe.testing.stores``; or ``--store``). Per round:
  F  the fast preset batched through ``sweep_stores`` (one site's ``--fast-layers`` layers x seeds;
     slab reads, standardisation and metrics included), PS the paper preset sequential (one
     ReferenceProbe: nn.Linear, autograd, torch.optim.AdamW, LambdaLR, full 20 epochs; "(a)"),
     FS the fast preset sequential (ReferenceProbe, ``--fast-seq`` probes), PB the paper preset
     batched (one sweep group of consecutive layers), and on the same probes the engine
     (``train_mlp_group``) against a ``torch.func`` ensemble (``stack_module_state`` +
     ``vmap(functional_call)`` + fused AdamW: the idiomatic way to train many small models), for
     both recipes. Ratios: fast_vs_a = PS/F (two recipes: 64x fewer steps explain most of it),
     paper_vs_a = PS/PB and fast_vs_fast_seq = FS/F (same recipe), engine_vs_ensemble (same
     probes, same recipe), fast_matmul_peak (engine GFLOP/s over the GEMM peak measured beside it).
- ``linear``: batched L-BFGS (one site) against scikit-learn LogisticRegression (one layer) per round.
- ``accuracy``: fast vs paper preset test accuracy (same seeds) over a suite of data shapes
  (2-10 classes, 180-5,216 training rows, 64-4,096 features, learnable: see SUITE_PEAK; one from a
  tiny real extraction of 600 images), 4 seeds,
  mean |delta acc| with the paper preset's seed-to-seed spread as the yardstick.
- ``thousands``: a sweep of >= 2,000 probes from one store (90 layers x 3 seeds x 8 learning
  rates) in a child process: probes/s, peak RSS under ``--max-memory``, and the projected wall time
  of the paper's whole probe budget on this machine (16 models x 3 datasets: BUSI 780, COVID-CT
  746, Chest-Xray 5,856 images with train splits of 468 (60%), 425 and 5,216 (official); a
  7B model's sites: 24 vision blocks of 1024, connector 2 x 4096, LLM 33 layers x 2 sites of 4096;
  2 seeds; fast and paper presets), from seconds per unit of n_train x width measured with the
  budget's recipe at both widths and both training-set sizes (``_budget.py``); beside it the
  budget's GEMM floor, its first-layer training matmuls at the GEMM peak measured in the same
  child (``budget_gemm_floor_min``, no verdict: where it is above the target, no engine speed-up
  can meet the target with the fast preset's recipe on this machine).
- ``threads``: a small sweep with the engine's thread choice vs 1 thread vs torch's default.

The last line, ``probe_throughput final: k=v(ok|MISS) ... -> targets met|TARGETS MISSED``, judges the
sections that ran; the numbers in it without a verdict are ``CONTEXT``. Run:
``python benchmarks/probe_throughput.py`` (with the defaults on 2 cores: about 15 minutes where bf16 is native, 35-40 without); smoke run: ``--samples 200 --hidden 64 --pairs 1 --fast-layers 2
--thousands-hidden 32 --thousands-samples 120 --budget-widths 32``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import torch

from _args import count
from _budget import sweep_cfg, thousands, thousands_child
from _pairs import copy_gbps, gemm_gflops, pair_ratios, run_rounds, spread, timed
from layerprobe import vocab
from layerprobe.hardware import cpu_bf16_features, free_cores, last_level_cache_bytes
from layerprobe.probe.config import PRESETS, SweepConfig
from layerprobe.probe.engine import Stream, train_mlp_group
from layerprobe.probe.features import prepare_features
from layerprobe.probe.grid import streams_per_group
from layerprobe.probe.reference import ReferenceProbe, sklearn_linear_probe
from layerprobe.probe.schedule import lr_factor, warmup_steps
from layerprobe.probe.splits import make_splits
from layerprobe.probe.sweep import sweep_stores
from layerprobe.probe.threads import sweep_threads
from layerprobe.testing.stores import synthetic_store

TORCH_DEFAULT_THREADS = torch.get_num_threads()
"""torch's own thread count, read before this benchmark changes it."""
SECTIONS = ("anchors", "linear", "accuracy", "thousands", "threads")
TARGETS = {
    "fast_vs_a": (">=", 30.0), "paper_vs_a": (">=", 2.0), "linear_vs_b": (">=", 10.0), "fast_dacc": ("<=", 1.0),
    "fast_matmul_peak": (">=", 70.0), "engine_vs_ensemble_fast": (">=", 2.0), "budget_fast_min": ("<=", 30.0),
    "threads_auto_vs_1": (">=", 0.9),
}  # fmt: skip
CONTEXT = ("budget_gemm_floor_min",)
"""Numbers the final line carries beside the targets, without a verdict: what a target is up against."""
SUITE = (("2 classes, 180 rows x 64", 300, 2, 64, 4), ("10 classes, 1,080 rows x 1024", 1800, 10, 1024, 3),
         ("4 classes, 600 rows x 4096", 1000, 4, 4096, 2), ("2 classes, 5,216 rows x 1024", 8694, 2, 1024, 2))  # fmt: skip
"""Synthetic shapes of the accuracy suite: (name, samples (60% train), classes, width, layers); a tiny
real extraction is added to them. The last is Chest-Xray's size, the only one where the fast preset's
``max_steps`` grows the batch (to 652); the paper preset takes about 40 s there."""
SUITE_SEEDS = (0, 1, 2, 3)
"""Seeds of every suite probe (fast and paper compared seed by seed)."""
SUITE_PEAK = 3.0
"""Class-signal strength of the suite's synthetic shapes: the paper preset scores 42-81% there, well
above chance. At the stores' default 1.0 the 4- and 10-class shapes sat at chance (25%, 17%), where
a difference between presets measures only noise."""
SUITE_REAL_PER_CLASS = 200
"""Images per class of the suite's tiny real extraction (600 images, 120 test rows: one test image
is 0.8 points, not the 2.8 of a 36-row test set)."""


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of: {', '.join(SECTIONS)}")
    p.add_argument("--store", type=Path, default=None, help="anchors/linear on this (real) store instead of synthetic data")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--seeds", type=int, default=2, help="MLP seeds per layer in the fast batched sweep")
    p.add_argument("--fast-layers", type=int, default=16, help="layers of one site per fast batched round")
    p.add_argument("--fast-seq", type=int, default=3, help="fast-preset sequential probes per round")
    p.add_argument("--group", type=int, default=4, help="probes of the engine-vs-ensemble and paper batched groups")
    p.add_argument("--pairs", type=count, default=5, help="interleaved rounds (A/B pairs) per ratio of the anchors and linear sections")
    p.add_argument("--threads", type=int, default=None, help="torch threads for everything (default: the engine's choice for the anchors' sweep, used by both sides)")
    p.add_argument("--thousands-samples", type=int, default=780, help="BUSI's size")
    p.add_argument("--thousands-hidden", type=int, default=1024)
    p.add_argument("--max-memory", default="4GB", help="--max-memory of the thousands sweep")
    p.add_argument("--suite-scale", type=float, default=1.0, help="scales the accuracy suite's rows and widths (smoke runs: 0.1)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--budget-widths", type=lambda v: [int(w) for w in v.split(",")], default=None,
                   help="widths of the budget samples (default 1024,4096: a 7B model's; smoke runs: 32)")
    p.add_argument("--child-thousands", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.child_thousands:
        print(json.dumps(thousands_child(args)))
        return
    sections = [s for s in args.sections.split(",") if s]
    if not sections or set(sections) - set(SECTIONS):
        raise SystemExit(f"probe_throughput: --sections {args.sections!r}: give a comma-separated list of {', '.join(SECTIONS)}")
    usable, free = free_cores()
    print(f"probe_throughput: torch {torch.__version__}, {usable} usable cores ({free} free now), native bf16: "
          f"{', '.join(cpu_bf16_features()) or 'none'}, LLC {last_level_cache_bytes() >> 20} MiB, device {args.device}; {time.strftime('%Y-%m-%d %H:%M')}")  # fmt: skip
    results: dict[str, float] = {}
    if {"anchors", "linear"} & set(sections):
        store = _anchor_store(args)
        n_threads = args.threads or sweep_threads(sweep_cfg(args, preset="fast"), [store])[0]
        print(f"anchors and linear: {n_threads} torch thread(s) on both sides of every pair")
        torch.set_num_threads(n_threads)
    runners = {"anchors": lambda: anchors(store, args, n_threads), "linear": lambda: linear(store, args, n_threads),
               "accuracy": lambda: accuracy_suite(args), "thousands": lambda: thousands(args), "threads": lambda: threads_section(args)}  # fmt: skip
    for name in (name for name in SECTIONS if name in sections):
        start = time.perf_counter()
        results.update(runners[name]())
        print(f"[section {name}: {time.perf_counter() - start:.0f} s]", flush=True)
    verdicts = []
    for key, value in results.items():
        if key in TARGETS:
            op, target = TARGETS[key]
            ok = value >= target if op == ">=" else value <= target
            verdicts.append((f"{key}={value:.2f}({'ok' if ok else 'MISS'})", ok))
    met = all(ok for _, ok in verdicts) and bool(verdicts)
    verdicts += [(f"{key}={results[key]:.2f}", True) for key in CONTEXT if key in results]
    wanted = " ".join(f"{k}{op}{t:g}" for k, (op, t) in TARGETS.items())
    print(f"probe_throughput final: {' '.join(v for v, _ in verdicts)} [sections {','.join(sections)}; targets {wanted}] "
          f"-> {'targets met' if met else 'TARGETS MISSED'}")  # fmt: skip


# ------------------------------------------------------------------------------------ anchors


def _anchor_store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if args.store is not None:
        from layerprobe.store import open_store

        return open_store(args.store)
    start = time.perf_counter()
    store = synthetic_store(args.samples, args.hidden, {"vision/mean": 24, "llm/image_mean": 33, "llm/final_token": 33}, n_classes=args.classes)
    print(f"data: synthetic (power-law spectrum, AR(1) layers, label noise), {args.samples} samples x 90 layers x {args.hidden}, "
          f"{args.classes} classes, built in {time.perf_counter() - start:.1f}s")  # fmt: skip
    return store


def anchors(store, args: argparse.Namespace, n_threads: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    split = make_splits(store.labels, store.splits, store.valid, class_names=store.class_names)[0]
    # the recipes as the sweep trains them on these rows (ProbeSpec.for_rows: the fast preset trains 8 steps per epoch)
    n_classes, fast, paper = len(store.class_names), PRESETS["fast"].for_rows(len(split.train)), PRESETS["paper"]
    sites = list(store.sites.values())
    seeds = tuple(range(args.seeds))
    cache: dict[tuple[str, int], object] = {}

    def features(site: str, layers: list[int]):  # type: ignore[no-untyped-def]
        key = (site, layers[0], len(layers))
        if key not in cache:
            cache.clear()
            cache[key] = prepare_features(store.read_slabs(site, layers), store.labels, split, args.device)
        return cache[key]

    def site_of(r: int):  # type: ignore[no-untyped-def]
        """Round r's site (round-robin) and its window of ``--fast-layers`` layers (moving with r)."""
        site = sites[r % len(sites)]
        n_layers = len(site.layer_names)
        first = (r * 7) % max(1, n_layers - args.fast_layers + 1)
        return site.name, list(range(first, min(n_layers, first + args.fast_layers)))

    shares: list[float] = []
    flops_rate: dict[str, list[float]] = {"engine_fast": [], "engine_paper": []}

    def f_batched(r: int) -> float:
        name, layers = site_of(r)
        cfg = sweep_cfg(args, preset="fast", kinds=(vocab.MLP,), seeds=seeds, sites=(name,), layers=f"{layers[0]}:{layers[-1] + 1}", threads=n_threads)
        return timed(lambda: sweep_stores(cfg, [store])) / (len(layers) * len(seeds))

    def reference(spec, n: int):  # type: ignore[no-untyped-def]
        def step(r: int) -> float:
            name, layers = site_of(r)
            feats = features(name, layers)
            picks = [(r + k) % len(layers) for k in range(n)]
            return timed(lambda: [ReferenceProbe(feats.train.shape[2], n_classes, spec, seed=0, device=args.device).fit(feats.train[i], feats.y_train) for i in picks]) / n

        return step

    def engine(spec, key: str, peak_share: bool):  # type: ignore[no-untyped-def]
        def step(r: int) -> float:
            name, layers = site_of(r)
            feats = features(name, layers)
            lowp = feats.to(torch.bfloat16) if _auto_low(spec, args.device) else feats
            group = [Stream(i, 0) for i in range(min(args.group, len(layers)))]
            result = train_mlp_group(lowp, group, [spec], n_classes=n_classes)
            rate = result.matmul_flops / result.seconds / 1e9
            flops_rate[key].append(rate)
            if peak_share:
                shares.append(100 * rate / gemm_gflops(lowp.train.dtype, args.device))
            return result.seconds / len(group)

        return step

    def ensemble(spec):  # type: ignore[no-untyped-def]
        def step(r: int) -> float:
            name, layers = site_of(r)
            feats = features(name, layers)
            group = list(range(min(args.group, len(layers))))
            return timed(lambda: ensemble_train(feats, group, spec, n_classes)) / len(group)

        return step

    steps = {
        "F": f_batched, "PS": reference(paper, 1), "FS": reference(fast, args.fast_seq), "PB": engine(paper, "engine_paper", False),
        "EF": engine(fast, "engine_fast", True), "XF": ensemble(fast), "XP": ensemble(paper),
    }  # fmt: skip
    rounds = run_rounds(steps, args.pairs)
    rounds["EP"] = rounds["PB"]  # the paper batched group is the engine side of the paper ensemble pair
    ratios = {
        "fast_vs_a": pair_ratios(rounds, "PS", "F"), "paper_vs_a": pair_ratios(rounds, "PS", "PB"),
        "fast_vs_fast_seq": pair_ratios(rounds, "FS", "F"), "engine_vs_ensemble_fast": pair_ratios(rounds, "XF", "EF"),
        "engine_vs_ensemble_paper": pair_ratios(rounds, "XP", "EP"),
    }  # fmt: skip
    per_probe = {k: float(np.median(v)) for k, v in rounds.items()}
    print("seconds per probe (median over rounds): " + ", ".join(f"{k} {v:.3f}" for k, v in per_probe.items())
          + "  [F fast batched sweep, PS paper sequential (a), FS fast sequential, PB/EP paper engine group, EF fast engine group, XF/XP torch.func ensembles]")  # fmt: skip
    for key, value in ratios.items():
        print(f"  {key:<26} {value}")
    share = spread(shares)
    print(f"  fast engine matmuls: {np.median(flops_rate['engine_fast']):.0f} GFLOP/s = {share} % of the GEMM peak measured right after each group")
    return {**{k: v.median for k, v in ratios.items()}, "fast_matmul_peak": share.median}


def _auto_low(spec, device: str) -> bool:  # type: ignore[no-untyped-def]
    from layerprobe.probe.engine import matmul_dtype

    return matmul_dtype(device, spec.batch_size)[0] == torch.bfloat16


def ensemble_train(features, layers: list[int], spec, n_classes: int, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    """The same probes (one per layer, one recipe) as a torch.func ensemble with fused AdamW."""
    from torch import nn
    from torch.func import functional_call, stack_module_state, vmap

    x_lnd, y_n = features.train[layers], features.y_train
    n_probes, n, d_in = len(layers), x_lnd.shape[1], x_lnd.shape[2]
    torch.manual_seed(seed)
    models = [nn.Sequential(nn.Linear(d_in, spec.hidden), nn.ReLU(), nn.Dropout(spec.dropout), nn.Linear(spec.hidden, n_classes)) for _ in layers]
    params, buffers = stack_module_state(models)
    params = {k: v.detach().clone().to(x_lnd.device).requires_grad_(True) for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    call = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), randomness="different")
    opt = torch.optim.AdamW(list(params.values()), lr=spec.lr, betas=(spec.beta1, spec.beta2), eps=spec.eps, weight_decay=spec.weight_decay, fused=True)
    steps = math.ceil(n / spec.batch_size)
    total = spec.epochs * steps
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup_steps(total, spec.warmup_frac)))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(spec.epochs):
        order = torch.randperm(n, generator=generator).to(x_lnd.device)
        for s in range(steps):
            rows = order[s * spec.batch_size : (s + 1) * spec.batch_size]
            logits = call(params, buffers, x_lnd[:, rows])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, n_classes), y_n[rows].repeat(n_probes)) * n_probes
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            schedule.step()


# ------------------------------------------------------------------------------------ linear


def linear(store, args: argparse.Namespace, n_threads: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from sklearn.exceptions import ConvergenceWarning

    split = make_splits(store.labels, store.splits, store.valid, class_names=store.class_names)[0]
    sites = list(store.sites.values())
    cs = SweepConfig(stores=(Path("x"),)).linear.cs

    def ours(r: int) -> float:
        site = sites[r % len(sites)]
        cfg = sweep_cfg(args, kinds=(vocab.LINEAR,), sites=(site.name,), threads=n_threads)
        return timed(lambda: sweep_stores(cfg, [store])) / len(site.layer_names)

    def theirs(r: int) -> float:
        site = sites[r % len(sites)]
        layer = (r * 5) % len(site.layer_names)
        f = prepare_features(store.read_slabs(site.name, [layer]), store.labels, split)
        x = [t[0].numpy() for t in (f.train, f.val, f.test)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return timed(lambda: sklearn_linear_probe(x[0], f.y_train.numpy(), x[1], f.y_val.numpy(), x[2], n_classes=len(store.class_names), cs=cs, max_iter=100))

    rounds = run_rounds({"ours": ours, "sklearn": theirs}, args.pairs)
    ratio = pair_ratios(rounds, "sklearn", "ours")
    print(f"linear: batched L-BFGS {np.median(rounds['ours']):.3f} s/probe vs scikit-learn loop {np.median(rounds['sklearn']):.3f} s/probe ({len(cs)} C values)")
    print(f"  {'linear_vs_b':<26} {ratio}")
    return {"linear_vs_b": ratio.median}


# ------------------------------------------------------------------------------------ accuracy


def _real_store(work: Path):  # type: ignore[no-untyped-def]
    """A tiny real extraction: build_tiny llava over 3 x SUITE_REAL_PER_CLASS synthetic ultrasound images."""
    from layerprobe.extract.config import ExtractConfig
    from layerprobe.extract.runner import run_extract
    from layerprobe.store import open_store
    from layerprobe.testing import build_tiny
    from layerprobe.testing.images import CANDIDATES, INSTRUCTION, make_dataset

    data = make_dataset(work / "images", n_per_class=SUITE_REAL_PER_CLASS, size=64)
    model = build_tiny("llava", work / "models", hidden=256, n_layers=4, vision_layers=4, image_size=64)
    out = run_extract(ExtractConfig(model=str(model), dataset=str(data), out=work / "real.zarr", prompt=INSTRUCTION,
                                    candidates=CANDIDATES, batch_size=16, num_workers=0, progress=False, device="cpu"))  # fmt: skip
    return open_store(out)


def accuracy_suite(args: argparse.Namespace) -> dict[str, float]:
    deltas, spreads = [], []
    with tempfile.TemporaryDirectory(prefix="probe-acc-") as tmp:
        k = args.suite_scale
        shapes = [(name if k == 1 else f"{name} (x{k:g})", synthetic_store(max(60, int(n * k)), max(16, int(d * k)), {"llm/image_mean": layers}, n_classes=c, peak=SUITE_PEAK))
                  for name, n, c, d, layers in SUITE]  # fmt: skip
        real = _real_store(Path(tmp))
        shapes.append((f"real tiny llava, {int(0.6 * real.n_samples)} rows x {max(s.hidden for s in real.sites.values())}", real))
        for name, store in shapes:
            acc = {}
            for preset in ("fast", "paper"):
                frame = sweep_stores(sweep_cfg(args, preset=preset, kinds=(vocab.MLP,), seeds=SUITE_SEEDS), [store])
                acc[preset] = frame.filter(pl.col("kind") == vocab.MLP).sort("site", "layer", "seed").get_column("test_accuracy").to_numpy()
            d = 100 * float(np.mean(np.abs(acc["fast"] - acc["paper"])))
            by_seed = acc["paper"].reshape(-1, len(SUITE_SEEDS))
            seed_gap = 100 * float(np.mean([np.abs(by_seed[:, i] - by_seed[:, j]).mean() for i, j in itertools.combinations(range(len(SUITE_SEEDS)), 2)]))
            deltas.append(d)
            spreads.append(seed_gap)
            print(f"accuracy {name:<36} {len(acc['fast'])} probes: mean |fast - paper| {d:.2f} pt, mean fast - paper {100 * (acc['fast'].mean() - acc['paper'].mean()):+.2f} pt "
                  f"(paper mean accuracy {100 * acc['paper'].mean():.1f}%, paper seed-to-seed {seed_gap:.2f} pt)")  # fmt: skip
    mean = float(np.mean(deltas))
    print(f"accuracy suite: mean |delta acc| over {len(deltas)} shapes {mean:.2f} pt (per shape {', '.join(f'{d:.2f}' for d in deltas)}); "
          f"paper seed-to-seed {np.mean(spreads):.2f} pt")  # fmt: skip
    return {"fast_dacc": mean}


# ------------------------------------------------------------------------------------ threads


def threads_section(args: argparse.Namespace) -> dict[str, float]:
    store = synthetic_store(150, 64, {"vision/mean": 4, "llm/image_mean": 4})
    default = TORCH_DEFAULT_THREADS
    chosen = sweep_threads(sweep_cfg(args, preset="fast"), [store])

    def sweep(threads: int | None):  # type: ignore[no-untyped-def]
        cfg = sweep_cfg(args, preset="fast", threads=threads)
        return lambda r: timed(lambda: sweep_stores(cfg, [store]))

    # 9 rounds at least: a round is ~0.2 s, and 3 pairs read 0.87-0.97 for the same code (docs/LOG.md, seventh session)
    rounds = run_rounds({"auto": sweep(None), "one": sweep(1), "default": sweep(default)}, max(9, args.pairs))
    vs_one, vs_default = pair_ratios(rounds, "one", "auto"), pair_ratios(rounds, "default", "auto")
    print(f"threads: small sweep (150 x 64, 8 layers, fast MLP + linear): engine's choice {chosen[0]} ({chosen[1]}) "
          f"{np.median(rounds['auto']):.2f}s, 1 thread {np.median(rounds['one']):.2f}s, torch default {default} {np.median(rounds['default']):.2f}s")  # fmt: skip
    same = " (the engine chose 1 thread: both sides run the same setting, so this ratio is the machine's noise around 1)" if chosen[0] == 1 else ""
    print(f"  {'threads_auto_vs_1':<26} {vs_one}{same}\n  {'threads_auto_vs_default':<26} {vs_default}")
    return {"threads_auto_vs_1": vs_one.median, "threads_auto_vs_default": vs_default.median}


if __name__ == "__main__":
    main()
