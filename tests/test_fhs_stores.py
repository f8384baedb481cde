"""fhs reads a run's store through open_store where it is reachable, and says less (never fails) where not."""

from __future__ import annotations

from layerprobe import vocab
from layerprobe.fhs.stores import StoreDetails, store_details
from layerprobe.testing.stores import synthetic_run, write_synthetic_store


def test_store_details_where_reachable_and_none_elsewhere(tmp_path) -> None:
    run = synthetic_run(6, {vocab.VISION: (1, 4)})
    write_synthetic_store(tmp_path / "runs" / "a.zarr", run)
    details = store_details("runs/a.zarr", relative_to=tmp_path)  # relative to the results file's folder
    assert isinstance(details, StoreDetails) and details.model_hash == run.meta.model_hash
    assert details.class_names == run.meta.class_names and details.model_type == "synthetic" and details.created_at
    (tmp_path / "junk.zarr").mkdir()
    (tmp_path / "junk.zarr" / "zarr.json").write_text("{not json")
    assert store_details(None) is None and store_details("nowhere.zarr", relative_to=tmp_path) is None
    assert store_details(str(tmp_path / "junk.zarr")) is None
