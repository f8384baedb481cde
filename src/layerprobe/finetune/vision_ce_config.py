"""What one vision-tower CE run does: :class:`VisionCEConfig`, the input of :func:`~layerprobe.finetune.vision_ce.run_vision_ce`.

The baseline of the paper's Table 3 ("vision tower SFT trained via cross-entropy"): the MLLM's own
vision tower, its last block's output mean-pooled per image exactly as ``vision/mean`` pools it,
and a head trained with cross-entropy on the class. The paper gives no recipe for it, so:
- the optimiser preset is the SFT arm's (AdamW lr 1e-4, cosine with 5% warmup, 20 epochs,
  batch 4), so Table 3 compares objectives, not optimisers;
- ``tower="lora"`` by default, with the SFT arm's LoRA (r 8, alpha 32, dropout 0.05) on every
  Linear of the tower: the same capacity the MLLM SFT gave the tower. ``full`` trains every tower
  weight (kept in float32 for AdamW, the forward in the load dtype under autocast);
- ``head="linear"`` (one Linear on the pooled features, what "a pooled head" says most plainly);
  ``mlp`` is Linear-ReLU-Linear with ``head_hidden`` units;
- the splits are the probe sweep's and fine-tuning's (:func:`~layerprobe.finetune.run.resolve_task`),
  so its test split is the one P(V,end) and P_final are scored on;
- ``keep="last"`` as the SFT arm; ``best`` keeps the epoch with the best val accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerprobe import vocab
from layerprobe.finetune.config import FinetuneConfig, FinetuneError, _choice, check_training_fields

if TYPE_CHECKING:
    from layerprobe.extract.data.manifest import Manifest

PAPER_OPTIMISER = {name: FinetuneConfig.__dataclass_fields__[name].default for name in ("learning_rate", "warmup_ratio", "weight_decay", "epochs", "batch_size")}
"""The SFT arm's optimiser defaults (the paper's): a run with all of them has preset ``paper``."""
CUSTOM_PRESET = "custom"
"""``preset`` of a run whose optimiser settings differ from :data:`PAPER_OPTIMISER`."""
_RUNTIME_FIELDS = frozenset({"out", "progress", "num_workers", "device"})


@dataclass(frozen=True)
class VisionCEConfig:
    """One vision-tower + pooled-head cross-entropy run, scored into one results-table row."""

    model: str
    """Hugging Face id or local checkpoint folder (what ``extract --model`` takes)."""
    dataset: Manifest | str | Path
    """What ``extract --dataset`` takes (folder tree, ``path,label[,split]`` table, ``recipe:folder``)."""
    out: Path | str
    """Results parquet to write (one row, ``kind = vision_ce``); it must not exist."""
    prompt: str | None = None
    """Instruction the images are encoded with (the tower never sees it; the processor needs a
    prompt that places the image). None = the dataset's own, as ``extract``."""
    candidates: tuple[str, ...] | dict[str, str] | None = None
    """Only used to make the default instruction, as ``extract`` does; the head predicts classes."""
    revision: str | None = None
    """Hub revision of ``model``; None = the default branch."""
    trust_remote_code: bool = False
    """Run the checkpoint's own Python code (custom families; needs ``site_spec`` too)."""
    site_spec: Any = None
    """Site spec for a model without a built-in adapter (where the vision blocks are)."""
    tower: str = vocab.LORA
    """``lora`` (LoRA in every Linear of the tower) or ``full`` (every tower weight trained)."""
    head: str = vocab.LINEAR
    """``linear`` or ``mlp`` (Linear-ReLU-Linear) on the pooled last vision block."""
    head_hidden: int = 256
    """Hidden units of the ``mlp`` head."""
    lora_r: int = 8
    """LoRA rank in the tower (``tower="lora"``)."""
    lora_alpha: int = 32
    """LoRA alpha (scale alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch's input."""
    learning_rate: float = 1e-4
    """AdamW learning rate after warmup (cosine decay to 0), for the tower and the head alike."""
    warmup_ratio: float = 0.05
    """Share of the optimizer steps warming up linearly from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    epochs: int = 20
    """Passes over the train split."""
    batch_size: int = 4
    """Images per optimizer step."""
    seed: int = 0
    """Seeds the head and LoRA init, data order and dropout."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    dtype: str = vocab.AUTO
    """Dtype the model is loaded and run in, chosen as extraction chooses it (``auto`` or one of
    ``vocab.COMPUTE_DTYPES``; :mod:`.dtype`); trained weights are float32. The row's ``params`` and
    ``matmul_dtype`` hold the resolved name."""
    keep: str = vocab.KEEP_LAST
    """``last``: the weights after the final epoch; ``best``: the epoch with the best val accuracy
    (ties: lower val loss, then the earlier epoch). The row's ``best_epoch`` says which."""
    num_workers: int = 0
    """DataLoader worker processes decoding images; 0 = in the main process."""
    progress: bool = True
    """Show a progress bar (only on a terminal)."""
    split_file: Path | str | None = None
    """CSV ``id,split`` whose splits replace the dataset's own, as ``FinetuneConfig.split_file``."""

    def __post_init__(self) -> None:
        check_training_fields(self, positive=("head_hidden", "lora_r", "lora_alpha", "epochs", "batch_size"))
        _choice("tower", self.tower, vocab.VISION_CE_TOWER_MODES)
        _choice("head", self.head, vocab.VISION_CE_HEADS)
        if self.out.suffix != ".parquet":
            raise FinetuneError(f"vision-CE output {self.out} must be a .parquet file (the results table), e.g. results/vision_ce.parquet")

    @property
    def preset(self) -> str:
        """``paper`` when the optimiser settings are the paper's, else ``custom``."""
        same = all(getattr(self, name) == value for name, value in PAPER_OPTIMISER.items())
        return vocab.PRESET_PAPER if same else CUSTOM_PRESET

    def params(self) -> dict[str, Any]:
        """The settings that decide the result (the row's ``params``), JSON-ready."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in _RUNTIME_FIELDS or f.name in ("model", "dataset"):
                continue
            value = getattr(self, f.name)
            if f.name in ("lora_r", "lora_alpha", "lora_dropout") and self.tower != vocab.LORA:
                continue
            if f.name == "head_hidden" and self.head != vocab.MLP:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else (str(value) if isinstance(value, Path) else value)
        return out
