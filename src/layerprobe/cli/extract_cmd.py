"""`layerprobe extract`: flags -> ExtractConfig -> run_extract (see layerprobe.extract.runner)."""

from __future__ import annotations

import json
import time

import click

from layerprobe import vocab


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int]:
    if value is None:
        return (0, 1)
    k, sep, n = value.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not k/n, e.g. 0/4") from None
    if not sep or not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise click.BadParameter(f"{value!r} needs 0 <= k < n, e.g. 0/4")
    return shard


def _parse_candidates(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | dict[str, str] | None:
    from layerprobe.errors import LayerprobeError
    from layerprobe.extract.data.candidates import parse_candidates

    if value is None:
        return None
    if value.lstrip().startswith(("[", "{")):
        try:
            items = json.loads(value)
        except json.JSONDecodeError as err:
            raise click.BadParameter(f"not a JSON list or object of strings ({err.msg})") from None
        values = items.values() if isinstance(items, dict) else items
        if not isinstance(items, (list, dict)) or not all(isinstance(i, str) for i in values):
            raise click.BadParameter("a JSON value must be a list of strings or a class->answer object, e.g. '{\"pneumonia\": \" Yes\"}'")
        return tuple(items) if isinstance(items, list) else items
    try:
        return parse_candidates(value)
    except LayerprobeError as err:
        raise click.BadParameter(str(err)) from None


@click.command("extract")
@click.option("--model", required=True, metavar="ID|DIR",
              help="Hugging Face id or local checkpoint folder. e.g. --model google/medgemma-4b-it or --model ./ckpt")
@click.option("--revision", metavar="REV", help="Hub branch, tag or commit of --model. e.g. --revision main")
@click.option("--adapter", metavar="DIR", help="peft LoRA adapter folder applied to the model (recorded in the store). e.g. --adapter ./lora-busi")
@click.option("--trust-remote-code", is_flag=True,
              help="Allow the checkpoint's own Python code (custom families; also needs a site spec). e.g. --trust-remote-code")
@click.option("--site-spec", metavar="FILE",
              help="TOML file naming the module paths of the sites, for models without a built-in adapter. e.g. --site-spec sitespec.toml")
@click.option("--vision-layers", metavar="PATH",
              help="Generic adapter: module path of the vision-block list. e.g. --vision-layers model.vision_tower.encoder.layers")
@click.option("--connector", metavar="PATH",
              help="Generic adapter: module path of the connector (projector). e.g. --connector model.multi_modal_projector")
@click.option("--llm-layers", metavar="PATH",
              help="Generic adapter: module path of the LLM decoder-layer list. e.g. --llm-layers model.language_model.layers")
@click.option("--dataset", required=True, metavar="SRC",
              help="Class-per-folder tree, a .csv/.parquet table with columns path,label[,split], or recipe:folder. "
                   "e.g. --dataset /data/BUSI or --dataset labels.csv or --dataset busi:/data/BUSI")
@click.option("--split-file", metavar="FILE",
              help="CSV with the header id,split (ids as the dataset's sample ids, paths relative to its root) whose splits "
                   "replace the dataset's own; samples it does not list are unassigned (left out of the probe's split). "
                   "e.g. --split-file splits.csv")
@click.option("--prompt", "--instruction", "prompt", metavar="TEXT",
              help="Instruction shown with each image through the chat template (default: the recipe's, else a generic one "
                   "naming the candidates). e.g. --prompt \"Is there pneumonia? Answer 'Yes' or 'No'.\"")
@click.option("--candidates", callback=_parse_candidates, metavar="CLASS=A,..",
              help="Candidate answers, matched to classes by name, never by position (default: the recipe's, else the class "
                   "names): answers that name the classes in any order, or class=answer pairs (needed when answers name no "
                   "class); a JSON list/object keeps spaces. e.g. --candidates pneumonia=Yes,normal=No or "
                   "--candidates Benign,Malignant,Normal or --candidates '{\"pneumonia\": \" Yes\", \"normal\": \" No\"}'")
@click.option("--out", required=True, metavar="DIR", help="Store to create, or to resume if it exists. e.g. --out runs/medgemma-busi.zarr")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1), help="Images per forward pass. e.g. --batch-size 16")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0),
              help="Loader processes that decode and preprocess images (0 = in the main process). e.g. --workers 4")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads for the forward passes (default: torch's own count, OMP_NUM_THREADS or one per core); "
                   "on a busy machine 1 can be several times faster. e.g. --threads 1")
@click.option("--prefetch", default=2, show_default=True, type=click.IntRange(min=1), help="Batches each loader process prepares ahead. e.g. --prefetch 4")
@click.option("--dtype", default=vocab.AUTO, show_default=True, type=click.Choice(vocab.EXTRACT_DTYPES),
              help="Compute dtype of the model (activations are stored as bf16 either way). auto = bfloat16 where the device "
                   "has native bf16 matmuls (CUDA >= 8.0, CPUs with AMX or AVX512-BF16), else float32 when the fp32 weights "
                   "fit in half the free memory (else bfloat16, with a warning); the store records the choice and why. "
                   "e.g. --dtype float32")
@click.option("--device", default="auto", show_default=True, metavar="DEV", help="auto (CUDA if present), cpu, cuda or cuda:N. e.g. --device cuda:1")
@click.option("--shard", callback=_parse_shard, metavar="K/N",
              help="Process only blocks k, k+n, k+2n, ... of the store; run n of these (any order, any machine) for one store. e.g. --shard 0/4")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Keep only the first N samples in order (a smaller store; another N needs another --out). e.g. --limit 64")
@click.option("--skip-bad", is_flag=True, help="Record undecodable or missing images as skipped, with the reason (listed by info and verify), instead of failing; "
                   "a rerun extracts again those that now decode. e.g. --skip-bad")
@click.option("--dicom-frame", metavar="first|middle|N",
              help="Frame of multi-frame DICOM files to use: first, middle or a 0-based index N (negative from the end); "
                   "without it such files are refused by name. Recorded in the store. e.g. --dicom-frame middle")
@click.option("--allow-duplicate-images", is_flag=True,
              help="Keep images with identical bytes in splits that may differ (refused by default: a train/test leak); "
                   "the copies are recorded in the store. e.g. --allow-duplicate-images")
@click.option("--chunk-samples", type=click.IntRange(min=1), metavar="N",
              help="Samples per store chunk and commit block (default: the store's; capped at the number of images). "
                   "e.g. --chunk-samples 256")
@click.option("--json", "as_json", is_flag=True, help="Print a one-line JSON summary on stdout instead of text. e.g. --json")
@click.option("--no-progress", is_flag=True,
              help="Hide the progress bars, the model-loading ones included (hidden anyway when stderr is not a terminal). e.g. --no-progress")
@click.option("--allow-pickle", is_flag=True,
              help="Also read pickled weights (*.bin) of a model or adapter without safetensors; unpickling can run code, so only "
                   "for a trusted source. e.g. --allow-pickle")
@click.option("--force-adapter", is_flag=True,
              help="Apply --adapter even though it records another base model or modules this model lacks. e.g. --force-adapter")
@click.option("--answer-tokens", type=click.IntRange(min=0), default=8, show_default=True, metavar="N",
              help="Greedy-decode up to N answer tokens in the same pass and store the text per sample: the generated "
                   "answer, parsed to a candidate, is the paper's P_final. 0 = forced choice over the candidates' first-token "
                   "logits only. Recorded in the store (a resume must repeat it). e.g. --answer-tokens 0")
def extract(model, revision, adapter, trust_remote_code, site_spec, vision_layers, connector, llm_layers, dataset, split_file, prompt,
            candidates, out, batch_size, workers, threads, prefetch, dtype, device, shard, limit, skip_bad, dicom_frame, allow_duplicate_images,
            chunk_samples, as_json, no_progress, allow_pickle, force_adapter, answer_tokens):
    """Run a multimodal LLM once over a labelled image set and store every site's pooled activations.

    \b
    One forward per batch captures the vision tower (every block), the connector and the LLM
    (embedding + every layer, image-token mean and final token) plus the answer logits and the
    generated answer (--answer-tokens), and streams them into a Zarr store. Rerunning the same command resumes; a different model, adapter, prompt
    or dataset is refused.
    \b
    Examples:
      layerprobe extract --model ./medgemma --dataset busi:/data/BUSI --out runs/medgemma-busi.zarr
      layerprobe extract --model Qwen/Qwen2-VL-2B-Instruct --dataset labels.csv --candidates pneumonia=Yes,normal=No \\
          --prompt "Is there pneumonia? Answer 'Yes' or 'No'." --out runs/q2-cxr.zarr --shard 0/2
    """
    from layerprobe.extract.config import ExtractConfig
    from layerprobe.extract.runner import run_extract
    from layerprobe.store import open_store

    paths = {"vision_layers": vision_layers, "connector": connector, "llm_layers": llm_layers}
    given = {k: v for k, v in paths.items() if v}
    if given and site_spec:
        raise click.UsageError("give either --site-spec or --vision-layers/--connector/--llm-layers, not both")
    if given and len(given) < len(paths):
        missing = ", ".join("--" + k.replace("_", "-") for k in paths if k not in given)
        raise click.UsageError(f"the generic adapter needs all three module paths; missing {missing}")
    cfg = ExtractConfig(
        model=model, dataset=dataset, split_file=split_file, out=out, revision=revision, adapter=adapter, trust_remote_code=trust_remote_code,
        site_spec=given or site_spec, prompt=prompt, candidates=candidates, batch_size=batch_size, num_workers=workers, threads=threads,
        prefetch=prefetch, dtype=dtype, device=device, shard=shard, limit=limit, skip_bad=skip_bad,
        chunk_samples=chunk_samples, progress=not no_progress, allow_duplicate_images=allow_duplicate_images,
        dicom_frame=dicom_frame, allow_pickle=allow_pickle, force_adapter=force_adapter, answer_tokens=answer_tokens,
    )
    started = time.perf_counter()
    path = run_extract(cfg)
    seconds = time.perf_counter() - started
    store = open_store(path)
    n_committed, n_skipped = int(store.committed.sum()), int((store.committed & store.skipped).sum())
    summary = {"store": str(path), "n_samples": int(store.n_samples), "n_committed": n_committed, "n_skipped": n_skipped,
               "complete": n_committed == store.n_samples, "seconds": round(seconds, 3)}
    if as_json:
        click.echo(json.dumps(summary))
        return
    state = "complete" if summary["complete"] else "incomplete (run the other shards or rerun to finish)"
    click.echo(f"{path}: {n_committed}/{store.n_samples} samples committed, {n_skipped} skipped, {state}; {seconds:.1f} s")
