"""The vision-CE baseline's data and loop: batches of images through the tower, a head, cross-entropy.

- Images are encoded as extraction encodes them (:func:`~layerprobe.extract.model.prompt.encode_batch`
  with the rendered prompt), floating inputs cast to the model's dtype as extraction casts them.
- The tower's forward runs under ``torch.autocast`` in the load dtype when that is not float32, so
  float32 trained weights (``full``, the LoRA matrices) and bf16 frozen ones mix; the head and the
  loss run in float32 outside it.
- Data order: a ``torch.Generator`` seeded with ``seed + epoch`` shuffles the train split each
  epoch, so the order does not depend on how many random numbers the model drew.
- Evaluation (val each epoch, then val and test with the kept weights) runs in eval mode without
  gradients; metrics are :func:`~layerprobe.probe.metrics.classification_metrics` on the softmax.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import numpy as np
import torch

from layerprobe.extract.data.images import read_image
from layerprobe.extract.model.prompt import encode_batch, render_prompt
from layerprobe.finetune.config import FinetuneError


class Scores(NamedTuple):
    """Metrics of the head on one split (``vocab.METRICS`` plus the mean cross-entropy)."""

    accuracy: float
    f1: float
    precision: float
    recall: float
    auc: float
    loss: float


class Loop:
    """Batches, the autocast forward, one training epoch and an evaluation, for one run."""

    def __init__(self, cfg: Any, task: Any, loaded: Any, adapter: Any, features: Any, device: torch.device) -> None:
        self.cfg, self.task, self.loaded, self.features, self.device = cfg, task, loaded, features, device
        self.prompt = render_prompt(loaded.processor, task.instruction, plain_prompt=adapter.plain_prompt)
        self.labels = np.asarray(task.manifest.labels, dtype=np.int64)
        self.dtype = loaded.model.dtype
        self.autocast = self.dtype != torch.float32
        self._width: int | None = None

    def _batch(self, index: np.ndarray) -> dict[str, Any]:
        images = [read_image(self.task.manifest.paths[i]).image for i in index]
        batch = encode_batch(self.loaded.processor, images, self.prompt)
        out: dict[str, Any] = {}
        for key, value in batch.items():
            if torch.is_tensor(value):
                value = value.to(self.device, dtype=self.dtype if value.is_floating_point() else None)
            out[key] = value
        return out

    def _features(self, index: np.ndarray) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            return self.features(self._batch(index), len(index)).float()

    def width(self) -> int:
        """Width of the pooled features (one forward of the first train image, no gradients)."""
        if self._width is None:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                self._width = int(self._features(self.task.train[:1]).shape[1])
        return self._width

    def train_epoch(self, head: torch.nn.Module, optimizer: Any, schedule: Any, params: list[Any], epoch: int) -> None:
        self.loaded.model.train()
        head.train()
        order = torch.randperm(self.task.train.size, generator=torch.Generator().manual_seed(self.cfg.seed + epoch)).numpy()
        index = self.task.train[order]
        bar = _bar(self.cfg, index.size, f"vision-CE epoch {epoch}/{self.cfg.epochs}")
        for start in range(0, index.size, self.cfg.batch_size):
            chunk = index[start : start + self.cfg.batch_size]
            y = torch.from_numpy(self.labels[chunk]).to(self.device)
            loss = torch.nn.functional.cross_entropy(head(self._features(chunk)), y)
            if not bool(torch.isfinite(loss)):
                raise FinetuneError(f"vision-CE loss became {float(loss)} at epoch {epoch}; lower --lr or use --dtype float32")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if bar is not None:
                bar.update(len(chunk))
                bar.set_postfix(loss=f"{float(loss):.4f}")
        if bar is not None:
            bar.close()

    def evaluate(self, head: torch.nn.Module, index: np.ndarray) -> Scores:
        from layerprobe.probe.metrics import classification_metrics

        if index.size == 0:  # a dataset whose split column has no val samples
            return Scores(*([float("nan")] * len(Scores._fields)))
        self.loaded.model.eval()
        head.eval()
        logits = []
        with torch.no_grad():
            for start in range(0, index.size, self.cfg.batch_size):
                logits.append(head(self._features(index[start : start + self.cfg.batch_size])).float().cpu())
        logits_nc = torch.cat(logits)
        y_n = torch.from_numpy(self.labels[index])
        metrics = classification_metrics(logits_nc.softmax(dim=1).unsqueeze(0), y_n)
        loss = float(torch.nn.functional.cross_entropy(logits_nc, y_n))
        return Scores(*(float(m[0]) for m in metrics), loss=loss)


def _bar(cfg: Any, total: int, description: str) -> Any:
    if not (cfg.progress and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", desc=description, dynamic_ncols=True, leave=False)
