"""Seed repeats and the pruning audit: which trials to rerun, and what their reruns show.

A search's best trial is the maximum of many noisy estimates. Retraining the top configs with
fresh seeds gives an estimate of each config that the selection did not bias, with a
confidence interval; continuing trials that the scheduler stopped shows whether early
stopping discarded a config that would have won.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.data.dataset import Dataset
from tune_rec.experiment import METRIC_KEYS, STOPPED, ExperimentLog, TrialRecord
from tune_rec.metrics import Evaluator

if TYPE_CHECKING:
    from tune_rec.training import Trainer

CONFIRM_FILE = "confirm.parquet"
AUDIT_FILE = "audit.parquet"
SUMMARY_METRICS = ("map@1", "map@5", "map@10")


def confirmation_seeds(seed: int, n_seeds: int) -> list[int]:
    """Return ``n_seeds`` training seeds that differ from the search's own ``seed``.

    The search's run of a config is excluded on purpose: it was selected for being high.
    """
    return [seed + 1 + index for index in range(n_seeds)]


def select_audit_trials(log: ExperimentLog, n_trials: int) -> list[TrialRecord]:
    """Choose up to ``n_trials`` stopped trials, spread over the schedule types.

    Types take turns; within a type, the trial with the best last metric comes first.
    """
    by_type: dict[str, list[TrialRecord]] = {}
    for trial in log.trials.values():
        if trial.status == STOPPED and trial.epochs:
            by_type.setdefault(str(trial.config.get("schedule")), []).append(trial)
    sign = 1 if log.mode == "max" else -1
    for trials in by_type.values():
        trials.sort(key=lambda t: sign * _last(t, log.metric), reverse=True)

    chosen: list[TrialRecord] = []
    while len(chosen) < n_trials and any(by_type.values()):
        for schedule in sorted(by_type):
            if by_type[schedule] and len(chosen) < n_trials:
                chosen.append(by_type[schedule].pop(0))
    return chosen


def _last(trial: TrialRecord, metric: str) -> float:
    value = trial.epochs[max(trial.epochs)].get(metric)
    return -math.inf if value is None or math.isnan(value) else float(value)


def summarise_repeats(
    runs: pd.DataFrame, metrics: Sequence[str] = SUMMARY_METRICS, confidence: float = 0.95
) -> pd.DataFrame:
    """Return, per repeated config, the mean, standard deviation and confidence interval.

    Args:
        runs: One row per (source_trial, seed) with validation metrics under their keys and
            test metrics under ``test_`` keys.
        metrics: Metric keys to summarise, on validation and on test.
        confidence: Level of the two-sided Student-t interval of the mean.

    Returns:
        One row per source trial with ``n_seeds`` and, for each metric m, ``m_mean``,
        ``m_std`` (sample standard deviation), ``m_ci_low`` and ``m_ci_high``. With one seed
        the deviation and the interval are NaN.
    """
    keys = [key for key in metrics if key in runs] + [
        f"test_{key}" for key in metrics if f"test_{key}" in runs
    ]
    rows = []
    for source_trial, group in runs.groupby("source_trial", sort=False):
        row: dict[str, Any] = {"source_trial": source_trial, "n_seeds": len(group)}
        if "rank" in group:
            row["rank"] = int(group["rank"].iloc[0])
        for key in keys:
            row.update(_interval(group[key].to_numpy(dtype=float), key, confidence))
        rows.append(row)
    return pd.DataFrame(rows)


def _interval(values: Any, key: str, confidence: float) -> dict[str, float]:
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return {
            f"{key}_mean": mean,
            f"{key}_std": math.nan,
            f"{key}_ci_low": math.nan,
            f"{key}_ci_high": math.nan,
        }
    std = float(values.std(ddof=1))
    # SciPy takes most of a second to import, so only a summary that needs it pays for that.
    from scipy import stats

    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {
        f"{key}_mean": mean,
        f"{key}_std": std,
        f"{key}_ci_low": mean - half,
        f"{key}_ci_high": mean + half,
    }


def best_by_mean(summary: pd.DataFrame, metric: str, mode: str) -> str:
    """Return the source trial with the best mean validation ``metric``."""
    column = f"{metric}_mean"
    ordered = summary.sort_values(column, ascending=mode == "min")
    return str(ordered["source_trial"].iloc[0])


def audit_verdicts(
    audit: pd.DataFrame, winner_value: float, metric: str, mode: str
) -> pd.DataFrame:
    """Add to each audited trial its margin over the winner and whether it would have won.

    ``margin`` is positive when the audited trial, run to the full budget, is better than the
    winner's recorded value.
    """
    sign = 1.0 if mode == "max" else -1.0
    result = audit.copy()
    result["winner_value"] = winner_value
    result["margin"] = sign * (result[metric] - winner_value)
    result["would_have_won"] = result["margin"] > 0
    return result


REPEATED_KEYS = (*METRIC_KEYS, *(f"test_{key}" for key in METRIC_KEYS))


def train_rerun(
    run: dict[str, Any], dataset: Dataset, fixed: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    """Train one rerun to the full budget; return its validation and ``test_`` metrics.

    Args:
        run: The kind (``confirm`` or ``audit``), the source trial, the seed, the trial's
            params and, for an audit, the checkpoint file to continue from.
        dataset: The split ratings.
        fixed: Experiment-wide TrainConfig values (max_epochs, protocol, normalisation).
        data: DataSettings as a dict.

    Raises:
        NonFiniteLossError: a loss became NaN or infinite.
    """
    import torch

    from tune_rec.training import Trainer

    data_settings = DataSettings(**data)
    train_config = TrainConfig(**{**run["params"], **fixed, "seed": run["seed"]})
    trainer = Trainer(train_config, dataset, data_settings)
    if run.get("checkpoint"):
        trainer.load_state_dict(
            torch.load(run["checkpoint"], weights_only=True, map_location="cpu")
        )
    record = trainer.fit()
    return {**record.metrics, **evaluate_test_split(trainer, data_settings), "epoch": record.epoch}


def evaluate_test_split(trainer: Trainer, data: DataSettings) -> dict[str, float]:
    """Return the trainer's current metrics on the test split, each key prefixed ``test_``."""
    test = Evaluator(
        trainer.dataset,
        split="test",
        relevance_threshold=data.relevance_threshold,
        normalisation=trainer.config.normalisation,
    )
    return {f"test_{key}": value for key, value in trainer.evaluate(test).items()}
