"""Probe recipes, presets and the sweep configuration (all frozen, all checked on construction).

Design choices
- A *preset* is a named :class:`ProbeSpec`: the MLP probe's architecture and training recipe. The
  linear probe has its own :class:`LinearSpec`; presets do not change it.
- ``paper`` is the study's protocol (sec. 3.2 of the paper): 2-layer MLP, ReLU, dropout 0.1, AdamW
  lr 1e-4, cosine schedule with 5% warmup, 20 epochs, batch size 4, the final weights. The paper
  leaves two values open: the hidden width (we use 256, see :attr:`ProbeSpec.hidden`) and AdamW's
  weight decay (torch's default 0.01).
- ``fast`` is the same network, epochs, schedule and final weights, trained 8 optimizer steps an
  epoch on every training set: batch ``ceil(n_train / 8)`` (never below the paper's 4) instead of 4,
  the learning rate scaled from the paper's by the square root of the batch ratio, written
  ``1e-3 at batch 256`` (sqrt(256 / 4) = 8: 1e-4 -> 8e-4, rounded to 1e-3) and scaled from there
  (``min_steps`` and ``max_steps``, see :meth:`ProbeSpec.for_rows`). 160 steps a probe (fewer
  below 32 rows, where the batch is 4) instead of the paper's 5 per training row.
  - At least 8 (``min_steps``): with one or two full-batch steps per epoch it trained far less than
    the paper preset and scored systematically differently (-2.4 and +2.1 points on 180 and 360
    training rows); 4 and 6 steps moved the suite's mean |fast - paper| from 0.98 to 1.55 and 1.14
    points (docs/LOG.md, "ninth session").
  - At most 8 (``max_steps``, since the ninth session; before, the batch stayed 256 above 2,048
    rows): at Chest-Xray's 5,216 training rows 160 steps of batch 652 instead of 420 of batch 256
    cut the projected probe budget by 15% (``benchmarks/probe_throughput.py``, thousands section),
    and |fast - paper| there read 0.34 and 0.29 points against 0.37 and 0.53 with batch 256
    (2 and 3 classes, 1,024 and 4,096 features, 4 seeds). Below 2,048 rows nothing changed.
  Measured over ``benchmarks/probe_throughput.py``'s accuracy suite (synthetic shapes of 2-10
  classes, 180-5,216 training rows and 64-4,096 features, plus a tiny real extraction; 4 seeds, same
  seed compared): mean |fast - paper| test accuracy 1.06-1.08 points with ``min_steps=8`` when it
  was adopted (per shape 0.74-1.69; the mean signed difference per shape -0.44 to +0.81), against
  1.68-2.19 points without it; 0.97-0.99 points over those four shapes in the full benchmark runs
  since (per shape 0.81-1.25, signed -0.10 to +0.50), and 0.85 over five with the Chest-Xray-size
  shape added in the ninth session (0.34 there); the paper preset's own seed-to-seed spread is
  0.4-4.7 points per shape (docs/LOG.md, "probe" and "ninth session").
  A narrower hidden layer (128) would halve the cost but read 2.1-4.6 points on three of the shapes.
  Early stopping on the validation loss (``patience``) was tried for it and lost 1-3.5 points:
  the lowest-validation-loss epoch is underfit.
- The sweep config holds runtime settings (device, memory, progress) next to the grid; only the
  grid and the recipes end up in the results table (column ``params``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from layerprobe import vocab
from layerprobe.devices import parse_device
from layerprobe.errors import LayerprobeError, ProbeError
from layerprobe.layers import LayerSelection, LayerSpec, parse_layers

if TYPE_CHECKING:
    import torch


MIN_BATCH = 4
"""The smallest batch :meth:`ProbeSpec.for_rows` shrinks to: the paper's."""


@dataclass(frozen=True)
class ProbeSpec:
    """How one MLP probe (Linear -> ReLU -> Dropout -> Linear) is built and trained."""

    name: str
    """Preset name written to the results table (column ``preset``)."""
    hidden: int = 256
    """Width of the hidden layer. The paper does not state it. 256 is far above the number of
    classes (2-10), so the head is not a bottleneck; on synthetic 2,000-sample sets the mean probe
    accuracy moved by less than 1 point between widths 128 and 1024 while the cost grows linearly
    with the width (docs/LOG.md, "probe")."""
    dropout: float = 0.1
    """Dropout probability after the ReLU (the paper's 0.1)."""
    lr: float = 1e-4
    """Peak AdamW learning rate (the paper's 1e-4)."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay on every parameter; the paper does not state it, 0.01 is torch's default."""
    beta1: float = 0.9
    """AdamW first-moment decay (torch default)."""
    beta2: float = 0.999
    """AdamW second-moment decay (torch default)."""
    eps: float = 1e-8
    """AdamW denominator epsilon (torch default)."""
    epochs: int = 20
    """Passes over the training split (the paper's 20); the schedule spans all of them."""
    batch_size: int = 4
    """Samples per step (the paper's 4); the last batch of an epoch may be smaller."""
    warmup_frac: float = 0.05
    """Fraction of all steps spent in linear warmup (ceil), then cosine decay to 0 (as transformers'
    ``get_cosine_schedule_with_warmup`` with ``warmup_ratio``)."""
    patience: int = 0
    """Stop a probe after this many epochs without a lower validation loss; 0 = train every epoch."""
    restore_best: bool = False
    """Keep a snapshot of each probe's lowest-validation-loss epoch and report that one (False:
    report the final weights, as the paper does)."""
    min_steps: int = 0
    """Fewest optimizer steps per epoch (0 = no floor). With fewer than ``batch_size * min_steps``
    training rows the batch shrinks to ``ceil(n_train / min_steps)`` (never below 4, the paper's
    batch) and the lr follows it by the square-root rule that derived the fast preset from the
    paper's, ``lr * sqrt(batch / batch_size)``; see :meth:`for_rows`."""
    max_steps: int = 0
    """Most optimizer steps per epoch (0 = no cap). With more than ``batch_size * max_steps``
    training rows the batch grows to ``ceil(n_train / max_steps)``, the lr by the same rule;
    ``batch_size`` and ``lr`` stay the nominal pair the rule scales from (what ``--lrs`` sets)."""

    def __post_init__(self) -> None:
        checks = [
            (bool(self.name) and self.name.replace("-", "").replace("_", "").isalnum(), "name must be a short word"),
            (self.hidden >= 1, "hidden must be >= 1"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.lr > 0, "lr must be > 0"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "betas must be in [0, 1)"),
            (self.eps > 0, "eps must be > 0"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (0.0 <= self.warmup_frac < 1.0, "warmup_frac must be in [0, 1)"),
            (self.patience >= 0, "patience must be >= 0"),
            (self.patience == 0 or self.restore_best, "patience needs restore_best=True (a stopped probe reports its best epoch)"),
            (self.min_steps >= 0, "min_steps must be >= 0"),
            (self.max_steps == 0 or self.max_steps >= max(1, self.min_steps), "max_steps must be 0 (no cap) or >= min_steps and >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ProbeError(f"probe preset {self.name!r}: {message}")

    def for_rows(self, n_train: int) -> ProbeSpec:
        """The recipe as it trains on ``n_train`` rows: batch and lr adjusted by ``min_steps`` and
        ``max_steps`` (the same spec when nothing changes; applying it twice changes nothing more)."""
        if self.min_steps and n_train < self.batch_size * self.min_steps:
            batch = min(self.batch_size, max(MIN_BATCH, math.ceil(n_train / self.min_steps)))
        elif self.max_steps and n_train > self.batch_size * self.max_steps:
            batch = math.ceil(n_train / self.max_steps)
        else:
            return self
        if batch == self.batch_size:
            return self
        return replace(self, batch_size=batch, lr=self.lr * math.sqrt(batch / self.batch_size))

    @property
    def needs_validation(self) -> bool:
        """True when training looks at the validation split (early stopping or best snapshot)."""
        return self.patience > 0 or self.restore_best

    def structure(self) -> tuple[int, int, int, float, int, bool]:
        """What probes trained together must share (everything except lr, weight decay and dropout)."""
        return (self.hidden, self.epochs, self.batch_size, self.warmup_frac, self.patience, self.restore_best)

    def params(self) -> dict[str, object]:
        """Hyperparameters for the results table's ``params`` column."""
        out = asdict(self)
        out.pop("name")
        return out


@dataclass(frozen=True)
class LinearSpec:
    """Multinomial logistic regression (L2, full-batch L-BFGS), C chosen on the validation split."""

    cs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    """Inverse regularisation strengths tried, in scikit-learn's convention (loss summed over
    samples times C, plus half the squared weight norm; the intercept is not penalised)."""
    max_iter: int = 300
    """L-BFGS iterations at most per problem."""
    tol: float = 1e-4
    """Stop when the largest gradient entry of the mean-loss objective is below this
    (scikit-learn's ``tol`` for lbfgs)."""
    ftol: float = 1e-6
    """Also stop when an iteration lowers the objective by less than this fraction of it (scipy's
    L-BFGS-B criterion; larger than scipy's 2.2e-9 because the fits run in fp32)."""
    history: int = 10
    """L-BFGS memory (pairs kept)."""
    sketch_rank: int = 128
    """Rank of the Nyström preconditioner (sketch columns; capped at the feature width). Higher
    ranks cut iterations on slowly decaying spectra at the cost of a wider sketch."""

    def __post_init__(self) -> None:
        if not self.cs or any(c <= 0 for c in self.cs):
            raise ProbeError(f"linear probe: every C must be > 0, got {self.cs}")
        if self.max_iter < 1 or self.tol <= 0 or self.ftol < 0 or self.history < 1 or self.sketch_rank < 1:
            raise ProbeError("linear probe: max_iter, history and sketch_rank must be >= 1, tol > 0 and ftol >= 0")

    def params(self) -> dict[str, object]:
        """Hyperparameters for the results table's ``params`` column."""
        return {"cs": list(self.cs), "max_iter": self.max_iter, "tol": self.tol, "ftol": self.ftol}


PRESETS: dict[str, ProbeSpec] = {
    vocab.PRESET_PAPER: ProbeSpec(name=vocab.PRESET_PAPER),
    vocab.PRESET_FAST: ProbeSpec(name=vocab.PRESET_FAST, lr=1e-3, batch_size=256, min_steps=8, max_steps=8),
}
"""The named recipes, keyed and ordered as ``vocab.PRESET_NAMES`` (a test holds them equal)."""


def get_preset(name: str) -> ProbeSpec:
    """The preset called ``name``, or a ProbeError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ProbeError(f"unknown probe preset {name!r}; use one of: {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class SweepConfig:
    """One probe sweep: which stores, sites, layers and probes, and where the table goes."""

    stores: tuple[Path, ...]
    """Store directories (Zarr v3 groups written by ``layerprobe extract``)."""
    out: Path | None = None
    """Parquet file for the results table; None = only return the DataFrame."""
    sites: tuple[str, ...] | None = None
    """Sites to probe; None = every site each store has."""
    layers: LayerSpec | LayerSelection = None
    """Layers to probe in every site (``select_layers`` syntax, e.g. ``-1`` or ``0:8``); None = all.
    Parsed on construction: the field then holds the :class:`~layerprobe.layers.LayerSelection`."""
    kinds: tuple[str, ...] = vocab.PROBE_KINDS
    """Probe kinds: ``mlp`` and/or ``linear``."""
    seeds: tuple[int, ...] = (0,)
    """One MLP probe per seed (the seed fixes its init, batch order and dropout masks). Linear
    probes are deterministic: one per (site, layer), with a null seed."""
    preset: str = vocab.PRESET_PAPER
    """MLP recipe: a name in PRESETS."""
    hidden: tuple[int, ...] | None = None
    """MLP hidden widths to sweep; None = the preset's."""
    lrs: tuple[float, ...] | None = None
    """MLP learning rates to sweep; None = the preset's. Probes that differ only in lr train together."""
    linear: LinearSpec = field(default_factory=LinearSpec)
    """Linear-probe recipe."""
    class_weight: str = vocab.CLASS_WEIGHT_NONE
    """``balanced`` weights each class by n / (n_classes * count) on the training split (as
    scikit-learn's ``class_weight='balanced'``); ``none`` weights samples equally."""
    kfold: int | None = None
    """K-fold cross-validation: fold k is the test set, fold k+1 the validation set; metrics are the
    mean over folds. None = one split (the store's split column, else stratified)."""
    split_seed: int = vocab.SPLIT_SEED
    """Seed of the stratified split (used when the store has no split column, or for k-fold)."""
    split_fractions: tuple[float, float, float] = vocab.SPLIT_FRACTIONS
    """Train/val/test fractions of a stratified split made here."""
    device: str | torch.device | None = "cpu"
    """Torch device for training (``auto`` = CUDA when present, ``cpu``, ``cuda``, ``cuda:1``).
    Parsed on construction (so an unknown or absent device fails here): the field then holds the
    ``torch.device``. None only in a template whose sweeps each name their own device where they
    run (a study's grid): nothing trains on it, and it is built without importing torch."""
    dtype: str = vocab.AUTO
    """Matmul dtype of MLP probes: ``auto`` = bfloat16 (fp32 master weights) where the device has
    native bf16 matmuls and the batch is large enough to be compute-bound, else float32."""
    max_memory: int = 4 << 30
    """Bytes the sweep may hold at once (slabs + probe states); sets how many layers are read and
    how many probes train together."""
    group_probes: int | None = None
    """Most MLP probes trained together; None = chosen from the memory budget (and, for small
    memory-bound batches, to keep the group's optimizer state in the last-level cache)."""
    progress: bool = True
    """Show a progress bar (only when stderr is a terminal)."""
    overwrite: bool = False
    """Allow replacing an ``out`` that holds the results table of another sweep, and discarding an
    unfinished sweep with other settings beside it (``<out>.partial/``). A rerun of the same sweep
    needs no ``overwrite``: it resumes (or, when finished, returns the table as it is)."""
    threads: int | None = None
    """torch threads during the sweep; None = sized from the work per step and the cores free now
    (``layerprobe.probe.threads``: small problems on a busy machine get 1). torch's own count is
    restored when the sweep ends."""

    def __post_init__(self) -> None:
        if not self.stores:
            raise ProbeError("no store given; pass one or more store directories")
        object.__setattr__(self, "stores", tuple(Path(s) for s in self.stores))
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        bad_kinds = [k for k in self.kinds if k not in vocab.PROBE_KINDS]
        if bad_kinds or not self.kinds:
            raise ProbeError(f"probe kinds {list(self.kinds)} not understood; use mlp and/or linear")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ProbeError(f"seeds {list(self.seeds)} must be distinct non-negative integers")
        get_preset(self.preset)
        if self.hidden is not None and (not self.hidden or any(h < 1 for h in self.hidden)):
            raise ProbeError(f"hidden widths {self.hidden} must be >= 1")
        if self.lrs is not None and (not self.lrs or any(lr <= 0 for lr in self.lrs)):
            raise ProbeError(f"learning rates {self.lrs} must be > 0")
        if self.class_weight not in vocab.CLASS_WEIGHTS:
            raise ProbeError(f"class weight {self.class_weight!r} not understood; use none or balanced")
        if self.kfold is not None and self.kfold < 3:
            raise ProbeError(f"kfold={self.kfold}: k-fold needs k >= 3 (one fold for test, one for validation, the rest to train)")
        fractions = self.split_fractions
        if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise ProbeError(f"split fractions {fractions} must be three positive numbers summing to 1")
        if self.dtype not in vocab.PROBE_DTYPES:
            raise ProbeError(f"dtype {self.dtype!r} not understood; use one of {', '.join(vocab.PROBE_DTYPES)}")
        if self.max_memory < 64 << 20:
            raise ProbeError(f"max_memory {self.max_memory} bytes is too small; give at least 64MB")
        if self.group_probes is not None and self.group_probes < 1:
            raise ProbeError("group_probes must be >= 1")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise ProbeError(f"threads={self.threads!r}: give a whole number >= 1, or None to size it from the problem")
        self._parse_values()

    def _parse_values(self) -> None:
        """Turn the layer selection and the device into values, once; everything below takes them."""
        try:
            object.__setattr__(self, "layers", parse_layers(self.layers))
        except LayerprobeError as err:
            raise ProbeError(str(err)) from None
        if self.device is None:
            return
        import torch

        if not isinstance(self.device, torch.device):
            object.__setattr__(self, "device", parse_device(str(self.device), ProbeError))

    def mlp_specs(self, n_train: int | None = None) -> tuple[ProbeSpec, ...]:
        """The MLP recipes of the grid: the preset crossed with the hidden widths and lrs swept
        (lrs are the preset's nominal ones); with ``n_train``, as they train on that many rows
        (:meth:`ProbeSpec.for_rows`)."""
        base = get_preset(self.preset)
        hiddens = self.hidden or (base.hidden,)
        lrs = self.lrs or (base.lr,)
        specs = tuple(replace(base, hidden=h, lr=lr) for h in hiddens for lr in lrs)
        return specs if n_train is None else tuple(s.for_rows(n_train) for s in specs)


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_memory(text: str | int) -> int:
    """Bytes from ``4GB``, ``512MiB``, ``1.5G`` or a plain integer (powers of 1024 throughout)."""
    if isinstance(text, int):
        return text
    match = _MEMORY.match(str(text))
    if not match:
        raise ProbeError(f"memory size {text!r} not understood; write e.g. 4GB, 512MB or 1.5G")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


def params_json(params: dict[str, object]) -> str:
    """Canonical JSON (sorted keys) for the ``params`` column, so equal settings compare equal."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))
