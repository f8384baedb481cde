"""The learning-rate schedule: linear warmup, then cosine decay to zero.

Same function as transformers' ``get_cosine_schedule_with_warmup`` with ``warmup_ratio`` (the
paper's wording): warmup steps = ceil(ratio x total steps); the factor applies to the step about to
be taken, counting completed steps from 0, so the very first step has factor 0 (as there).
"""

from __future__ import annotations

import math


def warmup_steps(total_steps: int, warmup_frac: float) -> int:
    """Number of warmup steps for a run of ``total_steps``."""
    return math.ceil(total_steps * warmup_frac)


def lr_factor(step: int, total_steps: int, n_warmup: int) -> float:
    """Multiplier of the peak learning rate for the step taken after ``step`` completed steps."""
    if step < n_warmup:
        return step / max(1, n_warmup)
    progress = (step - n_warmup) / max(1, total_steps - n_warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
