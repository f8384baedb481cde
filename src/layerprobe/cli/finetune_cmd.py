"""`layerprobe finetune`: flags -> FinetuneConfig -> run_finetune (see layerprobe.finetune.run)."""

from __future__ import annotations

import json
import time

import click

from layerprobe import vocab
from layerprobe.cli.extract_cmd import _parse_candidates  # the same --candidates syntax as extract


@click.command("finetune")
@click.option("--model", required=True, metavar="ID|DIR", help="Hugging Face id or local checkpoint folder. e.g. --model google/medgemma-4b-it")
@click.option("--revision", metavar="REV", help="Hub branch, tag or commit of --model. e.g. --revision main")
@click.option("--trust-remote-code", is_flag=True, help="Allow the checkpoint's own Python code (custom families; needs --site-spec).")
@click.option("--site-spec", metavar="FILE", help="TOML site spec for a model without a built-in adapter (as extract). e.g. --site-spec sitespec.toml")
@click.option("--dataset", required=True, metavar="SRC",
              help="As extract: a class-per-folder tree, a .csv/.parquet table path,label[,split], or recipe:folder. e.g. --dataset busi:/data/BUSI")
@click.option("--split-file", metavar="FILE",
              help="As extract: a CSV id,split whose splits replace the dataset's own (unlisted samples: unassigned). e.g. --split-file splits.csv")
@click.option("--prompt", "--instruction", "prompt", metavar="TEXT", help="Instruction (default: the recipe's, else extract's generic one).")
@click.option("--candidates", callback=_parse_candidates, metavar="A,B,..",
              help="Answer per class in class order, the training targets (default: the recipe's, else the class names). e.g. --candidates Yes,No")
@click.option("--out", required=True, metavar="DIR", help="Adapter folder to create (must not exist; a rerun resumes DIR.partial). e.g. --out lora/busi")
@click.option("--vision-tower", default=vocab.LORA, show_default=True, type=click.Choice(vocab.VISION_TOWER_MODES),
              help="lora: LoRA in every Linear of the vision tower (the paper's main arm); frozen: untouched (Table 2's grey arm).")
@click.option("--connector", default=vocab.LORA, show_default=True, type=click.Choice(vocab.CONNECTOR_MODES),
              help="lora: LoRA in the connector's Linears; frozen: untouched; full: the whole connector trained.")
@click.option("--lora-r", default=8, show_default=True, type=click.IntRange(min=1), help="LoRA rank.")
@click.option("--lora-alpha", default=32, show_default=True, type=click.IntRange(min=1), help="LoRA alpha (scale alpha/r).")
@click.option("--lora-dropout", default=0.05, show_default=True, type=click.FloatRange(0, 1, max_open=True), help="Dropout on the LoRA input.")
@click.option("--lr", "learning_rate", default=1e-4, show_default=True, type=float, help="AdamW learning rate (cosine decay after warmup).")
@click.option("--warmup-ratio", default=0.05, show_default=True, type=click.FloatRange(0, 1, max_open=True), help="Share of steps warming up.")
@click.option("--max-grad-norm", type=click.FloatRange(min=0, min_open=True), metavar="X",
              help="Clip the gradient norm at X before each step (default: no clipping, as the paper). e.g. --max-grad-norm 1.0")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1), help="Passes over the train split.")
@click.option("--max-steps", type=click.IntRange(min=1), metavar="N", help="Stop after N optimizer steps (smoke runs). e.g. --max-steps 10")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1), help="Samples per forward pass.")
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(min=1), help="Forward passes per optimizer step.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of LoRA init, data order and dropout.")
@click.option("--dtype", default=vocab.AUTO, show_default=True, type=click.Choice(vocab.EXTRACT_DTYPES),
              help="Compute dtype of the base weights, chosen as extract chooses it (LoRA weights stay float32). auto = bfloat16 "
                   "where the device has native bf16 matmuls (CUDA >= 8.0, CPUs with AMX or AVX512-BF16), else float32 when the "
                   "fp32 weights fit in half the free memory (else bfloat16, with a warning); the choice and why are printed and "
                   "recorded in the adapter's metadata. e.g. --dtype float32")
@click.option("--device", default="auto", show_default=True, metavar="DEV", help="auto (CUDA if present), cpu, cuda or cuda:N.")
@click.option("--keep", default=vocab.KEEP_LAST, show_default=True, type=click.Choice(vocab.KEEP_MODES),
              help="last: the final adapter; best: the epoch with the best val accuracy.")
@click.option("--save-steps", default=100, show_default=True, type=click.IntRange(min=1), help="A resumable checkpoint every N optimizer steps.")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in the backward pass (less memory, slower).")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0), help="Loader processes decoding images (0 = main process).")
@click.option("--vision-ce", is_flag=True,
              help="Instead of LoRA SFT: train the vision tower + a pooled head with cross-entropy (Table 3's baseline) and write "
                   "its test metrics as one results-table row (kind vision_ce) to --out, a new .parquet.")
@click.option("--ce-tower", default=vocab.LORA, show_default=True, type=click.Choice(vocab.VISION_CE_TOWER_MODES),
              help="With --vision-ce: lora (LoRA in the tower's Linears, r/alpha/dropout from --lora-*) or full (every tower weight).")
@click.option("--ce-head", default=vocab.LINEAR, show_default=True, type=click.Choice(vocab.VISION_CE_HEADS),
              help="With --vision-ce: the head on the mean-pooled last vision block (linear, or mlp = Linear-ReLU-Linear).")
@click.option("--ce-head-hidden", default=256, show_default=True, type=click.IntRange(min=1), help="With --vision-ce --ce-head mlp: hidden units.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-line JSON summary on stdout instead of text.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def finetune(model, revision, trust_remote_code, site_spec, dataset, split_file, prompt, candidates, out, vision_tower, connector, lora_r,
             lora_alpha, lora_dropout, learning_rate, warmup_ratio, max_grad_norm, epochs, max_steps, batch_size, grad_accum, seed, dtype, device,
             keep, save_steps, gradient_checkpointing, workers, vision_ce, ce_tower, ce_head, ce_head_hidden, as_json, no_progress):
    """LoRA-fine-tune an MLLM on a labelled image set (the study's SFT step) into a peft adapter folder.

    \b
    The prompt is exactly what extract renders; the loss is on the answer tokens only. The defaults
    are the paper's: LoRA r=8, alpha=32 on all linear layers, AdamW lr 1e-4, cosine with 5% warmup,
    20 epochs, batch 4. Rerunning the same command after an interruption resumes it.
    \b
    Examples:
      layerprobe finetune --model ./medgemma --dataset busi:/data/BUSI --out lora/busi
      layerprobe finetune --model ./medgemma --dataset busi:/data/BUSI --vision-tower frozen --out lora/busi-frozen
      layerprobe extract --model ./medgemma --adapter lora/busi --dataset busi:/data/BUSI --out runs/medgemma-busi-sft.zarr
    \b
    With --vision-ce, the vision-tower CE baseline instead: the model's own vision tower (--ce-tower lora|full)
    and a head on its last block, mean-pooled per image as vision/mean pools it, trained with cross-entropy
    on the same splits (same optimiser flags); --out is a new .parquet holding one results row (kind vision_ce)
    that fhs and report load beside probe tables. The SFT-only flags (--vision-tower, --connector,
    --grad-accum, --max-steps, --save-steps, --gradient-checkpointing, --max-grad-norm) are refused with it.
      layerprobe finetune --vision-ce --model ./medgemma --dataset busi:/data/BUSI --out results/busi-vision-ce.parquet
    """
    if vision_ce or _given(_CE_ONLY):
        if not vision_ce:
            raise click.UsageError(f"{', '.join(_flags(_given(_CE_ONLY)))} only apply with --vision-ce")
        if _given(_SFT_ONLY):
            raise click.UsageError(f"{', '.join(_flags(_given(_SFT_ONLY)))} do not apply to --vision-ce (they are LoRA SFT settings)")
        _run_vision_ce(dict(model=model, dataset=dataset, split_file=split_file, out=out, prompt=prompt, candidates=candidates, revision=revision,
                            trust_remote_code=trust_remote_code, site_spec=site_spec, tower=ce_tower, head=ce_head, head_hidden=ce_head_hidden,
                            lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, learning_rate=learning_rate,
                            warmup_ratio=warmup_ratio, epochs=epochs, batch_size=batch_size, seed=seed, device=device,
                            dtype=dtype, keep=keep, num_workers=workers, progress=not no_progress), as_json)
        return
    from layerprobe.finetune.config import FinetuneConfig
    from layerprobe.finetune.output import METADATA_FILE
    from layerprobe.finetune.run import run_finetune

    cfg = FinetuneConfig(
        model=model, dataset=dataset, split_file=split_file, out=out, prompt=prompt, candidates=candidates, revision=revision,
        trust_remote_code=trust_remote_code, site_spec=site_spec, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        vision_tower=vision_tower, connector=connector, learning_rate=learning_rate, warmup_ratio=warmup_ratio, max_grad_norm=max_grad_norm, epochs=epochs,
        batch_size=batch_size, grad_accum=grad_accum, max_steps=max_steps, seed=seed, device=device, dtype=dtype, keep=keep,
        save_steps=save_steps, gradient_checkpointing=gradient_checkpointing, num_workers=workers, progress=not no_progress,
    )
    started = time.perf_counter()
    path = run_finetune(cfg)
    doc = json.loads((path / METADATA_FILE).read_text())
    last = doc["epochs"][-1] if doc["epochs"] else {}
    summary = {"adapter": str(path), "steps": doc["kept"]["step"], "kept": doc["kept"], "val_accuracy": last.get(f"val_{vocab.ACCURACY}"),
               "val_loss": last.get("val_loss"), "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{path}: adapter after {summary['steps']} steps ({keep}); val accuracy {summary['val_accuracy']}, "
               f"val loss {summary['val_loss']}; {summary['seconds']:.1f} s")


_SFT_ONLY = ("vision_tower", "connector", "grad_accum", "max_steps", "save_steps", "gradient_checkpointing", "max_grad_norm")
"""Parameters of LoRA SFT that the vision-CE baseline has no use for (refused, never ignored)."""
_CE_ONLY = ("ce_tower", "ce_head", "ce_head_hidden")


def _given(names: tuple[str, ...]) -> list[str]:
    """The parameters among ``names`` the user set on the command line (not left at their default)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return [n for n in names if ctx.get_parameter_source(n) not in (ParameterSource.DEFAULT, None)]


def _flags(names: list[str]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in names]


def _run_vision_ce(settings: dict, as_json: bool) -> None:
    import polars as pl

    from layerprobe.finetune.vision_ce import run_vision_ce
    from layerprobe.finetune.vision_ce_config import VisionCEConfig

    started = time.perf_counter()
    path = run_vision_ce(VisionCEConfig(**settings))
    row = pl.read_parquet(path).row(0, named=True)
    summary = {"results": str(path), "run_id": row["run_id"], "kind": row["kind"], "layer_name": row["layer_name"],
               "best_epoch": row["best_epoch"], "val_accuracy": row[f"val_{vocab.ACCURACY}"], "test_accuracy": row[f"test_{vocab.ACCURACY}"],
               "seconds": round(time.perf_counter() - started, 3)}
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{path}: vision-CE {settings['tower']} tower + {settings['head']} head on {row['layer_name']}; "
               f"test accuracy {summary['test_accuracy']:.4f}, val accuracy {summary['val_accuracy']:.4f} (epoch {row['best_epoch']}); "
               f"{summary['seconds']:.1f} s")
