"""Fine-tuning throughput: `layerprobe finetune` against a plain hand-written peft loop (the floor), in one run.

One random-weight checkpoint is built with ``build_tiny`` at a realistic width (LLM hidden 1024,
vision width 768 like SigLIP-B, as ``extract_throughput.py`` builds them, but fewer layers so the
default run ends in under 5 minutes on 2 cores; ``--layers 16 --vision-layers 12 --image-size 224``
gives extraction's sizes), its vocabulary padded to ``--vocab`` rows (an LM head as wide as a real
one: training computes logits at every position). Both modes train on the same synthetic images
(``layerprobe.testing.images``), same batch, LoRA on the same modules (the finetune plan), the same
answer-only labels (finetune's ``Collator``), AdamW + cosine warmup, in the same dtype:

- ``finetune``: ``run_finetune`` (transformers ``Trainer`` + callbacks, the whole command);
- ``floor``: a DataLoader over the same collator, ``model(**batch).loss``, ``backward``, ``step``
  (with ``clip_grad_norm_`` only when ``--max-grad-norm`` is given, as finetune clips then).

Timed: wall time per optimizer step (data loading and collation included), the first
``--warmup`` steps left out; finetune's per-step times come from its own step table (the
``samples_per_second`` its StepTiming callback records), the floor's from ``perf_counter`` around
the same span. No checkpoint falls inside the timed steps (``save_steps`` past the end).
Peak memory: ``VmHWM`` (CPU; ``_pairs.peak_rss_mib``) or ``torch.cuda.max_memory_allocated`` (CUDA) when training ends,
each mode in its own process. Both children import the same modules before that moment, but for
what the finetune command itself needs (the ``Trainer`` and what it imports): the benchmark's own
bookkeeping (polars, to read finetune's step table) is imported after the peak is taken. Measured
on the CPU: importing polars raises the peak RSS by 22 MiB, about the 0.5% that the finetune
child's peak exceeded the floor's while it imported polars before training; the ``Trainer``'s
imports add about 1 MiB, which is real and stays in. The top-level modules only one child has
loaded at its peak are printed, so any other asymmetry shows. Modes run in interleaved pairs
(A/B, then B/A, ...); every ratio is the median over pairs, its spread (min-max) printed.

The compute dtype is ``--dtype`` (default ``auto``, finetune's default) resolved once by
``layerprobe.hardware.resolve_compute_dtype`` as finetune and extract resolve it, and passed to
every child by name, so all modes run in the same dtype.

P_final by generation vs forced choice (issue 12): one more child loads the same checkpoint once
and runs ``run_extract`` on the same ``--extract-images`` images with ``answer_tokens=8``
(``extract``'s default: greedy generation in the capture pass) and ``answer_tokens=0`` (forced
choice only) alternately, ``--pairs`` rounds after a warm-up (``benchmarks/_pairs.py``); it prints
both images/s and the median ratio of the pairs with its range. It has no target.

Targets (issue 12): finetune >= 0.95x the floor's samples/s, and no more peak memory (<= 1.00x).
Run: ``.venv/bin/python benchmarks/finetune_throughput.py [--pairs 3 --steps 6 --family qwen2_vl]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _args import count

MODES = ("finetune", "floor")
EXTRACT = "extract"
"""Child of the generation-overhead pairs (not a training mode)."""
ANSWER_TOKENS = 8
"""Tokens the generating extraction decodes (``ExtractConfig.answer_tokens``' default)."""
TARGETS = {"samples/s finetune/floor": (0.95, ">="), "peak memory finetune/floor": (1.00, "<=")}


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="qwen2_vl", help="build_tiny family")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vision-hidden", type=int, default=768)
    p.add_argument("--vision-layers", type=int, default=4)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--vocab", type=int, default=32000, help="LM-head rows (Llama's vocabulary); 0 keeps the tiny tokenizer's 2000")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=6, help="timed optimizer steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps first")
    p.add_argument("--pairs", type=count, default=3, help="interleaved finetune/floor pairs; ratios are medians over pairs")
    p.add_argument("--max-grad-norm", type=float, default=None, help="clip the gradient norm in both modes (default: none, finetune's default)")
    p.add_argument("--dtype", default="auto", help="dtype of the base weights: auto (finetune's default, resolved once here) or a compute dtype")
    p.add_argument("--extract-images", type=int, default=32, help="images per extraction in the generation-overhead pairs")
    p.add_argument("--extract-batch", type=int, default=8, help="extract's batch size there (extract's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--work-dir", default="bench-out/finetune")
    p.add_argument("--child", choices=(*MODES, EXTRACT), help=argparse.SUPPRESS)
    p.add_argument("--ckpt", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def cpu_info() -> tuple[str, bool]:
    """(CPU model name, native bf16: the amx_bf16 or avx512_bf16 flag) from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", False
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "unknown")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return model, bool({"amx_bf16", "avx512_bf16"} & set(flags))


# ------------------------------------------------------------------------------ one mode (child)


def _peak_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    from _pairs import peak_rss_mib

    return peak_rss_mib()


def _top_modules() -> list[str]:
    """Top-level packages loaded in this process (to show what one child imported that the other did not)."""
    return sorted({name.partition(".")[0] for name in list(sys.modules) if not name.startswith("_")})


def _child_finetune(args: argparse.Namespace, device) -> dict:
    import transformers

    from layerprobe.finetune import FinetuneConfig, run_finetune
    from layerprobe.finetune.output import STEPS_FILE

    peak: dict[str, float] = {}
    train = transformers.Trainer.train

    def measured(self, *a, **k):  # peak memory when training ends, before the adapter folder is assembled
        out = train(self, *a, **k)
        peak["mib"] = _peak_mib(device)
        peak["modules"] = _top_modules()
        return out

    transformers.Trainer.train = measured
    n_steps = args.warmup + args.steps
    out = Path(args.work_dir) / "runs" / f"finetune-{os.getpid()}-{time.time_ns()}"
    run_finetune(FinetuneConfig(model=args.ckpt, dataset=args.data, out=out, batch_size=args.batch_size, max_steps=n_steps, save_steps=n_steps + 1,
                                dtype=args.dtype, device=args.device, progress=False, lora_dropout=0.05, max_grad_norm=args.max_grad_norm))
    import polars as pl  # the benchmark's bookkeeping: imported after the peak is taken (module docstring)

    rates = pl.read_parquet(out / STEPS_FILE)
    step_s = [args.batch_size / r for r in rates.get_column("samples_per_second").to_list()]
    shutil.rmtree(out, ignore_errors=True)
    return {"step_seconds": step_s[args.warmup :], "peak_mib": peak["mib"], "modules": peak["modules"]}


def _child_floor(args: argparse.Namespace, device) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import get_cosine_schedule_with_warmup, set_seed

    from layerprobe.extract.model.adapters import get_adapter
    from layerprobe.dtypes import compute_dtype
    from layerprobe.extract.model.loading import load_model
    from layerprobe.extract.model.prompt import render_prompt
    from layerprobe.finetune import FinetuneConfig
    from layerprobe.finetune.examples import Collator, ImageSamples, answer_format
    from layerprobe.finetune.run import resolve_task
    from layerprobe.finetune.targets import plan_targets

    set_seed(0)
    cfg = FinetuneConfig(model=args.ckpt, dataset=args.data, out="unused", dtype=args.dtype, max_grad_norm=args.max_grad_norm)
    task = resolve_task(cfg)
    loaded = load_model(args.ckpt, dtype=compute_dtype(args.dtype), device=device)
    adapter = get_adapter(loaded)
    plan = plan_targets(loaded.model, adapter.paths, loaded.model_type, vision_tower=cfg.vision_tower, connector=cfg.connector)
    model = get_peft_model(loaded.model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, bias="none", target_modules=plan.regex()))
    prompt = render_prompt(loaded.processor, task.instruction, plain_prompt=adapter.plain_prompt)
    collate = Collator(loaded.processor, prompt, answer_format(loaded.processor, task.candidates), loaded.model_type, float_dtype=loaded.model.dtype)
    samples = ImageSamples([task.manifest.paths[i] for i in task.train], [task.manifest.labels[i] for i in task.train])
    loader = torch.utils.data.DataLoader(samples, batch_size=args.batch_size, shuffle=True, collate_fn=collate, drop_last=True)
    n_steps = args.warmup + args.steps
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, round(0.05 * n_steps), n_steps)
    model.train()
    step_s, last = [], time.perf_counter()
    for batch in loader:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        model(**batch).loss.backward()
        if cfg.max_grad_norm is not None:  # the same clipping setting as finetune's (default: none, as the paper)
            torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        step_s.append(now - last)
        last = now
        if len(step_s) == n_steps:
            break
    if len(step_s) < n_steps:
        raise SystemExit(f"floor: the train split gave {len(step_s)} batches, {n_steps} needed")
    return {"step_seconds": step_s[args.warmup :], "peak_mib": _peak_mib(device), "modules": _top_modules()}


def _child_extract(args: argparse.Namespace, device) -> dict:
    """Generation overhead: extraction with ``answer_tokens`` 8 and 0 alternately on one loaded model."""
    from _pairs import pair_ratios, run_rounds

    from layerprobe.extract.config import ExtractConfig
    from layerprobe.extract.data.datasets import from_image_folder
    from layerprobe.extract.model.loading import load_model
    from layerprobe.extract.runner import run_extract
    from layerprobe.testing.images import CANDIDATES, INSTRUCTION

    manifest = from_image_folder(args.data).head(args.extract_images)
    loaded = load_model(args.ckpt, dtype=args.dtype, device=device, progress=False)
    runs = Path(args.work_dir) / "runs" / f"extract-{os.getpid()}"

    def extract(answer_tokens: int, subset, name: str) -> float:
        out = runs / f"{name}.zarr"
        shutil.rmtree(out, ignore_errors=True)
        cfg = ExtractConfig(model=args.ckpt, dataset=subset, out=out, candidates=CANDIDATES, prompt=INSTRUCTION, batch_size=args.extract_batch,
                            num_workers=0, device=str(device), dtype=args.dtype, progress=False, answer_tokens=answer_tokens)  # fmt: skip
        started = time.perf_counter()
        run_extract(cfg, loaded=loaded)
        seconds = time.perf_counter() - started
        shutil.rmtree(out, ignore_errors=True)
        return seconds / subset.n_samples

    for tokens in (ANSWER_TOKENS, 0):  # warm-up: kernels, lazy imports, the first store of each path
        extract(tokens, manifest.head(args.extract_batch), "warm-up")
    steps = {"generated": lambda r: extract(ANSWER_TOKENS, manifest, "generated"), "forced": lambda r: extract(0, manifest, "forced")}
    rounds = run_rounds(steps, args.pairs)
    ratio = pair_ratios(rounds, "forced", "generated")  # forced s/img over generated s/img = generated img/s over forced img/s
    shutil.rmtree(runs, ignore_errors=True)
    return {"images_per_s": {name: 1 / statistics.median(v) for name, v in rounds.items()}, "ratio": list(ratio)}


def _child(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    device = torch.device("cuda" if args.device.startswith("cuda") and torch.cuda.is_available() else "cpu")
    if args.child == EXTRACT:
        return _child_extract(args, device)
    result = (_child_finetune if args.child == "finetune" else _child_floor)(args, device)
    result["samples_per_s"] = args.batch_size * len(result["step_seconds"]) / sum(result["step_seconds"])
    return result


# ------------------------------------------------------------------------------ orchestration


def _checkpoint(args: argparse.Namespace, models: Path) -> Path:
    """``build_tiny``'s checkpoint with its vocabulary padded to ``args.vocab`` rows: extract_throughput's, reused."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from extract_throughput import _checkpoint as padded_checkpoint

    return padded_checkpoint(args.family, args, models)


def _run(mode: str, args: argparse.Namespace, argv: list[str], ckpt: Path, data: Path, dtype: str) -> dict:
    command = [sys.executable, __file__, *argv, "--child", mode, "--ckpt", str(ckpt), "--data", str(data), "--dtype", dtype]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _resolved_dtype(args: argparse.Namespace, ckpt: Path) -> str:
    """``--dtype`` resolved once, as finetune and extract resolve it; every child runs in it."""
    import torch

    from layerprobe.hardware import checkpoint_fp32_bytes, resolve_compute_dtype

    resolved = resolve_compute_dtype(args.dtype, torch.device(args.device), checkpoint_fp32_bytes(ckpt))
    print(f"compute dtype of every mode: {resolved.name} ({resolved.reason})", flush=True)
    return resolved.name


def _verdict(name: str, value: float) -> bool:
    target, op = TARGETS[name]
    return value >= target if op == ">=" else value <= target


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return
    from layerprobe.testing.images import make_dataset

    work = Path(args.work_dir)
    n_train = (args.warmup + args.steps) * args.batch_size
    n_per_class = -(-n_train * 5 // 9) + 2  # the 60% train split of 3 classes must hold every timed batch
    data = make_dataset(work / f"images-{args.image_size}", n_per_class=n_per_class, size=args.image_size, seed=0)
    cpu, bf16 = cpu_info()
    print(f"finetune_throughput: {args.family}, LLM {args.hidden}x{args.layers}, vision {args.vision_hidden}x{args.vision_layers}, "
          f"vocab {args.vocab or 'tiny'}, {args.image_size} px, batch {args.batch_size}, --dtype {args.dtype}, {args.device}, "
          f"{args.warmup}+{args.steps} steps, {args.pairs} pairs; {os.cpu_count()} cores, CPU {cpu!r}, native bf16: {'yes' if bf16 else 'no'}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    ckpt = _checkpoint(args, work / "models")
    dtype = _resolved_dtype(args, ckpt)
    child_argv = list(argv if argv is not None else sys.argv[1:])
    ratios: dict[str, list[float]] = {name: [] for name in TARGETS}
    print(f"{'pair':>4} {'mode':<9} {'samples/s':>10} {'peak MiB':>10}")
    for pair in range(args.pairs):
        order = MODES if pair % 2 == 0 else MODES[::-1]  # interleaved A/B, B/A: drift on the machine hits both
        results = {mode: _run(mode, args, child_argv, ckpt, data, dtype) for mode in order}
        for mode in MODES:
            print(f"{pair:>4} {mode:<9} {results[mode]['samples_per_s']:10.3f} {results[mode]['peak_mib']:10,.0f}", flush=True)
        ratios["samples/s finetune/floor"].append(results["finetune"]["samples_per_s"] / results["floor"]["samples_per_s"])
        ratios["peak memory finetune/floor"].append(results["finetune"]["peak_mib"] / results["floor"]["peak_mib"])
    only = {mode: sorted(set(results[mode]["modules"]) - set(results[other]["modules"])) for mode, other in (MODES, MODES[::-1])}
    print("modules loaded at the peak by one child only: " + "; ".join(f"{mode}: {', '.join(names) or 'none'}" for mode, names in only.items()))
    gen = _run(EXTRACT, args, child_argv, ckpt, data, dtype)
    from _pairs import Spread

    ratio = Spread(*gen["ratio"])
    print(f"P_final generation vs forced choice in extract ({args.extract_images} images, batch {args.extract_batch}, {dtype}): "
          f"answer_tokens={ANSWER_TOKENS} {gen['images_per_s']['generated']:.2f} img/s vs answer_tokens=0 {gen['images_per_s']['forced']:.2f} img/s "
          f"= {ratio}", flush=True)
    parts, met = [], True
    for name, values in ratios.items():
        median = statistics.median(values)
        met &= _verdict(name, median)
        target, op = TARGETS[name]
        parts.append(f"{name} {median:.3f}x (spread {min(values):.3f}-{max(values):.3f}, target {op} {target:.2f}x)")
    print("finetune_throughput final: " + ", ".join(parts) + f" -> {'targets met' if met else 'TARGETS MISSED'}")


if __name__ == "__main__":
    main()
