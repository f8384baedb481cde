"""``StoreLike``: exactly what a probe sweep reads from a store, and nothing more.

``open_store`` returns a :class:`~layerprobe.store.reader.Store`, which satisfies it; the in-memory
store of ``layerprobe.testing.stores`` satisfies it too, so tests and benchmarks can sweep
activations that never touched a disk. The probe engine (sweep, grid, features, splits) names this
protocol in its signatures and reads nothing else, so an attribute missing from a store-like object
is a type error, not a silent ``None``. ``tests/test_store_protocol.py`` checks both stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from layerprobe.store.schema import RunMeta, SiteSpec


@runtime_checkable
class StoreLike(Protocol):
    """A store as the probe sweep sees it (all of it read-only)."""

    @property
    def meta(self) -> RunMeta:
        """What the run was: the run id and the table's model/adapter/dataset columns come from it."""

    @property
    def sites(self) -> Mapping[str, SiteSpec]:
        """Site name -> its layer names and hidden width, in storage order."""

    @property
    def n_samples(self) -> int:
        """Rows of every per-sample column and slab."""

    @property
    def ids(self) -> Sequence[str]:
        """Sample ids; the same id in two stores of one dataset must carry the same class."""

    @property
    def labels(self) -> np.ndarray:
        """int64 ``(n_samples,)``, index into ``class_names``."""

    @property
    def splits(self) -> Sequence[str]:
        """Each sample's split name (``vocab.STORED_SPLITS``; ``""`` lets the sweep split)."""

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names, in label order."""

    @property
    def valid(self) -> np.ndarray:
        """bool ``(n_samples,)``: rows that hold activations (committed and not skipped)."""

    def read_slabs(self, site: str, layers: Sequence[int]) -> torch.Tensor:
        """float32 ``[len(layers), n_samples, hidden]`` on the CPU, layers in the order given (sorted)."""

    def answer_logits(self) -> torch.Tensor:
        """float32 ``[n_samples, n_candidates]``: the model's logits over the candidate answers."""

    def answer_text(self) -> tuple[str, ...]:
        """The generated answer of each sample; read only when ``meta.answer_tokens > 0``."""
