"""Static PNG copies of the report's figures, through Plotly's Kaleido exporter."""

from __future__ import annotations

import logging
from pathlib import Path

from tune_rec.errors import TuneRecError
from tune_rec.report.analysis import analyse_experiment
from tune_rec.report.reader import load_experiment

logger = logging.getLogger(__name__)

FIGURES_FOLDER = "figures"
PNG_WIDTH = 1400


class ImageExportError(TuneRecError):
    """A figure that could not be written as PNG because no static exporter works."""


def _is_missing_exporter(error: Exception) -> bool:
    text = str(error).lower()
    return isinstance(error, ImportError) or "kaleido" in text or "chrome" in text


def write_pngs(
    experiment_dir: Path,
    *,
    output_dir: Path | None = None,
    top_k: int = 10,
    scale: float = 1.0,
) -> list[Path]:
    """Write each figure of an experiment's report as a PNG file.

    Plotly writes PNG files through Kaleido (version 1 or later), which drives a Chrome or
    Chromium browser; neither is a dependency of tune-rec. The HTML report does not need them,
    and each of its figures has a camera button that downloads a PNG.

    Args:
        experiment_dir: The experiment folder.
        output_dir: Folder for the PNG files, ``<experiment_dir>/figures`` by default.
        top_k: Passed to the analysis, as for the HTML report.
        scale: Pixel density: 2 doubles the width and height of each image.

    Returns:
        The written files, one per figure, named after the figure (for example losses.png).

    Raises:
        ImageExportError: Kaleido is not installed or cannot start a browser; the message
            explains how to install it.
        InvalidInputError: The folder is not an experiment folder.
    """
    experiment = load_experiment(Path(experiment_dir))
    data = analyse_experiment(experiment, top_k=top_k)
    output_dir = Path(output_dir) if output_dir is not None else experiment.path / FIGURES_FOLDER
    output_dir.mkdir(parents=True, exist_ok=True)

    written = []
    for name, figure in data.figures.items():
        path = output_dir / f"{name}.png"
        try:
            figure.write_image(path, format="png", width=PNG_WIDTH, scale=scale)
        except (ImportError, RuntimeError, ValueError, OSError) as error:
            if not _is_missing_exporter(error):
                raise
            raise ImageExportError(
                "writing PNG files needs Plotly's static exporter, Kaleido 1 or later, and a "
                "Chrome or Chromium browser for it to drive; install them with "
                "'pip install \"kaleido>=1\"' and then 'kaleido_get_chrome' (or point "
                "BROWSER_PATH at an installed Chromium). The HTML report works without them. "
                f"Plotly reported: {str(error).strip()}"
            ) from error
        written.append(path)
        logger.info("wrote %s", path)
    return written
