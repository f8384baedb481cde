"""``build_tiny``: a tiny random-weight checkpoint of any registered family, built offline.

``build_tiny(family, out_dir)`` writes a folder that looks exactly like a user's checkpoint: the
real transformers model class with random weights, saved with ``save_pretrained`` (safetensors),
plus a processor (image processor + tokenizer + chat template) saved the same way. Tests, the demo
and the benchmark load it through ``load_model`` like any other model, so the loading path is the
one users take.

Design choices (each one a measured gotcha, see ``shared/notes/field-notes.md``):
- The model is constructed with the target dtype as torch's default dtype; casting afterwards
  would also cast the rotary-embedding buffers and shift logits after a reload.
- Sizes are arguments, so the same builder makes the 64-wide test models and the 1024-wide,
  16-layer models of the throughput benchmark. ``image_size`` is rounded to what the family's
  patch grid allows (a multiple of 28 for Qwen2/2.5-VL and Idefics3/SmolVLM, 32 for Qwen3-VL, 14
  otherwise).
- A finished folder carries ``layerprobe_tiny.json``; it is written last and the folder is moved
  into place atomically, so a half-built folder is never reused.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from layerprobe import vocab
from layerprobe.errors import ExtractError
from layerprobe.testing.tiny.registry import TinySize, tiny_builders

_MARKER = "layerprobe_tiny.json"


def build_tiny(
    family: str,
    out_dir: str | os.PathLike,
    *,
    hidden: int = 256,
    n_layers: int = 4,
    vision_layers: int = 4,
    image_size: int = 224,
    seed: int = 0,
    vision_hidden: int | None = None,
    dtype: str = vocab.BFLOAT16,
) -> Path:
    """Build (or reuse) a tiny random-weight checkpoint of ``family`` under ``out_dir``; return its folder.

    The folder name encodes every argument, so different sizes can share ``out_dir``. Weights are
    saved in ``dtype`` (a name of ``vocab.COMPUTE_DTYPES``; bf16 by default, like released checkpoints).
    """
    builders = tiny_builders()
    if family not in builders:
        raise ExtractError(f"no tiny model for family {family!r}; choose one of {', '.join(sorted(builders))}")
    size = TinySize(hidden, n_layers, vision_layers, image_size, seed, vision_hidden)
    vh = f"-vh{vision_hidden}" if vision_hidden else ""
    name = f"{family}-h{hidden}-l{n_layers}-v{vision_layers}-s{image_size}-seed{seed}{vh}-{dtype}"
    final = Path(out_dir) / name
    if (final / _MARKER).is_file():
        return final
    import torch
    from transformers import set_seed

    from layerprobe.dtypes import compute_dtype

    torch_dtype = compute_dtype(dtype)
    tmp = Path(out_dir) / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    previous = torch.get_default_dtype()
    set_seed(seed)
    torch.set_default_dtype(torch_dtype)
    try:
        model, processor = builders[family].build(size)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    (tmp / _MARKER).write_text(json.dumps({"family": family, "dtype": dtype, **asdict(size)}, indent=1))
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished the same build first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / _MARKER).is_file():
            raise
    return final
