"""The activation store: one Zarr v3 store per run (docs/architecture.md, "The store", is normative).

Write with ``StoreWriter.open(...).write(...)``; read with ``open_store(path).read_slab(site, layer)``;
check with ``verify(path)``. Importing this package loads numpy only: torch, zarr and polars are
imported inside the functions that need them.
"""

from layerprobe.store.layout import CODECS
from layerprobe.store.protocol import StoreLike
from layerprobe.store.reader import Store, open_store
from layerprobe.store.schema import SCHEMA_VERSION, RunMeta, SampleInfo, SiteSpec
from layerprobe.store.verify import NonFiniteCount, VerifyReport, verify
from layerprobe.store.samples_table import write_samples_parquet
from layerprobe.store.writer import StoreWriter

__all__ = [
    "CODECS",
    "SCHEMA_VERSION",
    "NonFiniteCount",
    "RunMeta",
    "SampleInfo",
    "SiteSpec",
    "Store",
    "StoreLike",
    "StoreWriter",
    "VerifyReport",
    "open_store",
    "verify",
    "write_samples_parquet",
]
