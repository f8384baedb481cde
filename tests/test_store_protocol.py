"""``StoreLike`` names what a probe sweep reads; a store on disk and the in-memory test store both have it."""

from __future__ import annotations

import inspect
from pathlib import Path

import polars as pl
import pytest

from layerprobe import vocab
from layerprobe.probe.config import SweepConfig
from layerprobe.probe.sweep import sweep_stores
from layerprobe.store import Store, open_store
from layerprobe.store.protocol import StoreLike
from layerprobe.testing.stores import InMemoryStore, synthetic_run, synthetic_store, write_synthetic_store

MEMBERS = ("answer_logits", "answer_text", "class_names", "ids", "labels", "meta", "n_samples", "read_slabs", "sites", "splits", "valid")
"""What the sweep, grid, features and splits read from a store, and nothing else."""


@pytest.fixture(scope="module")
def memory() -> InMemoryStore:
    return synthetic_store(60, 8, {vocab.VISION: 2, vocab.LLM_IMAGE: 3})


@pytest.fixture(scope="module")
def written(memory: InMemoryStore, tmp_path_factory: pytest.TempPathFactory) -> Store:
    return open_store(write_synthetic_store(tmp_path_factory.mktemp("protocol") / "run.zarr", memory.run, chunk_samples=16))


def test_the_protocol_names_exactly_what_the_sweep_reads() -> None:
    assert tuple(sorted(n for n in dir(StoreLike) if not n.startswith("_"))) == MEMBERS


@pytest.mark.parametrize("which", ["memory", "written"])
def test_both_stores_satisfy_store_like(which: str, request: pytest.FixtureRequest) -> None:
    store = request.getfixturevalue(which)
    assert isinstance(store, StoreLike)
    for name in ("read_slabs", "answer_logits"):
        wanted = inspect.signature(getattr(StoreLike, name))
        inspect.signature(getattr(store, name)).bind(*[p.name for p in wanted.parameters.values() if p.name != "self"])
    x_lnd = store.read_slabs(vocab.LLM_IMAGE, [0, 2])
    assert x_lnd.shape == (2, store.n_samples, store.sites[vocab.LLM_IMAGE].hidden) and str(x_lnd.dtype) == "torch.float32"
    assert store.sites[vocab.LLM_IMAGE].layer_names == vocab.llm_layer_names(2)


def test_an_object_lacking_a_member_is_not_store_like(memory: InMemoryStore) -> None:
    class NoLogits:
        meta, sites, n_samples, ids, labels = memory.meta, memory.sites, memory.n_samples, memory.ids, memory.labels
        splits, class_names, valid = memory.splits, memory.class_names, memory.valid

        def read_slabs(self, site: str, layers: list[int]):  # noqa: ANN201
            return memory.read_slabs(site, layers)

    assert not isinstance(NoLogits(), StoreLike)


def test_a_sweep_reads_the_same_from_memory_and_from_disk(memory: InMemoryStore, written: Store) -> None:
    cfg = SweepConfig(stores=(Path("same-run"),), kinds=(vocab.LINEAR,), layers="-1", progress=False)
    from_memory, from_disk = (sweep_stores(cfg, [store]) for store in (memory, written))
    drop = ("train_seconds",)
    assert from_memory.height == 3 and from_memory.drop(drop).equals(from_disk.drop(drop))
    assert from_memory.filter(pl.col("kind") == vocab.MODEL_KIND).get_column("layer_name").to_list() == [vocab.ANSWER_LAYER_NAME]


def test_synthetic_layer_names_are_the_extractors() -> None:
    run = synthetic_run(5)
    names = {s.name: s.layer_names for s in run.sites}
    assert names == {
        vocab.VISION: vocab.vision_layer_names(4),
        vocab.CONNECTOR: vocab.connector_layer_names(has_inner=True),
        vocab.LLM_IMAGE: vocab.llm_layer_names(4),
        vocab.LLM_FINAL: vocab.llm_layer_names(4),
    }
    with pytest.raises(ValueError, match="writes no 3-layer site 'connector/mean'"):
        synthetic_run(5, {vocab.CONNECTOR: (3, 8)})
