"""Writer of synthetic experiment folders in the format that the search produces.

The curves are smooth exponentials with seeded noise, shaped like the joint-loss model's: the
embedding loss (MSE) and the ranking loss (BPR) fall towards a floor, MAP@k rises towards a
ceiling that depends on the learning rate. Trials are stopped at ASHA-like rungs. On request,
the writer adds what a finished search writes last: seed repeats of the top finished trials
(reruns.parquet, confirm.parquet), a pruning audit of stopped trials (audit.parquet) and
best_config.yaml, built with tune_rec.confirm as the search builds them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tune_rec.confirm import audit_verdicts, best_by_mean, summarise_repeats
from tune_rec.schedules import alpha_at

METRIC_KEYS = ("map@1", "map@5", "map@10", "ndcg@10", "recall@10")
CONFIG_KEYS = (
    "schedule",
    "alpha",
    "alpha_start",
    "alpha_end",
    "warmup_epochs",
    "beta",
    "lr",
    "l2",
    "embedding_dim",
    "batch_size",
    "max_epochs",
    "seed",
)
CHECKSUM = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"


def _sample_config(rng: np.random.Generator, schedule: str, max_epochs: int) -> dict:
    config: dict = dict.fromkeys(CONFIG_KEYS)
    config["schedule"] = schedule
    if schedule == "fixed":
        config["alpha"] = float(rng.uniform(0.1, 2.0))
    elif schedule == "increase":
        config["alpha_start"] = float(rng.uniform(0.0, 0.5))
        config["alpha_end"] = float(rng.uniform(1.0, 2.0))
    elif schedule == "decrease":
        config["alpha_start"] = float(rng.uniform(1.0, 2.0))
        config["alpha_end"] = float(rng.uniform(0.0, 0.5))
    else:
        config["alpha_start"] = float(rng.uniform(0.2, 1.0))
        config["alpha_end"] = float(rng.uniform(1.0, 2.0))
        if schedule == "step":
            config["warmup_epochs"] = int(rng.integers(1, max(2, max_epochs // 2)))
    config["beta"] = float(rng.choice([0.05, 0.1, 0.2]))
    config["lr"] = float(10 ** rng.uniform(-3.5, -1.5))
    config["l2"] = float(10 ** rng.uniform(-6, -3))
    config["embedding_dim"] = int(rng.choice([16, 32, 64]))
    config["batch_size"] = int(rng.choice([256, 1024]))
    config["max_epochs"] = max_epochs
    config["seed"] = 0
    return config


def _schedule_params(config: dict) -> dict:
    return {
        key: config[key]
        for key in ("alpha", "alpha_start", "alpha_end", "warmup_epochs")
        if config[key] is not None
    }


def _curves(rng: np.random.Generator, config: dict, n_epochs: int) -> pd.DataFrame:
    """Return the epoch rows of one trial."""
    epochs = np.arange(n_epochs)
    # Epochs per e-fold of the losses: fastest at lr = 10^-2.5, slower away from it.
    speed = 4.0 + 60.0 * abs(math.log10(config["lr"]) + 2.5)

    embedding = 0.85 + 3.0 * np.exp(-epochs / speed) + rng.normal(0, 0.002, n_epochs)
    ranking = 0.25 + 0.45 * np.exp(-epochs / (speed * 0.8)) + rng.normal(0, 0.001, n_epochs)
    alphas = np.array(
        [
            alpha_at(config["schedule"], int(t), config["max_epochs"], _schedule_params(config))
            for t in epochs
        ]
    )
    target = alphas * embedding + config["beta"] * ranking + config["l2"] * 50.0

    ceiling = 0.80 - 0.08 * abs(math.log10(config["lr"]) + 2.5) + rng.normal(0, 0.01)
    progress = 1.0 - np.exp(-(epochs + 1) / (speed * 0.5))
    map10 = 0.55 + (ceiling - 0.55) * progress + rng.normal(0, 0.003, n_epochs)

    rows = {
        "epoch": epochs,
        "training_iteration": epochs + 1,
        "alpha": alphas,
        "loss_embedding": embedding,
        "loss_ranking": ranking,
        "loss_target": target,
        "map@1": map10 + 0.05,
        "map@5": map10 + 0.025,
        "map@10": map10,
        "ndcg@10": map10 + 0.03,
        "recall@10": map10 + 0.1,
    }
    for key in METRIC_KEYS:
        rows[f"full_{key}"] = rows[key] * 0.2
    rows["n_users_skipped"] = np.full(n_epochs, 3)
    rows["epoch_seconds"] = np.full(n_epochs, 0.15)
    rows["time_total_s"] = 0.15 * (epochs + 1)
    return pd.DataFrame(rows)


def _stop_epochs(n_trials: int, max_epochs: int, rng: np.random.Generator) -> list[int]:
    """Return the epochs each trial ran under an ASHA-like rule: grace 1, reduction factor 3."""
    rungs = [rung for rung in (1, 3, 9, 27, 81) if rung < max_epochs] + [max_epochs]
    weights = np.array([3.0**-i for i in range(len(rungs))])
    return [int(rng.choice(rungs, p=weights / weights.sum())) for _ in range(n_trials)]


def write_fake_experiment(
    path: Path,
    *,
    n_trials: int = 12,
    max_epochs: int = 12,
    schedules: Sequence[str] = ("fixed", "increase", "decrease"),
    statuses: Sequence[str] | None = None,
    n_epochs: Sequence[int] | None = None,
    seed: int = 0,
    write_settings: bool = True,
    write_trials: bool = True,
    write_epochs: bool = True,
    n_test_rows: int = 1,
    n_confirm: int = 0,
    n_confirm_seeds: int = 3,
    n_audit: int = 0,
    write_best_config: bool | None = None,
) -> Path:
    """Write settings.json, trials.parquet and epochs.parquet of a synthetic experiment.

    Args:
        path: Experiment folder to create.
        n_trials: Number of trials.
        max_epochs: Budget of every trial.
        schedules: Schedule types, assigned to trials in turn.
        statuses: Status of each trial. By default a trial is ``finished`` when it ran the full
            budget and ``stopped`` otherwise, except the first, which is ``failed`` when there
            are more than 3 trials.
        n_epochs: Epochs run by each trial. By default trials stop at ASHA-like rungs, except
            trials 1 to 3, which run the full budget so that the first schedule types each
            have a finished trial.
        seed: Seed of the synthetic values.
        write_settings: Whether to write settings.json.
        write_trials: Whether to write trials.parquet.
        write_epochs: Whether to write epochs.parquet.
        n_test_rows: Number of best finished trials that get test metrics.
        n_confirm: Number of best finished trials repeated with fresh seeds. With 1 or more,
            reruns.parquet and confirm.parquet are written, and the winner is the best mean.
        n_confirm_seeds: Fresh seeds per repeated trial.
        n_audit: Number of stopped trials continued to the full budget; with 1 or more,
            audit.parquet is written (and the audit rows are added to reruns.parquet).
        write_best_config: Whether to write best_config.yaml; by default when n_confirm or
            n_audit is 1 or more.

    Returns:
        The experiment folder.
    """
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)

    if n_epochs is None:
        n_epochs = _stop_epochs(n_trials, max_epochs, rng)
        for index in range(1, min(4, n_trials)):
            n_epochs[index] = max_epochs
    if statuses is None:
        statuses = ["finished" if n == max_epochs else "stopped" for n in n_epochs]
        if n_trials > 3:
            statuses[0] = "failed"

    trial_rows = []
    epoch_frames = []
    for index in range(n_trials):
        trial_id = f"trial_{index:04d}"
        config = _sample_config(rng, schedules[index % len(schedules)], max_epochs)
        epochs = _curves(rng, config, n_epochs[index])
        epochs.insert(0, "trial_id", trial_id)
        epoch_frames.append(epochs)

        row: dict = {
            "trial_id": trial_id,
            "status": statuses[index],
            "stopped_early": statuses[index] == "stopped",
            "error": "RuntimeError: synthetic failure" if statuses[index] == "failed" else None,
            "n_epochs": n_epochs[index],
        }
        row.update({f"config.{key}": value for key, value in config.items()})
        for key in METRIC_KEYS:
            values = epochs[key]
            row[f"last_{key}"] = float(values.iloc[-1]) if len(values) else None
            row[f"best_{key}"] = float(values.max()) if len(values) else None
        for key in METRIC_KEYS:
            row[f"test_{key}"] = None
        trial_rows.append(row)

    trials = pd.DataFrame(trial_rows)
    for key in METRIC_KEYS:
        trials[f"test_{key}"] = trials[f"test_{key}"].astype("float64")
    finished = trials[trials["status"] == "finished"].sort_values("last_map@10", ascending=False)
    for index in finished.index[:n_test_rows]:
        for key in METRIC_KEYS:
            trials.loc[index, f"test_{key}"] = trials.loc[index, f"last_{key}"] - 0.01

    if write_settings:
        (path / "settings.json").write_text(
            json.dumps(_settings(path.name, n_trials, max_epochs, schedules, seed), indent=2)
        )
    if write_trials:
        trials.to_parquet(path / "trials.parquet", index=False)
    if write_epochs:
        pd.concat(epoch_frames, ignore_index=True).to_parquet(path / "epochs.parquet", index=False)
    if write_best_config is None:
        write_best_config = n_confirm > 0 or n_audit > 0
    _write_finished_search(
        path, trials, rng, n_confirm, n_confirm_seeds, n_audit, seed, write_best_config
    )
    return path


def _rerun_row(
    rng: np.random.Generator, trial: pd.Series, kind: str, seed: int, shift: float
) -> dict:
    """Return one reruns.parquet row: the trial's last metrics moved by ``shift`` and noise."""
    noise = float(rng.normal(shift, 0.004))
    row: dict = {
        "kind": kind,
        "source_trial": trial["trial_id"],
        "rank": None,
        "seed": seed,
        "stopped_at": None,
        "from_checkpoint": kind == "audit",
    }
    for key in METRIC_KEYS:
        row[key] = float(trial[f"last_{key}"]) + noise
    for key in METRIC_KEYS:
        row[f"test_{key}"] = row[key] - 0.02 + float(rng.normal(0, 0.003))
    return row


def _write_finished_search(
    path: Path,
    trials: pd.DataFrame,
    rng: np.random.Generator,
    n_confirm: int,
    n_confirm_seeds: int,
    n_audit: int,
    seed: int,
    write_best_config: bool,
) -> None:
    """Write reruns.parquet, confirm.parquet, audit.parquet and best_config.yaml as asked."""
    finished = trials[trials["status"] == "finished"].sort_values("last_map@10", ascending=False)
    stopped = trials[(trials["status"] == "stopped") & (trials["n_epochs"] > 0)]
    rows = []
    for rank, (_, trial) in enumerate(finished.head(n_confirm).iterrows(), start=1):
        for index in range(n_confirm_seeds):
            # Fresh seeds land below the search value on average: the search picked the top.
            row = _rerun_row(rng, trial, "confirm", seed + 1 + index, -0.006)
            row["rank"] = rank
            rows.append(row)
    for _, trial in stopped.head(n_audit).iterrows():
        row = _rerun_row(rng, trial, "audit", seed, 0.02)
        row["stopped_at"] = int(trial["n_epochs"])
        rows.append(row)
    if not rows and not write_best_config:
        return

    reruns = pd.DataFrame(rows)
    summary = None
    if rows:
        reruns["rank"] = reruns["rank"].astype("float64")
        reruns["stopped_at"] = reruns["stopped_at"].astype("float64")
        reruns.to_parquet(path / "reruns.parquet", index=False)
    repeats = reruns[reruns["kind"] == "confirm"] if rows else reruns
    if len(repeats):
        summary = summarise_repeats(repeats)
        summary.to_parquet(path / "confirm.parquet", index=False)
    audited = reruns[reruns["kind"] == "audit"] if rows else reruns
    if len(audited) and len(finished):
        winner_value = float(finished["last_map@10"].iloc[0])
        verdicts = audit_verdicts(audited, winner_value, "map@10", "max")
        verdicts.to_parquet(path / "audit.parquet", index=False)
    if write_best_config and len(finished):
        _write_best_config(path, trials, finished, summary)


def _plain(value: object) -> object:
    """Return a YAML-safe value: None for a missing value, Python numbers for NumPy ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _write_best_config(
    path: Path, trials: pd.DataFrame, finished: pd.DataFrame, summary: pd.DataFrame | None
) -> None:
    winner_id = str(finished["trial_id"].iloc[0])
    selected_by = "last-epoch validation map@10 (max) among finished trials"
    if summary is not None:
        winner_id = best_by_mean(summary, "map@10", "max")
        selected_by = (
            f"best mean validation map@10 over {int(summary['n_seeds'].iloc[0])} fresh seeds "
            f"among the top {len(summary)} finished trials"
        )
    winner = trials[trials["trial_id"] == winner_id].iloc[0]
    document: dict = {
        "config": {key: _plain(winner[f"config.{key}"]) for key in CONFIG_KEYS},
        "metrics": {key: float(winner[f"last_{key}"]) for key in METRIC_KEYS},
        "seed": 0,
        "data_checksum": CHECKSUM,
        "source": {
            "experiment": path.name,
            "trial_id": winner_id,
            "rank": 1,
            "selected_by": selected_by,
        },
    }
    if summary is not None:
        row = summary[summary["source_trial"] == winner_id].iloc[0]
        document["confirmation"] = {
            key: _plain(value) for key, value in row.items() if key not in ("source_trial", "rank")
        }
    (path / "best_config.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def _settings(
    name: str, n_trials: int, max_epochs: int, schedules: Sequence[str], seed: int
) -> dict:
    return {
        "name": name,
        "created_at": "2025-01-01T12:00:00+00:00",
        "seed": seed,
        "metric": "map@10",
        "mode": "max",
        "protocol": "rated",
        "normalisation": "min_k_r",
        "max_epochs": max_epochs,
        "num_samples": n_trials,
        "searcher": {"type": "tpe", "n_startup_trials": 10},
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
        "data": {
            "dataset": "ml-100k",
            "path": None,
            "checksum": CHECKSUM,
            "relevance_threshold": 4.0,
            "split": "random",
            "n_users": 943,
            "n_items": 1682,
            "n_train": 70000,
            "n_validation": 10000,
            "n_test": 20000,
        },
        "versions": {"tune_rec": "0.1.0", "ray": "2.60.0", "optuna": "5.1.0"},
        # The parsed search space as the search writes it: per config key, a list of
        # alternatives, each with its distribution and the condition under which it applies.
        "space": {
            "params": {
                "schedule": [{"when": {}, "distribution": "choice", "values": list(schedules)}],
                "alpha": [
                    {
                        "when": {"schedule": ["fixed"]},
                        "distribution": "uniform",
                        "low": 0.1,
                        "high": 2.0,
                    }
                ],
                "alpha_start": [
                    {
                        "when": {"schedule": ["increase"]},
                        "distribution": "uniform",
                        "low": 0.0,
                        "high": 0.5,
                    },
                    {
                        "when": {"schedule": ["decrease"]},
                        "distribution": "uniform",
                        "low": 1.0,
                        "high": 2.0,
                    },
                ],
                "alpha_end": [
                    {
                        "when": {"schedule": ["increase"]},
                        "distribution": "uniform",
                        "low": 1.0,
                        "high": 2.0,
                    },
                    {
                        "when": {"schedule": ["decrease"]},
                        "distribution": "uniform",
                        "low": 0.0,
                        "high": 0.5,
                    },
                ],
                "beta": [{"when": {}, "distribution": "choice", "values": [0.05, 0.1, 0.2]}],
                "lr": [{"when": {}, "distribution": "loguniform", "low": 1e-4, "high": 1e-1}],
                "l2": [{"when": {}, "distribution": "loguniform", "low": 1e-7, "high": 1e-2}],
                "embedding_dim": [{"when": {}, "distribution": "choice", "values": [16, 32, 64]}],
                "batch_size": [{"when": {}, "distribution": "choice", "values": [256, 1024]}],
            }
        },
    }
