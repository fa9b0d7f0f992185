"""Run a search: the experiment folder, Ray, the Tuner, and what is written at the end."""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.confirm import (
    AUDIT_FILE,
    CONFIRM_FILE,
    audit_verdicts,
    best_by_mean,
    evaluate_test_split,
    summarise_repeats,
)
from tune_rec.data.dataset import Dataset
from tune_rec.data.split import check_evaluable
from tune_rec.errors import (
    InvalidInputError,
    ResourceError,
    SearchFailedError,
    SearchInterruptedError,
)
from tune_rec.experiment import (
    OUTCOME_KEY,
    RERUNS_KEY,
    SEARCH_COMPLETED,
    SEARCH_FAILED,
    SEARCH_INTERRUPTED,
    SEARCH_RUNNING,
    SETTINGS_FILE,
    SPACE_FILE,
    TRIALS_FILE,
    ExperimentLog,
    TrialRecord,
    plain,
    read_settings,
    record_outcome,
    recorded_outcome,
    write_json_atomic,
    write_parquet_atomic,
    write_text_atomic,
)
from tune_rec.exports import run_config_document, versions, write_best_config
from tune_rec.space import SearchSpace
from tune_rec.training import Trainer

if TYPE_CHECKING:
    from tune_rec.search.rerun import PendingReruns

logger = logging.getLogger(__name__)

RERUNS_FILE = "reruns.parquet"


@dataclass
class SearchOptions:
    """Settings of one search run that do not belong to the search space."""

    space: SearchSpace
    space_path: Path
    name: str | None = None
    results_dir: Path = Path("results")
    data_dir: Path | None = None
    address: str | None = None
    dashboard: bool = False
    dashboard_host: str = "127.0.0.1"
    resume: bool = False
    overwrite: bool = False
    max_failures: int = 1
    checkpoint_every: int = 5
    progress_seconds: float = 10.0
    write_report: bool = True
    confirm_top: int = 3
    confirm_seeds: int = 3
    audit_pruned: int = 0
    log_to_driver: bool = False
    argv: list[str] = field(default_factory=list)
    # MLflow tracking URI (file:, sqlite:, http(s):, databricks); None logs to no tracker.
    mlflow_uri: str | None = None
    # MLflow experiment of the runs; None names it after the experiment folder.
    mlflow_experiment: str | None = None


@dataclass
class SearchOutcome:
    """The outcome of a finished search: its folder, winner, best config and tables."""

    folder: Path
    best: TrialRecord
    best_document: dict[str, Any]
    log: ExperimentLog


def experiment_folder(options: SearchOptions) -> Path:
    """Return the experiment folder, after checking that using it loses no results.

    Raises:
        InvalidInputError: the folder holds another run and neither resume nor overwrite was
            asked, or resume was asked for a folder that holds no experiment.
    """
    name = options.name or _default_name(options.space)
    if name in (".", "..") or Path(name).name != name or not name.strip():
        raise InvalidInputError(
            f"--name must be a plain folder name without path separators; got {name!r}. Use "
            "--results-dir to choose the parent folder"
        )
    folder = (Path(options.results_dir) / name).resolve()
    exists = (folder / SETTINGS_FILE).exists()
    if options.resume and not exists:
        raise InvalidInputError(
            f"--resume: {folder} is not an experiment folder ({SETTINGS_FILE} not found); "
            "pass the folder of an earlier search"
        )
    if exists and not options.resume and not options.overwrite:
        raise InvalidInputError(
            f"experiment folder {folder} already exists; pass --resume to continue it, "
            "--overwrite to replace it, or --name for a new experiment"
        )
    return folder


def _replace_earlier(folder: Path) -> None:
    """Delete an earlier experiment for --overwrite, once the new search is sure to start."""
    if (folder / SETTINGS_FILE).exists():
        logger.warning("--overwrite: removing the earlier experiment in %s", folder)
        shutil.rmtree(folder)


def _default_name(space: SearchSpace) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{space.name or 'search'}-{stamp}"


def fixed_values(space: SearchSpace) -> dict[str, Any]:
    """Return the TrainConfig values that every trial of the space shares."""
    return {
        "seed": space.seed,
        "max_epochs": space.max_epochs,
        "protocol": space.protocol,
        "normalisation": space.normalisation,
    }


def write_settings(folder: Path, options: SearchOptions, dataset: Dataset) -> dict[str, Any]:
    """Write the search space as given and the resolved settings, before any trial starts."""
    space = options.space
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / SPACE_FILE, Path(options.space_path).read_text(encoding="utf-8"))
    data = space.data
    settings = plain(
        {
            "name": folder.name,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(shlex.quote(arg) for arg in ["tune-rec", *options.argv]),
            "seed": space.seed,
            "metric": space.metric,
            "mode": space.mode,
            "protocol": space.protocol,
            "normalisation": space.normalisation,
            "max_epochs": space.max_epochs,
            "num_samples": space.num_samples,
            "searcher": space.searcher.model_dump(),
            "scheduler": space.scheduler.model_dump(),
            "resources": space.resources.model_dump(),
            "fixed": fixed_values(space),
            "data_settings": data.model_dump(),
            "data": {
                "dataset": dataset.name,
                "path": data.path,
                "checksum": dataset.checksum,
                "relevance_threshold": data.relevance_threshold,
                "split": data.split,
                "n_users": dataset.n_users,
                "n_items": dataset.n_items,
                "n_train": len(dataset.train),
                "n_validation": len(dataset.validation),
                "n_test": len(dataset.test),
            },
            "versions": versions(),
            "space": space.to_dict(),
            RERUNS_KEY: {
                "confirm_top": options.confirm_top,
                "confirm_seeds": options.confirm_seeds,
                "audit_pruned": options.audit_pruned,
            },
            # Ray stores it with its run settings, which a resume restores unchanged.
            "max_failures": options.max_failures,
            OUTCOME_KEY: {"status": SEARCH_RUNNING, "at": None, "message": None},
        }
    )
    write_json_atomic(folder / SETTINGS_FILE, settings)
    return settings


def resume_command(folder: Path) -> str:
    """Return the command that continues the experiment in ``folder``."""
    return f"tune-rec search --resume {shlex.quote(str(folder))}"


def run_search(options: SearchOptions, dataset: Dataset) -> SearchOutcome:
    """Run the search of ``options`` on ``dataset`` and write the experiment folder.

    The outcome of the run (completed, failed or interrupted) is recorded in settings.json.

    Raises:
        InvalidInputError: the folder cannot be used, or the data cannot be evaluated.
        ResourceError: the cluster cannot satisfy the per-trial resource request.
        SearchFailedError: no trial finished.
    """
    import optuna

    # Optuna logs every study it creates at INFO; tune-rec logs the trials itself.
    if not logger.isEnabledFor(logging.DEBUG):
        optuna.logging.set_verbosity(optuna.logging.WARNING)

    # Both are checked before Ray starts, so that bad input fails at once.
    folder = experiment_folder(options)
    check_evaluable(dataset, options.space.data.relevance_threshold)
    try:
        return _run_search(folder, options, dataset)
    except SearchFailedError as error:
        record_outcome(folder, SEARCH_FAILED, str(error))
        raise


def _run_search(folder: Path, options: SearchOptions, dataset: Dataset) -> SearchOutcome:
    from tune_rec.search.ray_session import ray_session

    pending = None
    trials_ended = False
    try:
        # Ray Tune prints its own tables to stdout; stdout is kept for the command's results.
        with (
            ray_session(
                address=options.address,
                dashboard=options.dashboard,
                dashboard_host=options.dashboard_host,
                log_to_driver=options.log_to_driver,
            ),
            contextlib.redirect_stdout(sys.stderr),
        ):
            outcome = _search_in_session(folder, options, dataset)
            if isinstance(outcome, SearchOutcome):
                return outcome
            log, pending = outcome
            trials_ended = True
        # Reruns in this process train while Ray shuts down above.
        reruns = None
        if pending is not None:
            reruns = pending.result()
            write_parquet_atomic(folder / RERUNS_FILE, reruns)
        return finish_search(folder, options, dataset, log, reruns)
    except KeyboardInterrupt:
        # An interrupt during the trials is recorded where Tuner.fit is called.
        if trials_ended and recorded_outcome(read_settings(folder))[0] == SEARCH_RUNNING:
            logger.error(
                "search interrupted after its trials; resume it with: %s", resume_command(folder)
            )
            record_outcome(
                folder, SEARCH_INTERRUPTED, "interrupted by the user (Ctrl-C) after the trials"
            )
        raise
    finally:
        if pending is not None:
            pending.cancel()


def _search_in_session(
    folder: Path, options: SearchOptions, dataset: Dataset
) -> SearchOutcome | tuple[ExperimentLog, PendingReruns | None]:
    """Run the trials on the started Ray and start the reruns.

    Returns:
        The outcome of an interrupted search, or the experiment log with the started reruns.
    """
    from ray.tune.error import TuneError

    from tune_rec.search.tuner import build_tuner, keep_signal_handlers, restore_tuner

    space = options.space
    check_resources(space)
    # Only now, with the resources checked, may an earlier experiment be replaced.
    if options.resume:
        record_outcome(folder, SEARCH_RUNNING)
    else:
        if options.overwrite:
            _replace_earlier(folder)
        write_settings(folder, options, dataset)
    logger.info("experiment folder: %s", folder)
    log = ExperimentLog.load(
        folder, max_epochs=space.max_epochs, metric=space.metric, mode=space.mode
    )
    if options.resume:
        tuner = restore_tuner(folder, options, dataset)
    else:
        tuner = build_tuner(folder, options, dataset, log)
    try:
        with keep_signal_handlers():
            tuner.fit()
    except KeyboardInterrupt:
        logger.error("search interrupted; resume it with: %s", resume_command(folder))
        record_outcome(folder, SEARCH_INTERRUPTED, "interrupted by the user (Ctrl-C)")
        raise
    except TuneError as error:
        raise SearchFailedError(
            f"the search failed: {error}; resume it with: {resume_command(folder)}"
        ) from error

    # The recorder flushed every result; the folder is the record of the whole search,
    # including results of the runs before a resume.
    log = ExperimentLog.load(
        folder, max_epochs=space.max_epochs, metric=space.metric, mode=space.mode
    )
    n_requested = n_trials_requested(space)
    if log.n_ended() < n_requested:
        return interrupt_search(folder, options, dataset, log, n_requested)
    return log, _start_reruns(folder, options, dataset, log)


def _start_reruns(
    folder: Path, options: SearchOptions, dataset: Dataset, log: ExperimentLog
) -> PendingReruns | None:
    """Start the seed repeats of the top trials and the audit of stopped ones, if any."""
    from tune_rec.search.rerun import plan_reruns, start_reruns

    if log.best_trial() is None:
        return None
    runs = plan_reruns(folder, options, log)
    if not runs:
        return None
    return start_reruns(folder, options, dataset, runs)


def n_trials_requested(space: SearchSpace) -> int:
    """Return the number of trials that the search runs: the grid size for a grid searcher."""
    if space.searcher.type == "grid":
        return space.n_grid_points()
    return space.num_samples


def interrupt_search(
    folder: Path, options: SearchOptions, dataset: Dataset, log: ExperimentLog, n_requested: int
) -> SearchOutcome:
    """Write what the finished trials give, then raise with the command that resumes.

    Ray Tune stops on the first Ctrl-C and saves its state, then returns as if done.

    Raises:
        SearchInterruptedError: always.
    """
    best = log.best_trial()
    if best is not None:
        document = best_config_document(folder, options.space, dataset, best, metrics=None)
        document["source"]["interrupted"] = True
        write_best_config(folder, document)
    message = (
        f"search interrupted after {log.n_ended()} of {n_requested} trials; the results so far "
        f"are in {folder}. Resume it with: {resume_command(folder)}"
    )
    record_outcome(folder, SEARCH_INTERRUPTED, message)
    if options.write_report:
        _write_report(folder)
    raise SearchInterruptedError(message)


def check_resources(space: SearchSpace) -> None:
    """Fail fast when no node can run one trial; Ray alone would wait forever.

    Raises:
        ResourceError: the request names more CPUs or GPUs than the cluster has.
    """
    import ray

    available = ray.cluster_resources()
    resources = space.resources
    n_cpus = available.get("CPU", 0.0)
    n_gpus = available.get("GPU", 0.0)
    if resources.gpus_per_trial > n_gpus:
        raise ResourceError(
            f"gpus_per_trial is {resources.gpus_per_trial} but the Ray cluster has {n_gpus:g} "
            "GPUs; pass --gpus-per-trial 0 to train on CPUs, or attach to a cluster with GPUs "
            "through --address"
        )
    if resources.cpus_per_trial > n_cpus:
        raise ResourceError(
            f"cpus_per_trial is {resources.cpus_per_trial} but the Ray cluster has {n_cpus:g} "
            f"CPUs; pass --cpus-per-trial {max(n_cpus, 1):g} or less"
        )


def finish_search(
    folder: Path,
    options: SearchOptions,
    dataset: Dataset,
    log: ExperimentLog,
    reruns: pd.DataFrame | None = None,
) -> SearchOutcome:
    """Choose the winner, retrain it without Ray for its test metrics, write best_config.yaml.

    With seed repeats, the winner is the repeated config with the best mean validation
    metric; without, the finished trial with the best last-epoch validation metric. The
    retrain also checks that the winner's recorded validation metric is reproducible.

    Raises:
        SearchFailedError: no trial finished, so there is no winner.
    """
    space = options.space
    best = log.best_trial()
    if best is None:
        n_failed = sum(trial.status == "failed" for trial in log.trials.values())
        raise SearchFailedError(
            f"no trial finished ({len(log.trials)} trials, {n_failed} failed), so no "
            f"best_config.yaml was written; the error column of {folder / TRIALS_FILE} says "
            "why each trial failed"
        )
    summary = _confirmation_summary(folder, space, reruns)
    if summary is not None:
        best = log.trials[best_by_mean(summary, space.metric, space.mode)]
    _write_audit(folder, space, best, reruns)

    config = TrainConfig(**{**best.config, **fixed_values(space)})
    metrics = retrain_and_test(config, space.data, dataset)
    recorded = best.epochs[max(best.epochs)][space.metric]
    if abs(metrics[space.metric] - recorded) > 1e-6:
        logger.warning(
            "retraining trial %s gave validation %s %.6f, the search recorded %.6f; results "
            "on this machine are not bit-reproducible",
            best.trial_id,
            space.metric,
            metrics[space.metric],
            recorded,
        )
    document = best_config_document(folder, space, dataset, best, metrics)
    if summary is not None:
        row = summary[summary.source_trial == best.trial_id].iloc[0]
        document["source"]["selected_by"] = (
            f"best mean validation {space.metric} over {int(row.n_seeds)} fresh seeds among "
            f"the top {len(summary)} finished trials"
        )
        document["confirmation"] = plain(
            {key: value for key, value in row.items() if key not in ("source_trial", "rank")}
        )
    write_best_config(folder, document)
    log.test_metrics[best.trial_id] = {
        key: value for key, value in metrics.items() if key.startswith("test_")
    }
    log.flush()
    record_outcome(folder, SEARCH_COMPLETED)
    remove_checkpoints(folder)
    if options.write_report:
        _write_report(folder)
    return SearchOutcome(folder, best, document, log)


def _confirmation_summary(
    folder: Path, space: SearchSpace, reruns: pd.DataFrame | None
) -> pd.DataFrame | None:
    if reruns is None or "kind" not in reruns:
        return None
    repeats = reruns[(reruns.kind == "confirm") & reruns[space.metric].notna()]
    if repeats.empty:
        return None
    summary = summarise_repeats(repeats)
    write_parquet_atomic(folder / CONFIRM_FILE, summary)
    return summary


def _write_audit(
    folder: Path, space: SearchSpace, winner: TrialRecord, reruns: pd.DataFrame | None
) -> None:
    """Compare each audited trial with the winner's value in the search, on the same seed."""
    if reruns is None or "kind" not in reruns:
        return
    audited = reruns[(reruns.kind == "audit") & reruns[space.metric].notna()]
    if audited.empty:
        return
    recorded = winner.epochs[max(winner.epochs)][space.metric]
    verdicts = audit_verdicts(audited, recorded, space.metric, space.mode)
    write_parquet_atomic(folder / AUDIT_FILE, verdicts)
    n_better = int(verdicts.would_have_won.sum())
    logger.info(
        "pruning audit: %d of %d stopped trials, run to the full budget, beat the winner's "
        "%s of %.4f on the search's own seed, the seed they ran with (largest margin %+.4f)",
        n_better,
        len(verdicts),
        space.metric,
        recorded,
        float(verdicts.margin.max()),
    )


def remove_checkpoints(folder: Path) -> None:
    """Delete the trials' checkpoints of a completed search; only a resume needs them."""
    removed = 0
    for checkpoint in Path(folder).glob("*/checkpoint_*"):
        if checkpoint.is_dir():
            shutil.rmtree(checkpoint)
            removed += 1
    logger.debug("removed %d checkpoints from %s", removed, folder)


def best_config_document(
    folder: Path,
    space: SearchSpace,
    dataset: Dataset,
    best: TrialRecord,
    metrics: dict[str, float] | None,
) -> dict[str, Any]:
    """Return best_config.yaml's content for ``best``; ``metrics`` default to its last epoch."""
    config = TrainConfig(**{**best.config, **fixed_values(space)})
    if metrics is None:
        last = best.epochs[max(best.epochs)]
        metrics = {key: value for key, value in last.items() if isinstance(value, int | float)}
    return run_config_document(
        config,
        space.data,
        metrics=metrics,
        checksum=dataset.checksum,
        source={
            "experiment": folder.name,
            "trial_id": best.trial_id,
            "rank": 1,
            "selected_by": (
                f"last-epoch validation {space.metric} ({space.mode}) among finished trials"
            ),
        },
    )


def retrain_and_test(
    config: TrainConfig, data: DataSettings, dataset: Dataset
) -> dict[str, float]:
    """Train ``config`` to its full budget and return validation and ``test_`` metrics."""
    trainer = Trainer(config, dataset, data)
    record = trainer.fit()
    return {
        "loss_embedding": record.loss_embedding,
        "loss_ranking": record.loss_ranking,
        "loss_target": record.loss_target,
        **record.metrics,
        **evaluate_test_split(trainer, data),
    }


def _write_report(folder: Path) -> None:
    try:
        from tune_rec.report import write_report
    except ImportError:
        logger.warning("the report module is not available; report.html was not written")
        return
    try:
        path = write_report(folder)
    except KeyboardInterrupt:
        logger.error(
            "report.html was not written; the search is complete, write the report with: "
            "tune-rec report %s",
            shlex.quote(str(folder)),
        )
        raise
    logger.info("report written to %s", path)
