"""A store at a glance (``layerprobe info``): metadata, sites, sample counts, completeness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from layerprobe.store.commits import CommitProgress
from layerprobe.store.reader import SAMPLES_PARQUET, Store
from layerprobe.vocab import STORED_SPLITS


@dataclass(frozen=True)
class SplitCounts:
    """Samples of one split: per class, all of them and the valid ones (committed, not skipped)."""

    split: str
    n_per_class: tuple[int, ...]
    n_valid_per_class: tuple[int, ...]


@dataclass(frozen=True)
class StoreSummary(CommitProgress):
    """What ``layerprobe info`` prints."""

    path: str
    metadata: dict[str, Any]
    """The run metadata as stored (``attributes["layerprobe"]``)."""
    codec: str
    sites: tuple[tuple[str, int, int, tuple[str, ...]], ...]
    """(name, n_layers, hidden, layer names) per site."""
    class_names: tuple[str, ...]
    splits: tuple[SplitCounts, ...]
    n_samples: int
    n_committed: int
    n_skipped: int
    n_blocks: int
    n_blocks_committed: int
    has_samples_parquet: bool
    warnings: tuple[str, ...]
    skipped_samples: tuple[tuple[str, str], ...] = ()
    """(id, reason) of each committed skipped sample (``--skip-bad``); reason "" where none was recorded."""

    def to_text(self) -> str:
        m = self.metadata
        state = "complete" if self.complete else f"INCOMPLETE: {self.n_blocks - self.n_blocks_committed} of {self.n_blocks} blocks pending"
        lines = [
            f"store      {self.path}  (schema {m['schema_version']}, {state})",
            f"model      {m['model_id']}  revision={m['model_revision']}  type={m['model_type']}  hash={m['model_hash'][:12]}",
            f"adapter    {m['adapter'] or '-'}" + (f"  hash={m['adapter_hash'][:12]}" if m['adapter_hash'] else ""),
            f"dataset    {m['dataset_name']}  manifest={m['manifest_sha256'][:12]}",
            f"prompt     {m['prompt_template']!r}",
            f"answers    {', '.join(f'{c}={a!r}' for c, a in zip(m['class_names'], m['candidates']))}",
            f"storage    bfloat16 activations, codec={self.codec}, {m['chunk_samples']} samples per chunk; compute dtype {m['compute_dtype']}",
            f"created    {m['created_at']}  " + " ".join(f"{k}={v}" for k, v in sorted(m["library_versions"].items())),
            "sites",
        ]
        for name, n_layers, hidden, layer_names in self.sites:
            shown = ", ".join(layer_names) if len(layer_names) <= 6 else f"{', '.join(layer_names[:3])}, ..., {layer_names[-1]}"
            lines.append(f"  {name:<18} {n_layers:>3} layers x {hidden:>5} hidden   [{shown}]")
        lines.append(
            f"samples    {self.n_samples} total, {self.n_committed} committed, {self.n_skipped} skipped"
            f" ({self.n_blocks_committed}/{self.n_blocks} blocks); valid per split and class:"
        )
        width = max(8, *(len(c) for c in self.class_names))
        lines.append("  " + "split".ljust(7) + "".join(c.rjust(width + 1) for c in self.class_names) + "total".rjust(width + 1))
        for s in self.splits:
            cells = [f"{v}/{n}" for v, n in zip(s.n_valid_per_class, s.n_per_class)]
            total = f"{sum(s.n_valid_per_class)}/{sum(s.n_per_class)}"
            lines.append("  " + (s.split or "(none)").ljust(7) + "".join(c.rjust(width + 1) for c in cells) + total.rjust(width + 1))
        lines.append(f"files      samples.parquet {'present' if self.has_samples_parquet else 'absent (written when complete)'}")
        lines += skipped_lines(self.skipped_samples, "skipped   ")
        lines += [f"warning    {w}" for w in self.warnings]
        return "\n".join(lines)


SHOWN_SKIPS = 20
"""Skipped samples listed in text output (JSON lists them all)."""


def skipped_lines(skipped: tuple[tuple[str, str], ...], label: str) -> list[str]:
    """One line per skipped sample (the first ``SHOWN_SKIPS``), then how many more there are."""
    lines = [f"{label} {sample_id}: {reason or '(no reason recorded)'}" for sample_id, reason in skipped[:SHOWN_SKIPS]]
    if len(skipped) > SHOWN_SKIPS:
        lines.append(f"{label} ... and {len(skipped) - SHOWN_SKIPS} more (--json lists them all)")
    return lines


def skipped_samples(store: Store) -> tuple[tuple[str, str], ...]:
    """(id, reason) of each committed skipped sample, in sample order."""
    return tuple((store.ids[i], reason) for i, reason in sorted(store.skip_reasons.items()))


def summarize(store: Store) -> StoreSummary:
    """Collect the summary of an open store."""
    from layerprobe.store.schema import header_to_attrs

    n_classes = len(store.class_names)
    splits_arr = np.asarray(store.splits, dtype=object)
    counts = []
    for split in STORED_SPLITS:
        in_split = splits_arr == split
        if not in_split.any():
            continue
        n = np.bincount(store.labels[in_split], minlength=n_classes)
        v = np.bincount(store.labels[in_split & store.valid], minlength=n_classes)
        counts.append(SplitCounts(split, tuple(int(x) for x in n), tuple(int(x) for x in v)))
    return StoreSummary(
        path=str(store.path), metadata=header_to_attrs(store.header), codec=store.codec,
        sites=tuple((s.name, s.n_layers, s.hidden, s.layer_names) for s in store.header.sites),
        class_names=store.class_names, splits=tuple(counts), n_samples=store.n_samples,
        n_committed=int(store.committed.sum()), n_skipped=int((store.committed & store.skipped).sum()),
        n_blocks=store.plan.n_blocks, n_blocks_committed=len(store.commits),
        has_samples_parquet=(store.path / SAMPLES_PARQUET).exists(), warnings=store.commit_problems,
        skipped_samples=skipped_samples(store),
    )
