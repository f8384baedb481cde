"""The fast path writes standard Zarr v3: byte-identical to zarr-python, readable without layerprobe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.storage import LocalStore

from layerprobe.store import open_store
from layerprobe.store.layout import describe_zarr
from layerprobe.testing.stores import synthetic_batch, synthetic_run, write_synthetic_store

# zarr-python warns that `commits/` and `samples.parquet` are not Zarr nodes when it lists the root.
pytestmark = pytest.mark.filterwarnings("ignore:Object at .* is not recognized:UserWarning")

N, CS = 40, 16  # 3 blocks; the last chunk of every array is an edge chunk padded with the fill value


@pytest.fixture(scope="module")
def run():
    return synthetic_run(N)


@pytest.fixture(scope="module", params=["none", "zstd"])
def store_path(request, tmp_path_factory, run):
    return write_synthetic_store(tmp_path_factory.mktemp(request.param) / "run.zarr", run, batch_size=6,
                                 chunk_samples=CS, codec=request.param)


def _chunk_files(root):
    """Relative path -> bytes of every chunk file (everything but metadata, commits and the parquet copy)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "zarr.json" and "commits" not in p.parts and p.suffix != ".parquet"
    }


def test_chunks_are_byte_identical_to_zarr_python(store_path, tmp_path):
    """zarr-python, given the same metadata and data, writes exactly the files the fast path wrote."""
    ref = tmp_path / "ref.zarr"
    shutil.copytree(store_path, ref, ignore=shutil.ignore_patterns("c", "commits", "*.parquet"))  # metadata only
    assert _chunk_files(ref) == {}
    ours = zarr.open_group(LocalStore(store_path), mode="r")
    theirs = zarr.open_group(LocalStore(ref), mode="r+")
    paths = _all_arrays(ours)
    assert set(paths) == set(open_store(store_path).plan.arrays)
    with zarr.config.set({"array.write_empty_chunks": True}):
        for path in paths:
            theirs[path][...] = ours[path][...]
    mine, reference = _chunk_files(store_path), _chunk_files(ref)
    assert sorted(mine) == sorted(reference)
    for key in mine:
        assert mine[key] == reference[key], key


def _all_arrays(group, prefix=""):
    out = [f"{prefix}{name}" for name, _ in group.arrays()]
    for name, sub in group.groups():
        out += _all_arrays(sub, f"{prefix}{name}/")
    return out


def test_expected_metadata_matches_zarr_python(store_path):
    store = open_store(store_path)
    for a in store.plan.arrays.values():
        doc = json.loads((store_path / a.path / "zarr.json").read_bytes())
        assert describe_zarr(doc) == a.expected_zarr(), a.path
        assert doc["dimension_names"] == list(a.dims)


def test_plain_zarr_python_reads_without_layerprobe(store_path, tmp_path, run):
    """A fresh interpreter with only zarr and numpy reads every array; layerprobe is never imported."""
    script = f"""
import sys, numpy as np, zarr
g = zarr.open_group({str(store_path)!r}, mode="r")
a = g["sites/llm/final_token"]
assert a.attrs["layerprobe_dtype"] == "bfloat16" and a.metadata.dimension_names == ("layer", "sample", "hidden")
np.save({str(tmp_path / "acts.npy")!r}, a[...])
np.save({str(tmp_path / "logits.npy")!r}, g["answer_logits"][...])
np.save({str(tmp_path / "labels.npy")!r}, g["samples/label"][...])
print(list(g["samples/id"][:3]), g.attrs["layerprobe"]["class_names"])
assert not any(m.startswith("layerprobe") for m in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    expected = synthetic_batch(run, 0, N)
    np.testing.assert_array_equal(np.load(tmp_path / "acts.npy"), expected.acts["llm/final_token"])
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"), expected.answer_logits)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), run.samples.labels)
    assert "img/000000.png" in out.stdout and "class_0" in out.stdout


def test_xarray_open_zarr(store_path, run):
    expected = synthetic_batch(run, 0, N)
    ds = xr.open_zarr(store_path, group="sites/llm", consolidated=False)
    assert dict(ds.sizes) == {"layer": 5, "sample": N, "hidden": 48}
    bits = ds["final_token"].values
    np.testing.assert_array_equal(bits, expected.acts["llm/final_token"])
    as_float = bits.view(ml_dtypes.bfloat16).astype(np.float32)
    assert np.isfinite(as_float).all() and as_float.std() > 0
    samples = xr.open_zarr(store_path, group="samples", consolidated=False)
    assert list(samples["id"].values[:2]) == ["img/000000.png", "img/000001.png"]
    assert bytes(samples["sha256"].values[0]).hex() == expected.sha256[0]  # raw digest bytes
    root = xr.open_zarr(store_path, consolidated=False)
    np.testing.assert_array_equal(root["answer_logits"].values, expected.answer_logits)
