"""Fine-tuning: LoRA SFT of an MLLM on a labelled image set, the study's first step (paper sec. 3.2).

``run_finetune(FinetuneConfig(model=..., dataset=..., out=...))`` trains a peft LoRA adapter with
the loss on the answer tokens only, the prompt exactly as ``extract`` renders it, and writes an
adapter folder that ``extract --adapter`` loads. Modules:

- :mod:`.config`: :class:`FinetuneConfig` (the paper's preset as defaults), :class:`FinetuneError`;
- :mod:`.targets`: LoRA targets by full module path (vision tower frozen or adapted);
- :mod:`.examples`: answer-only labels on extraction's prompt, the collator;
- :mod:`.dtype`: ``--dtype auto`` resolved as extraction resolves it;
- :mod:`.metrics`: forced-choice val accuracy, as extraction scores the answer;
- :mod:`.callbacks`, :mod:`.train`: the transformers ``Trainer`` and its callbacks;
- :mod:`.output`: folders, resume, metadata, step table, curve; :mod:`.run`: :func:`run_finetune`.

Names are re-exported lazily, so importing this package imports neither torch nor transformers.
"""

from __future__ import annotations

from layerprobe.discovery import lazy_exports

_EXPORTS = {
    "FinetuneConfig": "config",
    "FinetuneError": "config",
    "run_finetune": "run",
    "resolve_task": "run",
    "plan_targets": "targets",
    "model_parts": "targets",
    "lora_modules": "targets",
    "answer_format": "examples",
    "Collator": "examples",
    "METADATA_FILE": "output",
}
"""Public name -> module under ``layerprobe.finetune`` that defines it."""

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
