"""Feature health scores (paper section 3.3), the four-score profile, tables, figures and reports.

Works from the probe results table alone (see docs/architecture.md); matplotlib is imported only
when a figure is drawn.

    >>> from layerprobe.fhs import FHSConfig, load_results, profile_runs
    >>> profiles = profile_runs(load_results(["results.parquet"]), FHSConfig(metric="f1"))
"""

from layerprobe.fhs.config import FHSConfig
from layerprobe.fhs.curves import layer_curves
from layerprobe.fhs.plots import Figures, plot_llm_sites, plot_pipeline
from layerprobe.fhs.profile import ModuleProfile, RunProfile, profile_runs
from layerprobe.fhs.report import Report, build_report
from layerprobe.fhs.results import RESULT_COLUMNS, load_results
from layerprobe.fhs.scores import ModuleScore, feature_health_score, growth_factor, module_score, volatility_penalty
from layerprobe.fhs.tables import details_markdown, matrix_markdown, profile_frame, write_profile_table

__all__ = [
    "RESULT_COLUMNS",
    "FHSConfig",
    "Figures",
    "ModuleProfile",
    "ModuleScore",
    "Report",
    "RunProfile",
    "build_report",
    "details_markdown",
    "feature_health_score",
    "growth_factor",
    "layer_curves",
    "load_results",
    "matrix_markdown",
    "module_score",
    "plot_llm_sites",
    "plot_pipeline",
    "profile_frame",
    "profile_runs",
    "volatility_penalty",
    "write_profile_table",
]
