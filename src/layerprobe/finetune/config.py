"""What one fine-tuning run does: :class:`FinetuneConfig`, the input of :func:`run_finetune`.

The defaults are the paper's (sec. 3.2): "We apply LoRA to all linear layers with rank 8 and
alpha 32 ... AdamW optimizer with a learning rate of 1e-4. A cosine learning rate scheduler with a
warmup ratio of 0.05 ... 20 epochs with a batch size of 4."

Choices the paper leaves open, and why they are set as they are:
- ``vision_tower="lora"`` and ``connector="lora"``: "all linear layers" includes them, and the
  paper's Table 1 P_final values equal the *non-grey* (LoRA-tuned tower) rows of its Table 2
  (e.g. HuatuoGPT-Vision-7B 84.00 / 78.82 / 78.53), so the main SFT arm tuned the tower too.
  ``frozen`` is the grey arm of Table 2.
- ``lora_dropout=0.05``: not given in the paper; the common LoRA-SFT default (ms-swift, many peft
  recipes). ``weight_decay=0``: AdamW without decay, transformers' default.
- ``max_grad_norm=None``: no gradient clipping. The paper names none, and transformers' ``Trainer``
  would otherwise clip the global gradient norm at 1.0 by default, a silent change of the recipe;
  a number clips at that norm.
- ``keep="last"``: the paper trains a fixed 20 epochs and names no model selection.
- Splits: a dataset's own split column is used; a dataset with none is split exactly as the probe
  sweep splits its store by default (:func:`layerprobe.probe.make_splits`, seed 0, 60/20/20,
  stratified), so fine-tuning never trains on the samples the probes are tested on.

Fields that change the adapter's bytes are the run's identity (:meth:`FinetuneConfig.identity`):
a resumed run must repeat them; ``progress``, ``num_workers`` and ``save_steps`` may differ.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerprobe import vocab
from layerprobe.errors import LayerprobeError

if TYPE_CHECKING:
    from layerprobe.extract.data.manifest import Manifest


class FinetuneError(LayerprobeError):
    """A model, dataset, setting or output folder that fine-tuning cannot use (one line, with the fix)."""


_RUNTIME_FIELDS = frozenset({"out", "progress", "num_workers", "save_steps"})
"""Fields that do not change the adapter's bytes (a resumed run may change them)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """One LoRA SFT run: a model and a labelled image set into one peft adapter folder."""

    model: str
    """Hugging Face id or local checkpoint folder (what ``extract --model`` takes)."""
    dataset: Manifest | str | Path
    """What ``extract --dataset`` takes: a class-per-folder tree, a ``.csv``/``.parquet`` table with
    columns ``path,label[,split]``, ``recipe:folder``, or a :class:`Manifest`."""
    out: Path | str
    """Adapter folder to create, e.g. ``lora/busi``; it must not exist. While training, the run lives
    in ``<out>.partial/`` (checkpoints), which a rerun of the same command resumes."""
    prompt: str | None = None
    """Instruction shown with each image. None = the dataset's own (recipes), else extraction's
    generic one naming the candidates: the same text ``extract`` would use."""
    candidates: tuple[str, ...] | dict[str, str] | None = None
    """Answer ``i`` means class ``i`` and is the training target of class ``i``. None = the dataset's
    own (recipes), else the class names: the same as ``extract``."""
    revision: str | None = None
    """Hub revision of ``model``; None = the default branch."""
    trust_remote_code: bool = False
    """Run the checkpoint's own Python code (custom families; needs ``site_spec`` too)."""
    site_spec: Any = None
    """Site spec for a model without a built-in adapter (as ``extract --site-spec``): it says where the
    vision tower, connector and LLM are, which decides the LoRA targets."""
    lora_r: int = 8
    """LoRA rank (paper: 8)."""
    lora_alpha: int = 32
    """LoRA scaling numerator; the update is scaled by ``alpha / r`` (paper: 32)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch's input (not in the paper; the usual LoRA-SFT default)."""
    vision_tower: str = vocab.LORA
    """``lora`` (LoRA in every Linear of the tower; the paper's main arm) or ``frozen`` (no adapter
    module there, weights bit-identical: Table 2's grey arm)."""
    connector: str = vocab.LORA
    """``lora`` (every Linear of the connector, as "all linear layers" says; Gemma3's bare
    projection matrix is no Linear and stays as it is), ``frozen``, or ``full`` (the whole connector
    trained and saved with the adapter)."""
    learning_rate: float = 1e-4
    """AdamW learning rate (paper: 1e-4), reached after warmup, then cosine decay to 0."""
    warmup_ratio: float = 0.05
    """Share of the optimizer steps spent warming up linearly from 0 (paper: 0.05)."""
    weight_decay: float = 0.0
    """AdamW weight decay (not in the paper; transformers' default)."""
    max_grad_norm: float | None = None
    """Clip the global gradient norm (all trained parameters) at this value before each optimizer
    step; None = no clipping (the paper names none; transformers' Trainer would clip at 1.0)."""
    epochs: int = 20
    """Passes over the train split (paper: 20)."""
    batch_size: int = 4
    """Samples per forward pass (paper: 4)."""
    grad_accum: int = 1
    """Forward passes per optimizer step; the effective batch is ``batch_size * grad_accum``."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (smoke runs, tests); None = ``epochs`` full epochs. The
    cosine schedule then spans ``max_steps``."""
    seed: int = 0
    """Seeds LoRA init, data order and dropout: the same seed gives the same adapter (CPU)."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: str = vocab.AUTO
    """Compute dtype of the frozen base weights, chosen as extraction chooses it: ``auto`` (bf16 where
    the device has native bf16 matmuls, else fp32 when the fp32 weights fit the memory budget, else
    bf16 with a warning; :mod:`.dtype`) or one of ``vocab.COMPUTE_DTYPES``. The LoRA weights are kept
    in float32 (peft's default) and saved so. The run's identity holds the resolved name."""
    keep: str = vocab.KEEP_LAST
    """``last``: the adapter after the final step; ``best``: the epoch with the highest val accuracy
    (ties: lower val loss, then the earlier epoch)."""
    save_steps: int = 100
    """A checkpoint (adapter, optimizer, scheduler, RNG states) every this many optimizer steps."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more time."""
    num_workers: int = 0
    """DataLoader worker processes that decode images and run the processor; 0 = in the main process."""
    progress: bool = True
    """Show a progress bar with loss and samples/s (only on a terminal)."""
    split_file: Path | str | None = None
    """CSV ``id,split`` whose splits replace the dataset's own (``extract --split-file``; see
    ``extract/data/splits.py``); the splits are in the manifest hash a resume compares."""

    def __post_init__(self) -> None:
        check_training_fields(self, positive=("lora_r", "lora_alpha", "epochs", "batch_size", "grad_accum", "save_steps"))
        _choice("vision_tower", self.vision_tower, vocab.VISION_TOWER_MODES)
        _choice("connector", self.connector, vocab.CONNECTOR_MODES)
        if self.max_steps is not None and self.max_steps < 1:
            raise FinetuneError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise FinetuneError(f"max_grad_norm must be > 0 (or None for no clipping), got {self.max_grad_norm}")

    def identity(self) -> dict[str, Any]:
        """The fields that decide the adapter's bytes, JSON-ready (a resumed run must repeat them)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _RUNTIME_FIELDS:
                continue
            value = getattr(self, f.name)
            if f.name == "dataset" and not isinstance(value, (str, Path)):
                value = f"manifest:{value.name}:{value.sha256}"
            out[f.name] = list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, Path) else value)
        return out


def check_training_fields(cfg: Any, positive: tuple[str, ...]) -> None:
    """The checks every fine-tuning config shares (``FinetuneConfig``, ``VisionCEConfig``): ``out``
    as a Path, candidates matched form, keep/dtype choices (``auto`` or a compute dtype), the
    ``positive`` ints >= 1, workers, dropout and warmup in [0, 1), a positive learning rate, a
    non-empty prompt."""
    object.__setattr__(cfg, "out", Path(cfg.out))
    if cfg.candidates is not None:
        from layerprobe.extract.data.candidates import as_candidates

        object.__setattr__(cfg, "candidates", as_candidates(cfg.candidates, FinetuneError))
    _choice("keep", cfg.keep, vocab.KEEP_MODES)
    _choice("dtype", cfg.dtype, vocab.EXTRACT_DTYPES)
    for name in positive:
        if getattr(cfg, name) < 1:
            raise FinetuneError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.num_workers < 0:
        raise FinetuneError(f"num_workers must be at least 0, got {cfg.num_workers}")
    for name in ("lora_dropout", "warmup_ratio"):
        if not 0 <= getattr(cfg, name) < 1:
            raise FinetuneError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    if not cfg.learning_rate > 0 or cfg.weight_decay < 0:
        raise FinetuneError(f"learning_rate must be > 0 and weight_decay >= 0, got {cfg.learning_rate}, {cfg.weight_decay}")
    if cfg.prompt is not None and not cfg.prompt.strip():
        raise FinetuneError("prompt is empty; pass an instruction or leave it out to use the dataset's own")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise FinetuneError(f"{name} {value!r} is not one of {', '.join(allowed)}")
