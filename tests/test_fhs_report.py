"""`build_report` over two runs of one model (base and fine-tuned): a folder that stands on its own."""

import dataclasses
import re

import polars as pl
import pytest
from PIL import Image
from test_fhs_profile import make_results, synthetic_run

from layerprobe.errors import LayerprobeError
from layerprobe.fhs import FHSConfig, build_report
from layerprobe.testing import stores


@pytest.fixture(scope="module")
def results_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    run = stores.synthetic_run(10, {"vision/mean": (2, 8)})
    meta = dataclasses.replace(run.meta, model_id="org/tiny-gemma", model_hash="ab" * 32, model_type="gemma3", prompt_template="Is this {label}?",
                               candidates=("benign", "malignant"), class_names=("benign", "malignant"),
                               manifest_sha256=run.samples.digest(("benign", "malignant")))  # fmt: skip
    stores.write_synthetic_store(root / "runs" / "base.zarr", dataclasses.replace(run, meta=meta))  # read back through open_store
    base = synthetic_run("base", "org/tiny-gemma", "busi", final=0.78)
    tuned = synthetic_run("tuned", "org/tiny-gemma", "busi", adapter="adapters/lora-busi", shift=0.04, final=0.86, rng=1)
    paths = []
    for run, store_path in ((base, "runs/base.zarr"), (tuned, None)):
        path = root / f"{run['run_id']}.parquet"
        make_results([{**run, "store": store_path}]).write_parquet(path)
        paths.append(path)
    return paths


def test_report_over_two_runs(results_paths, tmp_path):
    out = tmp_path / "report"
    rep = build_report(results_paths, out)
    text = rep.markdown.read_text()
    # the profile matrix with the fine-tuned run beside its base, best/worst marked
    assert "| model | busi |" in text and "| tiny-gemma | " in text and "| tiny-gemma + lora-busi | **" in text
    # every referenced file is inside the folder
    refs = re.findall(r"\]\((.*?)\)", text)
    assert refs == ["figures/pipeline_busi.png", "figures/llm_sites_busi.png"]
    for ref in refs:
        with Image.open(out / ref) as img:
            img.load()
            assert img.width > 800
    # the pipeline figure overlays the two runs in one panel
    svg = (out / "figures" / "pipeline_busi.svg").read_text()
    assert "base model" in svg and "+ lora-busi" in svg
    # run metadata: from the store where reachable (relative to the results file), else the table
    assert "abababababab" in text and "gemma3" in text and "benign, malignant" in text and "Is this {label}?" in text
    assert "| tuned | org/tiny-gemma | adapters/lora-busi | busi | 40/10/20 | - | ? |" in text
    # probe and scoring settings
    assert "kind `mlp`, preset(s) `paper`" in text and '| lambda_ | `0.2` |' in text and '| llm_layers | `"1:"` |' in text
    # tables and curves written beside it
    assert pl.read_csv(rep.profile_csv).height == 2
    curves = pl.read_parquet(rep.curves)
    assert set(curves.get_column("run_id")) == {"base", "tuned"}
    html = rep.html.read_text()
    assert '<img src="figures/pipeline_busi.png"' in html and "<strong>" in html and "<table>" in html
    assert "**" not in html and "\\|" not in html


def test_report_folder_rules(results_paths, tmp_path):
    out = tmp_path / "rep"
    build_report(results_paths[:1], out, config=FHSConfig(metric="auc"), html_page=False)
    (out / "figures" / "stale.png").write_bytes(b"old")
    again = build_report(results_paths, out, html_page=False)  # a previous report may be replaced
    assert again.html is None and not (out / "figures" / "stale.png").exists()
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(LayerprobeError, match="not empty and holds no report.md"):
        build_report(results_paths, foreign)
    assert (foreign / "thesis.tex").read_text() == "keep me"
