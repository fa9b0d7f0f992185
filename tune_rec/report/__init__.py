"""The Plotly report of an experiment folder: one self-contained HTML page, and PNG figures.

The report reads only the files of the experiment folder (settings.json, trials.parquet,
epochs.parquet and, where present, optuna.db, confirm.parquet, reruns.parquet, audit.parquet and
best_config.yaml), so it needs no running Ray and works on an experiment that is still running;
watch_report rewrites it while the search runs.
"""

from tune_rec.report.convergence import Verdict, convergence_verdict, describe_rule
from tune_rec.report.html import build_report_html, write_report
from tune_rec.report.images import ImageExportError, write_pngs
from tune_rec.report.watch import WatchResult, watch_report

__all__ = [
    "ImageExportError",
    "Verdict",
    "WatchResult",
    "build_report_html",
    "convergence_verdict",
    "describe_rule",
    "watch_report",
    "write_pngs",
    "write_report",
]
