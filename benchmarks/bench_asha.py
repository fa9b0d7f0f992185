"""Compare an ASHA search with the same configs trained to the full budget.

Run from the repository root:

    python benchmarks/bench_asha.py                          # runs the search of alpha.yaml
    python benchmarks/bench_asha.py --experiment results/X   # reads a finished search instead
    python benchmarks/bench_asha.py --smoke                  # 4 trials x 4 epochs

The search is ``tune-rec search --space search_spaces/alpha.yaml --no-report`` (seed 0 from the
space; the steps that retrain configs after the search are switched off). Its configs are read
from trials.parquet and each is trained to the space's full budget without Ray, with
``tune_rec.training.Trainer``, on as many processes as there are CPUs. Training is seeded and
single-threaded, so these are the numbers a FIFO search of the same configs would record; the
script checks this on every trial that ASHA ran to the full budget.

Figures: the epochs that ASHA spent against n_trials x max_epochs, and ASHA's best last-epoch
validation MAP@10 among the trials that it ran to the full budget against the best of the
full-budget runs. Target: within 1 % of the full-budget best at no more than 35 % of its
epochs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPOSITORY,
    data_dir,
    run_command,
    search_flags,
    tune_rec_command,
    write_json,
)

SPACE = REPOSITORY / "search_spaces" / "alpha.yaml"
TARGET_GAP = 0.01
TARGET_EPOCH_SHARE = 0.35


def run_search(results: Path, smoke: bool) -> Path:
    """Run the ASHA search of alpha.yaml and return its experiment folder."""
    name = f"asha-{time.time_ns()}"
    command = [
        *tune_rec_command(),
        "-q",
        "search",
        "--space",
        str(SPACE),
        "--results-dir",
        str(results),
        "--name",
        name,
        "--no-report",
        *search_flags("--confirm-top", "--audit-pruned"),
    ]
    if smoke:
        command += ["--num-samples", "4", "--max-epochs", "4"]
    wall, _ = run_command(command)
    print(f"search: {wall:.1f} s")
    return results / name


def config_columns(trials: pd.DataFrame) -> dict[str, dict]:
    """Return each trial's config from the ``config.*`` columns, without missing values."""
    columns = [column for column in trials.columns if column.startswith("config.")]
    configs = {}
    for _, row in trials.iterrows():
        config = {}
        for column in columns:
            value = row[column]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if hasattr(value, "item"):  # NumPy scalars, which pydantic's int check rejects
                value = value.item()
            config[column.removeprefix("config.")] = value
        configs[row["trial_id"]] = config
    return configs


def train_full_budget(job: tuple[str, dict, dict, dict, str | None]) -> tuple[str, list[float]]:
    """Train one config to its full budget and return its validation MAP@10 per epoch."""
    trial_id, config, fixed, data_settings, folder = job
    from tune_rec.config import DataSettings, TrainConfig
    from tune_rec.data import load_dataset
    from tune_rec.training import Trainer

    data = DataSettings(**data_settings)
    dataset = load_dataset(data, seed=fixed["seed"], data_dir=Path(folder) if folder else None)
    trainer = Trainer(TrainConfig(**{**config, **fixed}), dataset, data)
    return trial_id, [record.metrics["map@10"] for record in trainer.epochs()]


def rerun_epochs(reruns: pd.DataFrame | None, max_epochs: int) -> int:
    """Return the epochs that the reruns after the search trained, 0 without reruns.

    A rerun trains from scratch to the full budget, or from the epoch ``stopped_at`` when it
    continues a stopped trial from its checkpoint.
    """
    if reruns is None or reruns.empty:
        return 0
    start = reruns["stopped_at"].fillna(0) if "stopped_at" in reruns else 0
    if "from_checkpoint" in reruns:
        start = start.where(reruns["from_checkpoint"], 0)
    return int((max_epochs - start).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, help="a finished search of alpha.yaml")
    parser.add_argument("--smoke", action="store_true", help="4 trials x 4 epochs")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-asha-") as scratch:
        folder = args.experiment or run_search(Path(scratch), args.smoke)
        settings = json.loads((folder / "settings.json").read_text())
        trials = pd.read_parquet(folder / "trials.parquet")
        epochs = pd.read_parquet(folder / "epochs.parquet")
        reruns_path = folder / "reruns.parquet"
        reruns = pd.read_parquet(reruns_path) if reruns_path.exists() else None

    fixed = settings["fixed"]
    max_epochs = fixed["max_epochs"]
    metric = settings["metric"]
    configs = config_columns(trials)
    source = data_dir()
    jobs = [
        (trial_id, config, fixed, settings["data_settings"], str(source) if source else None)
        for trial_id, config in configs.items()
    ]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        full = dict(pool.map(train_full_budget, jobs))
    print(f"full-budget training of {len(jobs)} configs: {time.perf_counter() - start:.1f} s")

    last_epoch = epochs.sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")
    n_epochs_asha = int(trials["n_epochs"].sum())
    n_epochs_full = len(configs) * max_epochs
    ran_full = trials.loc[trials["n_epochs"] >= max_epochs, "trial_id"].tolist()
    asha_values = {trial_id: float(last_epoch.loc[trial_id, metric]) for trial_id in ran_full}
    full_values = {trial_id: values[-1] for trial_id, values in full.items()}

    # Same config and seed, so a trial that ASHA ran to the end must match its retrain.
    mismatches = {
        trial_id: (asha_values[trial_id], full_values[trial_id])
        for trial_id in ran_full
        if abs(asha_values[trial_id] - full_values[trial_id]) > 1e-6
    }
    asha_best_id = max(asha_values, key=asha_values.get)
    full_best_id = max(full_values, key=full_values.get)
    asha_best, full_best = asha_values[asha_best_id], full_values[full_best_id]
    gap = (full_best - asha_best) / full_best
    share = n_epochs_asha / n_epochs_full
    ranking = sorted(full_values, key=full_values.get, reverse=True)
    best_row = trials.set_index("trial_id").loc[full_best_id]

    print(f"trials: {len(configs)}, {len(ran_full)} run to the full budget of {max_epochs} epochs")
    print(f"epochs: ASHA {n_epochs_asha}, full budget {n_epochs_full}, share {share:.1%}")
    n_epochs_reruns = rerun_epochs(reruns, max_epochs)
    if n_epochs_reruns:
        print(
            f"the reruns after the search (seed repeats, audit) add {n_epochs_reruns} epochs: "
            f"{(n_epochs_asha + n_epochs_reruns) / n_epochs_full:.1%} of the full budget in all"
        )
    print(f"best {metric}: ASHA {asha_best:.4f} ({asha_best_id}), full budget {full_best:.4f}")
    print(f"({full_best_id}: {int(best_row['n_epochs'])} epochs in the ASHA search)")
    print(
        f"ASHA's best is {gap:.2%} below the full-budget best and ranks "
        f"{ranking.index(asha_best_id) + 1} of {len(ranking)} in the full-budget runs"
    )
    print(
        f"target: within {TARGET_GAP:.0%} at no more than {TARGET_EPOCH_SHARE:.0%} of the epochs:"
        f" {'met' if gap <= TARGET_GAP and share <= TARGET_EPOCH_SHARE else 'not met'}"
    )
    print(f"retrains that differ from ASHA's record by more than 1e-6: {len(mismatches)}")
    write_json(
        "bench_asha",
        {
            "experiment": str(folder),
            "smoke": args.smoke,
            "n_trials": len(configs),
            "max_epochs": max_epochs,
            "n_epochs_asha": n_epochs_asha,
            "n_epochs_full": n_epochs_full,
            "epoch_share": share,
            "n_epochs_reruns": n_epochs_reruns,
            "asha_best": {"trial_id": asha_best_id, metric: asha_best},
            "full_best": {
                "trial_id": full_best_id,
                metric: full_best,
                "n_epochs_under_asha": int(best_row["n_epochs"]),
            },
            "gap": gap,
            "asha_best_rank_in_full": ranking.index(asha_best_id) + 1,
            "mismatches": mismatches,
            "full_budget_curves": full,
            "targets": {"gap": TARGET_GAP, "epoch_share": TARGET_EPOCH_SHARE},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
