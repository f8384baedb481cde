"""Feature health scores (paper section 3.3), the four-score profile, tables, figures and reports.

Works from the probe results table alone (see docs/architecture.md), read and checked once by
:func:`load_results` (or :func:`check_results` for a table in memory); matplotlib is imported only
when a figure is drawn.

    >>> from layerprobe.fhs import FHSConfig, load_results, profile_runs
    >>> profiles = profile_runs(load_results(["results.parquet"]), FHSConfig(metric="f1"))
"""

from layerprobe import vocab
from layerprobe.fhs.config import FHSConfig
from layerprobe.fhs.curves import LayerPoints, curves_from, layer_curves, layer_points
from layerprobe.fhs.plots import Figures, plot_llm_sites, plot_pipeline
from layerprobe.fhs.profile import ModuleProfile, RunProfile, profile_runs, profiles_from
from layerprobe.fhs.report import Report, build_report
from layerprobe.fhs.scores import ModuleScore, feature_health_score, growth_factor, module_score, volatility_penalty
from layerprobe.fhs.tables import details_markdown, matrix_markdown, profile_frame, write_profile_table
from layerprobe.results import CheckedResults, check_results, load_results

RESULT_COLUMNS: tuple[str, ...] = tuple(vocab.RESULT_CONTRACT)
"""The columns ``fhs`` reads, in order (``vocab.RESULT_CONTRACT``)."""

__all__ = [
    "RESULT_COLUMNS",
    "CheckedResults",
    "FHSConfig",
    "Figures",
    "LayerPoints",
    "ModuleProfile",
    "ModuleScore",
    "Report",
    "RunProfile",
    "build_report",
    "check_results",
    "curves_from",
    "details_markdown",
    "feature_health_score",
    "growth_factor",
    "layer_curves",
    "layer_points",
    "load_results",
    "matrix_markdown",
    "module_score",
    "plot_llm_sites",
    "plot_pipeline",
    "profile_frame",
    "profile_runs",
    "profiles_from",
    "volatility_penalty",
    "write_profile_table",
]
