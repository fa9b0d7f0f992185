"""Rewriting the report of a running search at a fixed interval until the search has ended.

The search writes best_config.yaml once it has chosen its winner, so a new or rewritten
best_config.yaml marks the end of the search. The search flushes trials.parquet (with the
winner's test metrics) right after best_config.yaml, so the last rewrite waits until
trials.parquet is at least as new as best_config.yaml, for up to SETTLE_REWRITES rewrites.

A search that ends without a winner (every trial failed, or Ray failed) writes no
best_config.yaml. It records ``outcome: failed`` in settings.json instead, and the watch stops
after the rewrite that follows. For an experiment written before tune-rec recorded outcomes,
the watch stops when trials.parquet shows every requested trial ended and none finished.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tune_rec.errors import InvalidInputError
from tune_rec.experiment import (
    BEST_CONFIG_FILE,
    REPORT_FILE,
    SEARCH_FAILED,
    SEARCH_INTERRUPTED,
    TRIALS_FILE,
    ended_without_winner,
    read_settings,
    read_table,
    recorded_outcome,
    search_completed,
)
from tune_rec.report.html import write_report
from tune_rec.report.images import write_pngs

logger = logging.getLogger(__name__)

# Number of rewrites after best_config.yaml appears that wait for trials.parquet to catch up.
SETTLE_REWRITES = 3


@dataclass(frozen=True)
class WatchResult:
    """The outcome of a watch: the report, the number of rewrites and the PNG files."""

    report: Path
    n_rewrites: int
    pngs: list[Path]
    """The PNG files of the last rewrite; empty without ``png``."""
    search_ended: bool
    """True when the end of the search ended the watch, False when ``stop`` or Ctrl-C did."""
    failure: str | None = None
    """The reason the search ended without best_config.yaml, when that ended the watch."""


def _signature(path: Path) -> tuple[int, int] | None:
    """Return the modification time (ns) and size of a file, or None if it does not exist."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size


def _search_failure(folder: Path) -> str | None:
    """Return why the search ended without a winner, or None while it may still write one.

    A table that cannot be read counts as no news: the rewrite reports the problem.
    """
    try:
        settings = read_settings(folder)
        status, message = recorded_outcome(settings)
        if status == SEARCH_FAILED:
            return message or "the search recorded that it failed"
        if status is not None:
            return None
        trials = read_table(folder, TRIALS_FILE)
    except InvalidInputError:
        return None
    if ended_without_winner(settings, trials):
        return (
            f"all {settings['num_samples']} trials ended and none finished; the error column "
            f"of {folder / TRIALS_FILE} says why each trial failed"
        )
    return None


def _interrupted(folder: Path) -> bool:
    try:
        status, _ = recorded_outcome(read_settings(folder))
    except InvalidInputError:
        return False
    return status == SEARCH_INTERRUPTED


def _trials_caught_up(folder: Path) -> bool:
    best = _signature(folder / BEST_CONFIG_FILE)
    trials = _signature(folder / TRIALS_FILE)
    return best is not None and trials is not None and trials[0] >= best[0]


def validate_interval(interval_seconds: float, name: str = "interval_seconds") -> float:
    """Return the interval as a float after checking that it is a positive finite number.

    Args:
        interval_seconds: The value to check.
        name: The name of the value in the error message, such as a command-line flag.

    Raises:
        InvalidInputError: The interval is not a number, or is 0, negative, NaN or infinite.
    """
    if isinstance(interval_seconds, bool) or not isinstance(interval_seconds, int | float):
        raise InvalidInputError(f"{name} must be a number of seconds; got {interval_seconds!r}")
    if not (math.isfinite(interval_seconds) and interval_seconds > 0):
        raise InvalidInputError(
            f"{name} must be a positive, finite number of seconds, for example 10; "
            f"got {interval_seconds:g}"
        )
    return float(interval_seconds)


def watch_report(
    experiment_dir: Path,
    interval_seconds: float,
    *,
    top_k: int = 10,
    png: bool = False,
    stop: threading.Event | None = None,
) -> WatchResult:
    """Rewrite the report of an experiment every ``interval_seconds`` until the search ends.

    The first rewrite happens at once. The watch stops after the rewrite that follows the
    appearance (or the rewrite) of best_config.yaml, after the rewrite that follows the end of
    a search without a winner, on ``stop`` being set, or on Ctrl-C (KeyboardInterrupt), which
    it catches. A folder whose search has already ended gets one rewrite. An interrupted
    search has not ended, because a resume continues it.

    Args:
        experiment_dir: The experiment folder of a running or finished search.
        interval_seconds: Seconds between the starts of two rewrites.
        top_k: Number of finished trials in the top-configs table.
        png: Whether to write each figure as a PNG file as well, on every rewrite.
        stop: An event that ends the watch when set, for callers in another thread.

    Returns:
        The report path, the number of rewrites, the PNG files of the last rewrite, whether
        the search ended and, when it ended without a winner, why.

    Raises:
        InvalidInputError: The interval is not a positive number, or the folder is not an
            experiment folder at the first rewrite.
        ImageExportError: ``png`` is set and Kaleido cannot write PNG files.
    """
    interval_seconds = validate_interval(interval_seconds)
    folder = Path(experiment_dir)
    stop = stop or threading.Event()
    completed_at_start = search_completed(folder)
    baseline = None if completed_at_start else _signature(folder / BEST_CONFIG_FILE)
    if completed_at_start:
        logger.info(
            "the search in %s has ended (%s exists): one rewrite", folder, BEST_CONFIG_FILE
        )
    else:
        logger.info(
            "watching %s: rewriting the report every %g s until the search ends (Ctrl-C stops)",
            folder,
            interval_seconds,
        )

    report = folder / REPORT_FILE
    pngs: list[Path] = []
    n_rewrites = 0
    n_settling = 0
    search_ended = False
    failure = None
    logged_interrupted = False
    try:
        while True:
            # Checked before the rewrite, so that the last rewrite reads the final files.
            changed = completed_at_start or _signature(folder / BEST_CONFIG_FILE) != baseline
            if changed:
                n_settling += 1
                search_ended = (
                    completed_at_start or _trials_caught_up(folder) or n_settling > SETTLE_REWRITES
                )
            else:
                failure = _search_failure(folder)
                search_ended = failure is not None
            if not search_ended and not logged_interrupted and _interrupted(folder):
                logged_interrupted = True
                logger.info(
                    "the search in %s was interrupted; the watch goes on until a resume "
                    "completes it (Ctrl-C stops)",
                    folder,
                )
            started = time.monotonic()
            written = _rewrite(folder, top_k, png, first=n_rewrites == 0)
            # A rewrite that takes longer than the interval is followed by the next at once.
            pause = max(0.0, interval_seconds - (time.monotonic() - started))
            if written is not None:
                report, pngs = written
                n_rewrites += 1
                logger.info(
                    "rewrite %d of %s%s",
                    n_rewrites,
                    report,
                    "; the search has ended, so the watch stops"
                    if search_ended
                    else f"; next in {pause:.1f} s",
                )
            if failure is not None:
                logger.warning(
                    "the search in %s has ended without a winner, so it will write no %s: %s",
                    folder,
                    BEST_CONFIG_FILE,
                    failure,
                )
            if search_ended or stop.wait(pause):
                break
    except KeyboardInterrupt:
        logger.info("watch of %s stopped after %d rewrites", folder, n_rewrites)
    return WatchResult(
        report=report,
        n_rewrites=n_rewrites,
        pngs=pngs,
        search_ended=search_ended,
        failure=failure,
    )


def _rewrite(
    folder: Path, top_k: int, png: bool, *, first: bool
) -> tuple[Path, list[Path]] | None:
    """Write the report (and PNGs); after the first rewrite, skip a folder that is not there."""
    try:
        report = write_report(folder, top_k=top_k)
    except InvalidInputError as error:
        if first:
            raise
        # A search started with --overwrite removes the folder before it writes it again.
        logger.warning("cannot rewrite the report of %s: %s; retrying later", folder, error)
        return None
    pngs = write_pngs(folder, top_k=top_k) if png else []
    return report, pngs
