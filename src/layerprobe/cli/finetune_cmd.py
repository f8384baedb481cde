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
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1), help="Passes over the train split.")
@click.option("--max-steps", type=click.IntRange(min=1), metavar="N", help="Stop after N optimizer steps (smoke runs). e.g. --max-steps 10")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1), help="Samples per forward pass.")
@click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(min=1), help="Forward passes per optimizer step.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of LoRA init, data order and dropout.")
@click.option("--dtype", default=vocab.BFLOAT16, show_default=True, type=click.Choice(vocab.COMPUTE_DTYPES), help="Dtype of the base weights.")
@click.option("--device", default="auto", show_default=True, metavar="DEV", help="auto (CUDA if present), cpu, cuda or cuda:N.")
@click.option("--keep", default=vocab.KEEP_LAST, show_default=True, type=click.Choice(vocab.KEEP_MODES),
              help="last: the final adapter; best: the epoch with the best val accuracy.")
@click.option("--save-steps", default=100, show_default=True, type=click.IntRange(min=1), help="A resumable checkpoint every N optimizer steps.")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in the backward pass (less memory, slower).")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0), help="Loader processes decoding images (0 = main process).")
@click.option("--json", "as_json", is_flag=True, help="Print a one-line JSON summary on stdout instead of text.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def finetune(model, revision, trust_remote_code, site_spec, dataset, prompt, candidates, out, vision_tower, connector, lora_r,
             lora_alpha, lora_dropout, learning_rate, warmup_ratio, epochs, max_steps, batch_size, grad_accum, seed, dtype, device,
             keep, save_steps, gradient_checkpointing, workers, as_json, no_progress):
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
    """
    from layerprobe.finetune.config import FinetuneConfig
    from layerprobe.finetune.output import METADATA_FILE
    from layerprobe.finetune.run import run_finetune

    cfg = FinetuneConfig(
        model=model, dataset=dataset, out=out, prompt=prompt, candidates=candidates, revision=revision,
        trust_remote_code=trust_remote_code, site_spec=site_spec, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        vision_tower=vision_tower, connector=connector, learning_rate=learning_rate, warmup_ratio=warmup_ratio, epochs=epochs,
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
