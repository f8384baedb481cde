"""Figures are written, decode, and show what a reader needs (labels, legend entries, both runs)."""

import subprocess
import sys

import polars as pl
import pytest
from PIL import Image
from test_fhs_profile import make_results, synthetic_run

from layerprobe.errors import LayerprobeError
from layerprobe.fhs import FHSConfig, layer_curves, plot_llm_sites, plot_pipeline


@pytest.fixture(scope="module")
def curves():
    runs = [
        synthetic_run("base", "org/tiny-gemma", "busi", final=0.78),
        synthetic_run("ft", "org/tiny-gemma", "busi", adapter="adapters/lora-busi", shift=0.04, final=0.86, rng=1),
        synthetic_run("other", "org/tiny-qwen", "covid/ct scans", n_v=8, n_c=1, n_l=9, seeds=1, final=0.66, rng=2),
    ]
    return layer_curves(make_results(runs))


def _check_png(path, min_kb=20):
    assert path.stat().st_size > min_kb * 1024
    with Image.open(path) as img:
        img.load()  # decodes every pixel
        assert img.format == "PNG" and img.width >= 800 and img.height >= 400
        assert len(img.getcolors(maxcolors=1 << 20) or range(1 << 20)) > 50  # a drawing, not a blank canvas


def test_pipeline_figure_per_dataset(curves, tmp_path):
    figs = plot_pipeline(curves, tmp_path)
    assert figs.dataset == ("busi", "covid/ct scans")
    (png, svg), (png2, svg2) = figs.paths
    assert png.name == "pipeline_busi.png" and png2.name == "pipeline_covid-ct-scans.png"
    _check_png(png)
    _check_png(png2)
    text = svg.read_text()
    # before/after fine-tuning overlaid in one panel, module boundaries named, P_final in the legend
    for label in ("base model", "+ lora-busi", "vision tower", "connector", "LLM", "answer", "inner", "output", "P_final", "test accuracy (%)", "tiny-gemma"):
        assert label in text, label


def test_llm_sites_figure(curves, tmp_path):
    figs = plot_llm_sites(curves, tmp_path, config=FHSConfig(metric="f1"), formats=("png", "svg"))
    png, svg = figs.paths[0]
    _check_png(png)
    text = svg.read_text()
    for label in ("comprehension (llm/image_mean)", "utilisation (llm/final_token)", "base model", "+ lora-busi", "test f1 (%)"):
        assert label in text, label


def test_plots_tolerate_gaps_and_missing_sites(curves, tmp_path):
    gappy = curves.with_columns(pl.when((pl.col("module") == "V") & (pl.col("layer") == 2)).then(None).otherwise(pl.col("p_mean")).alias("p_mean"))
    no_llm = gappy.filter(~pl.col("module").is_in(["L", "L_alt"]))
    assert plot_pipeline(no_llm, tmp_path / "a", error_bands=False, formats=("png",)).paths[0][0].is_file()
    assert plot_llm_sites(no_llm, tmp_path / "b").paths == ()
    with pytest.raises(LayerprobeError, match="formats"):
        plot_pipeline(curves, tmp_path, formats=("gif",))
    with pytest.raises(LayerprobeError, match="no curves"):
        plot_pipeline(curves.clear(), tmp_path)


def test_plotting_leaves_global_matplotlib_state_alone(tmp_path):
    code = (
        "import sys, polars as pl\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_fhs_profile import make_results, synthetic_run\n"
        "import layerprobe.fhs as f\n"
        "assert 'matplotlib' not in sys.modules, 'imported at import time'\n"
        f"f.plot_pipeline(f.layer_curves(make_results([synthetic_run('a', 'm', 'd')])), {str(tmp_path)!r}, formats=('png',))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
