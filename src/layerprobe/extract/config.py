"""What one extraction run does: :class:`ExtractConfig`, the input of :func:`run_extract`.

Fields that decide the stored bytes (model, revision, adapter, dataset, prompt, candidates, dtype,
answer tokens)
are recorded in the store, and a resumed run must repeat them. The rest (batch size, workers,
device, shard, progress) are runtime settings; ``batch_size`` is recorded as information only,
although it changes bf16 results slightly, because a batch's make-up does (field notes).

Text is parsed here, once: ``device`` becomes a ``torch.device`` and ``dtype`` gets its torch
dtype (``torch_dtype``), so the runner and ``load_model`` below only ever see values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from layerprobe import vocab
from layerprobe.devices import parse_device
from layerprobe.errors import ExtractError
from layerprobe.extract.data.candidates import as_candidates
from layerprobe.extract.data.dicom import FrameRule, parse_frame_rule
from layerprobe.dtypes import compute_dtype

if TYPE_CHECKING:
    import torch

    from layerprobe.extract.data.manifest import Manifest


@dataclass(frozen=True)
class ExtractConfig:
    """One extraction run: a model, a dataset and a prompt into one store."""

    model: str
    """Hugging Face id or local checkpoint folder, e.g. ``google/medgemma-4b-it`` or ``./ckpt``."""
    dataset: Manifest | str | Path
    """A :class:`Manifest`, or what ``--dataset`` takes: a class-per-folder tree, a
    ``.csv``/``.parquet`` table with columns ``path,label[,split]``, or ``recipe:folder``."""
    out: Path | str
    """Store directory to create, or to resume when it already exists, e.g. ``runs/a.zarr``."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of ``model``; None = the default branch."""
    adapter: str | None = None
    """Folder of a peft LoRA adapter applied on top of ``model``; recorded with its hash."""
    trust_remote_code: bool = False
    """Run the checkpoint's own Python code; off unless asked, since it executes arbitrary code."""
    site_spec: str | Path | Mapping[str, str] | None = None
    """Where the sites are for a model without a built-in adapter: a YAML/TOML file, or a mapping
    ``{"vision_layers": ..., "connector": ..., "llm_layers": ...}`` of module paths."""
    prompt: str | None = None
    """Instruction shown with each image (through the chat template). None = the dataset's own
    (recipes), else "Classify this image. Answer with one of: ..." over the candidates."""
    candidates: tuple[str, ...] | dict[str, str] | None = None
    """Answer ``i`` means class ``i``; their first tokens give the answer logits. None = the
    dataset's own (recipes), else the class names."""
    batch_size: int = 8
    """Images per forward pass. Batches never cross a store block, so whole blocks are written."""
    num_workers: int = 2
    """DataLoader worker processes that decode and preprocess images; 0 = in the main process."""
    prefetch: int = 2
    """Batches each worker prepares ahead of the forward pass."""
    dtype: str = vocab.AUTO
    """Compute dtype of the model, by name: ``auto`` (default) or one of ``vocab.COMPUTE_DTYPES``.
    ``auto`` is resolved by the runner before the model loads (``layerprobe.hardware``): bf16
    where the device has native bf16 matmuls (1.6-2.3x faster than fp32 on CPUs with AMX), fp32
    where bf16 is emulated (6x slower there) and the fp32 weights fit the memory budget. The store
    records the resolved name (a resume compares it) and the reason."""
    device: torch.device | str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``, or a ``torch.device``;
    a string is parsed into a ``torch.device`` here."""
    shard: tuple[int, int] = (0, 1)
    """``(k, n)``: this process writes blocks ``k, k+n, k+2n, ...`` of the store."""
    limit: int | None = None
    """Keep only the first ``limit`` samples in order. The store then holds exactly those, so a
    rerun with another limit is another dataset (refused on resume; use a new ``out``)."""
    skip_bad: bool = False
    """Record an undecodable or missing image as skipped instead of stopping the run."""
    chunk_samples: int | None = None
    """Samples per store chunk and commit block, capped at the sample count; None = the store's default."""
    progress: bool = True
    """Show a progress bar (only on a terminal)."""
    allow_duplicate_images: bool = False
    """Keep images with identical bytes in splits that may differ (``data/preflight.py``; refused by
    default, as a train/test leak); the copies found are recorded in ``RunMeta.extra``."""
    dicom_frame: FrameRule | str = None
    """Frame of a multi-frame DICOM to use: ``"first"``, ``"middle"`` or a 0-based index (negative
    from the end); text such as ``"3"`` is parsed here. None refuses multi-frame files naming them.
    Recorded in ``RunMeta.extra`` when set."""
    allow_pickle: bool = False
    """Also read pickled weights (``*.bin``) where a model or adapter folder has no safetensors;
    unpickling can run code, so only for checkpoints from a source you trust."""
    force_adapter: bool = False
    """Apply ``adapter`` even when it records another base model or modules this model lacks."""
    answer_tokens: int = 8
    """Tokens of greedy generation after the prompt, in the same pass as the capture (the states are
    still taken at the prompt's final token). The decoded text is stored per sample
    (``samples/answer_text``) and parsed into the generated-answer P_final, which is the paper's
    (``layerprobe.answers``); 8 covers one-word and short-phrase answers. 0 = forced choice over the
    candidates' first-token logits only (no generation; the store then has no answer column).
    Recorded in the store: a resume must repeat it."""
    threads: int | None = None
    """torch threads for the forward passes (restored after the run); None = torch's own count
    (``OMP_NUM_THREADS`` or one per core). On a machine other work keeps busy, 1 can be several times
    faster. bf16 results may differ in the last bit with another count, like with another batch
    size; recorded in ``RunMeta.extra`` when given."""
    split_file: Path | str | None = None
    """CSV ``id,split`` whose splits replace the dataset's own (``extract/data/splits.py``); its
    content is in the manifest digest, so a resume with a changed file is refused."""
    torch_dtype: torch.dtype | None = field(init=False, repr=False, compare=False)
    """``dtype`` as the torch dtype the model runs in (set from ``dtype``, not given); None for
    ``auto``, which depends on the checkpoint's size and is resolved by the runner."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.candidates is not None:
            object.__setattr__(self, "candidates", as_candidates(self.candidates))
        if self.dtype not in vocab.EXTRACT_DTYPES:
            raise ExtractError(f"dtype {self.dtype!r} is not supported; use one of {', '.join(vocab.EXTRACT_DTYPES)}")
        object.__setattr__(self, "torch_dtype", None if self.dtype == vocab.AUTO else compute_dtype(self.dtype))
        for name, least in (("batch_size", 1), ("num_workers", 0), ("prefetch", 1)):
            if getattr(self, name) < least:
                raise ExtractError(f"{name} must be at least {least}, got {getattr(self, name)}")
        if isinstance(self.answer_tokens, bool) or not isinstance(self.answer_tokens, int) or self.answer_tokens < 0:
            raise ExtractError(f"answer_tokens must be an int >= 0 (0: forced choice only), got {self.answer_tokens!r}")
        for name in ("limit", "chunk_samples", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ExtractError(f"{name} must be at least 1, got {value}")
        k, n = self.shard
        if not (n >= 1 and 0 <= k < n):
            raise ExtractError(f"shard {k}/{n} is invalid; use k/n with 0 <= k < n, e.g. 0/4")
        if self.prompt is not None and not self.prompt.strip():
            raise ExtractError("prompt is empty; pass an instruction or leave it out to use the dataset's own")
        if isinstance(self.device, str):
            object.__setattr__(self, "device", parse_device(self.device, ExtractError))
        if isinstance(self.dicom_frame, str):
            object.__setattr__(self, "dicom_frame", parse_frame_rule(self.dicom_frame))
