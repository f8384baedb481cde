"""Validation accuracy as extraction scores the model's answer: forced choice over first-token logits.

The logits at the position just before a sample's first answer token (the prompt's final token,
where extraction reads ``answer_logits``) are taken at the candidates' first tokens; the answer is
the argmax, and the true class is read back from the labels (their first trained token is the
class's candidate's first token). The causal mask keeps those logits independent of the answer
tokens that follow, so they are extraction's, up to batch make-up.

:func:`candidate_logits` runs inside the Trainer's evaluation loop (``preprocess_logits_for_metrics``),
so only ``(B, C)`` per batch is kept, never ``(B, T, vocab)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from layerprobe import vocab
from layerprobe.finetune.examples import IGNORE_INDEX


class ForcedChoice:
    """``preprocess_logits_for_metrics`` and ``compute_metrics`` for one set of candidate tokens."""

    def __init__(self, first_ids: Sequence[int]) -> None:
        self.first_ids = tuple(int(i) for i in first_ids)

    def candidate_logits(self, logits: Any, labels: Any) -> Any:
        """``(B, C)`` float32 logits at the last prompt position, at the candidates' first tokens."""
        import torch

        logits_btv = logits[0] if isinstance(logits, (tuple, list)) else logits
        first_b = (labels != IGNORE_INDEX).int().argmax(dim=1)
        rows_b = torch.arange(labels.shape[0], device=labels.device)
        columns = torch.tensor(self.first_ids, device=logits_btv.device)
        return logits_btv[rows_b, first_b - 1][:, columns].float()

    def classes(self, labels_bt: np.ndarray) -> np.ndarray:
        """Class index of each row, from its first trained label."""
        first_b = (labels_bt != IGNORE_INDEX).argmax(axis=1)
        tokens_b = labels_bt[np.arange(len(labels_bt)), first_b]
        lookup = {token: index for index, token in enumerate(self.first_ids)}
        return np.array([lookup[int(t)] for t in tokens_b], dtype=np.int64)

    def compute_metrics(self, prediction: Any) -> dict[str, float]:
        """``{"accuracy": ...}`` over the evaluated samples (the Trainer logs it as ``eval_accuracy``)."""
        logits_bc = np.asarray(prediction.predictions)
        y_b = self.classes(np.asarray(prediction.label_ids))
        return {vocab.ACCURACY: float((logits_bc.argmax(axis=1) == y_b).mean())}
