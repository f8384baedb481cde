"""What a report says about each run's store, read through the store's own API when it is reachable.

Nothing ``fhs`` computes depends on it: scores come from the results table alone, so a report made
where the stores are not (another machine, a deleted scratch disk) has the same numbers and only
says less about each run.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from layerprobe.errors import LayerprobeError


class StoreDetails(NamedTuple):
    """The descriptive fields of one store a report shows."""

    model_hash: str
    """SHA-256 over the model's weight files."""
    model_type: str
    """The HF ``model_type`` (the family)."""
    created_at: str
    """When the store was created (ISO 8601, UTC)."""
    prompt_template: str
    """The instruction prompt as given."""
    class_names: tuple[str, ...]
    """Class names, in label order."""
    extra: dict = {}
    """``RunMeta.extra`` (e.g. ``finetune``: the fine-tuned arm, :mod:`layerprobe.fhs.arms`); read-only by convention."""


def store_details(store: str | None, *, relative_to: Path | None = None) -> StoreDetails | None:
    """The store at ``store`` (or, for a relative path, under ``relative_to``), or None if unreachable."""
    if not store:
        return None
    from layerprobe.store import open_store

    candidates = [Path(store)]
    if relative_to is not None and not Path(store).is_absolute():
        candidates.append(relative_to / store)
    for path in candidates:
        try:
            opened = open_store(path)
        except (LayerprobeError, OSError):  # not there, not a store, or damaged: say less, not fail
            continue
        meta = opened.meta
        return StoreDetails(meta.model_hash, meta.model_type, opened.created_at, meta.prompt_template, meta.class_names, dict(meta.extra))
    return None
