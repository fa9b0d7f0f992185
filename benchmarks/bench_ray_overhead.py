"""Measure what Ray Tune adds to a fixed search: 20 trials x 20 epochs on MovieLens-100K.

Run from the repository root:

    python benchmarks/bench_ray_overhead.py            # every variant, 2 runs each
    python benchmarks/bench_ray_overhead.py --smoke    # 2 trials x 2 epochs, baseline only

The search space is a grid over 20 learning rates (0.001 to 0.05, log-spaced) with a FIFO
scheduler, so every run trains the same 400 epochs. Each run is ``tune-rec search ... --no-report
-q`` started through benchmarks/_search_probe.py, which timestamps ray.init, Tuner.fit, the
trials and ray.shutdown without changing tune-rec. The steps after the search that retrain
configs (``--confirm-top``, ``--audit-pruned``, where they exist) are switched off.

The figure is the overhead ratio: the wall time of the search divided by the trials' own
compute time spread over the CPUs, ``sum(epoch_seconds) / n_cpus``, with epoch_seconds from
epochs.parquet. It is given for Tuner.fit alone and for the whole Ray part (ray.init to
ray.shutdown). The variants change one cost each, through flags or probe patches:

- ``baseline``: tune-rec as it is (checkpoint every 5 epochs, Tune keeps 2 per trial).
- ``checkpoint_last``: ``--checkpoint-every 20``, a checkpoint at the last epoch only.
- ``keep_all``: no ``num_to_keep``, so Tune does not snapshot the experiment state after
  every 2 checkpoints of a trial.
- ``no_auto_loggers``: ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``, so that Tune's driver does not
  write result.json, progress.csv and TensorBoard events for every result of every trial.
- ``warm_workers``: Ray's worker processes import the trainable's modules when they start
  (``worker_process_setup_hook``), not when a trial first needs them.
- ``combined``: ``checkpoint_last``, ``keep_all`` and ``no_auto_loggers`` together.

Each repeat also times Tuner.fit of a search of the same shape (trials x reports, one CPU per
trial, actors reused) whose trainable only reports: the part of the overhead that is Ray Tune's
own on this machine.

Needs $TUNE_REC_DATA_DIR with ml-100k/u.data; without it the search runs on synthetic ratings of
MovieLens-100K's shape (through ``--data``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPOSITORY,
    data_dir,
    median,
    run_command,
    search_flags,
    write_json,
)

PROBE = REPOSITORY / "benchmarks" / "_search_probe.py"
# tune-rec's default of --checkpoint-every.
DEFAULT_CHECKPOINT_EVERY = 5
# Variant: flags added to the command, probe patches, environment variables.
VARIANTS = {
    "baseline": ([], "", {}),
    "checkpoint_last": (["--checkpoint-every", "{max_epochs}"], "", {}),
    "keep_all": ([], "keep_all_checkpoints", {}),
    "no_auto_loggers": ([], "", {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}),
    "warm_workers": ([], "warm_workers", {}),
    "combined": (
        ["--checkpoint-every", "{max_epochs}"],
        "keep_all_checkpoints",
        {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"},
    ),
}


def write_space(path: Path, n_trials: int, max_epochs: int, n_cpus: int) -> None:
    """Write the grid search space: ``n_trials`` learning rates, FIFO, one CPU per trial."""
    rates = np.geomspace(1e-3, 5e-2, n_trials).round(6).tolist()
    space = {
        "name": "ray-overhead",
        "metric": "map@10",
        "mode": "max",
        "max_epochs": max_epochs,
        "seed": 0,
        "searcher": {"type": "grid"},
        "scheduler": {"type": "fifo"},
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": n_cpus},
        "params": {
            "schedule": "fixed",
            "alpha": 1.0,
            "beta": 0.1,
            "lr": {"distribution": "grid", "values": rates},
        },
    }
    path.write_text(json.dumps(space), encoding="utf-8")


def synthetic_ratings_file(folder: Path) -> Path:
    """Write synthetic ratings of MovieLens-100K's shape as a TSV file for ``--data``."""
    from tune_rec.data.synthetic import generate_ratings

    path = folder / "ratings.tsv"
    generate_ratings(100_000, seed=0).to_csv(path, sep="\t", index=False)
    return path


def run_variant(
    name: str, space: Path, results: Path, extra_flags: list[str], max_epochs: int, n_cpus: int
) -> dict:
    """Run the search once under variant ``name`` and return its timings."""
    flags, patches, variables = VARIANTS[name]
    flags = [flag.format(max_epochs=max_epochs) for flag in flags]
    experiment = f"{name.replace('+', '-')}-{time.time_ns()}"
    events_path = results / f"{experiment}.events.json"
    command = [
        sys.executable,
        str(PROBE),
        str(events_path),
        "--",
        "-q",
        "search",
        "--space",
        str(space),
        "--results-dir",
        str(results),
        "--name",
        experiment,
        "--no-report",
        *extra_flags,
        *flags,
    ]
    env = {**variables, "BENCH_PATCHES": patches, "BENCH_LAUNCH_TIME": repr(time.time())}
    wall, _ = run_command(command, env=env)
    events = _first_events(json.loads(events_path.read_text()))
    epochs = pd.read_parquet(results / experiment / "epochs.parquet")
    every = max_epochs if "--checkpoint-every" in flags else DEFAULT_CHECKPOINT_EVERY
    return summarise(name, wall, events, epochs, n_cpus, every, max_epochs)


def _first_events(pairs: list) -> dict[str, float]:
    """Map each event name to its first time, and ``<name>:last`` to its last."""
    events: dict[str, float] = {}
    for name, seconds in pairs:
        events.setdefault(name, seconds)
        events[f"{name}:last"] = seconds
    return events


def report_costs(epochs: pd.DataFrame, checkpoint_every: int, max_epochs: int) -> dict[str, float]:
    """Split the time inside the trials that is not an epoch: start-up and each report.

    Ray's ``time_total_s`` runs from the trainable's start to each report, so the first row's
    excess over its epoch is the trial's start-up, and each later row's excess over its epoch
    is the cost of the report before it. That report carried a checkpoint when its epoch count
    is a multiple of ``checkpoint_every`` or the budget.
    """
    epochs = epochs.sort_values(["trial_id", "epoch"])
    previous_total = epochs.groupby("trial_id")["time_total_s"].shift()
    excess = epochs["time_total_s"] - previous_total.fillna(0.0) - epochs["epoch_seconds"]
    first = previous_total.isna()
    # The report of epoch e - 1 (e epochs done) is paid before epoch e's row.
    reported = epochs["epoch"]
    with_checkpoint = (reported % checkpoint_every == 0) | (reported == max_epochs)
    later = ~first
    return {
        "trial_start_median_seconds": float(excess[first].median()),
        "trial_start_total_seconds": float(excess[first].sum()),
        "report_median_seconds": float(excess[later & ~with_checkpoint].median()),
        "report_with_checkpoint_median_seconds": float(excess[later & with_checkpoint].median()),
        "reports_total_seconds": float(excess[later].sum()),
    }


def summarise(
    name: str,
    wall: float,
    events: dict[str, float],
    epochs: pd.DataFrame,
    n_cpus: int,
    checkpoint_every: int,
    max_epochs: int,
) -> dict:
    """Return the ratios and the phases of one run."""
    compute = float(epochs["epoch_seconds"].sum())
    per_trial = epochs.groupby("trial_id").agg(
        epoch_seconds=("epoch_seconds", "sum"), time_total_s=("time_total_s", "max")
    )
    fit = events["tuner_fit:end"] - events["tuner_fit:start"]
    ray_part = events["ray_shutdown:end:last"] - events["ray_init:start"]
    return {
        "variant": name,
        "command_seconds": wall,
        "n_epochs": len(epochs),
        "compute_seconds": compute,
        "compute_per_cpu_seconds": compute / n_cpus,
        "median_epoch_seconds": float(epochs["epoch_seconds"].median()),
        "fit_seconds": fit,
        "ray_seconds": ray_part,
        "fit_ratio": fit / (compute / n_cpus),
        "ray_ratio": ray_part / (compute / n_cpus),
        "phases": {
            "ray_init": events["ray_init:end"] - events["ray_init:start"],
            "fit_start_to_first_trial": events["trial_start:start"] - events["tuner_fit:start"],
            "first_trial_to_first_result": events["trial_result:start"]
            - events["trial_start:start"],
            "last_trial_end_to_fit_end": events["tuner_fit:end"]
            - events["trial_complete:end:last"],
            "ray_shutdown": events["ray_shutdown:end:last"] - events["ray_shutdown:start:last"],
        },
        # Time inside the trainable that is not an epoch: start-up, reports and checkpoints.
        "in_trial_overhead_seconds": float(
            (per_trial["time_total_s"] - per_trial["epoch_seconds"]).sum()
        ),
        # CPU time that no trial used while Tuner.fit ran.
        "idle_cpu_seconds_in_fit": fit * n_cpus - float(per_trial["time_total_s"].sum()),
        "in_trial": report_costs(epochs, checkpoint_every, max_epochs),
    }


# A Tune search of the same shape whose trainable only reports: Ray Tune's own floor.
_EMPTY_SEARCH = """
import logging, sys, tempfile, time
from ray import tune
import ray

n_trials, n_reports = int(sys.argv[1]), int(sys.argv[2])

def trainable(config):
    for epoch in range(n_reports):
        tune.report({"epoch": epoch})

ray.init(num_cpus=int(sys.argv[3]), include_dashboard=False, logging_level=logging.WARNING,
         log_to_driver=False)
with tempfile.TemporaryDirectory() as folder:
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"index": tune.grid_search(list(range(n_trials)))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=folder, verbose=0),
    )
    start = time.perf_counter()
    tuner.fit()
    print(time.perf_counter() - start)
ray.shutdown()
"""


def empty_search_seconds(n_trials: int, n_reports: int, n_cpus: int) -> float:
    """Return the Tuner.fit seconds of a search of this shape whose trainable only reports."""
    _, process = run_command(
        [sys.executable, "-c", _EMPTY_SEARCH, str(n_trials), str(n_reports), str(n_cpus)],
        env={"RAY_USAGE_STATS_ENABLED": "0"},
    )
    return float(process.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials (default 20)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per trial (default 20)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant (default 2)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated variants (default: all of {', '.join(VARIANTS)})",
    )
    parser.add_argument("--smoke", action="store_true", help="2 trials x 2 epochs, one run")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if args.smoke:
        args.trials, args.epochs, args.repeats, variants = 2, 2, 1, ["baseline"]
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    n_cpus = os.cpu_count() or 1

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as folder:
        folder = Path(folder)
        space = folder / "space.yaml"
        write_space(space, args.trials, args.epochs, n_cpus)
        extra = ["--seed", "0", *search_flags("--confirm-top", "--audit-pruned")]
        if data_dir() is None:
            extra += ["--data", str(synthetic_ratings_file(folder))]
        runs = []
        empty = []
        # Variants take turns, so that a change in the machine's load hits each of them.
        for repeat in range(args.repeats):
            empty.append(empty_search_seconds(args.trials, args.epochs, n_cpus))
            print(f"empty trainable            run {repeat}: fit {empty[-1]:6.1f} s", flush=True)
            for name in variants:
                run = run_variant(name, space, folder, extra, args.epochs, n_cpus)
                run["repeat"] = repeat
                runs.append(run)
                print(
                    f"{name:<26} run {repeat}: fit {run['fit_seconds']:6.1f} s, Ray part "
                    f"{run['ray_seconds']:6.1f} s, compute/CPU "
                    f"{run['compute_per_cpu_seconds']:6.1f} s, fit ratio {run['fit_ratio']:.2f}, "
                    f"Ray ratio {run['ray_ratio']:.2f}",
                    flush=True,
                )

    summary = {}
    print(f"\n{args.trials} trials x {args.epochs} epochs on {n_cpus} CPUs; medians over runs")
    header = f"{'variant':<26}{'fit ratio':>10}{'Ray ratio':>10}{'fit s':>8}{'epoch s':>9}"
    print(header + f"{'ray.init s':>11}{'to 1st trial s':>15}{'in-trial s':>11}")
    for name in variants:
        own = [run for run in runs if run["variant"] == name]
        row = {
            key: median([run[key] for run in own])
            for key in (
                "fit_ratio",
                "ray_ratio",
                "fit_seconds",
                "ray_seconds",
                "compute_per_cpu_seconds",
                "median_epoch_seconds",
                "in_trial_overhead_seconds",
                "idle_cpu_seconds_in_fit",
                "command_seconds",
            )
        }
        row["phases"] = {
            phase: median([run["phases"][phase] for run in own]) for phase in own[0]["phases"]
        }
        summary[name] = row
        print(
            f"{name:<26}{row['fit_ratio']:>10.2f}{row['ray_ratio']:>10.2f}"
            f"{row['fit_seconds']:>8.1f}{row['median_epoch_seconds']:>9.3f}"
            f"{row['phases']['ray_init']:>11.1f}{row['phases']['fit_start_to_first_trial']:>15.1f}"
            f"{row['in_trial_overhead_seconds']:>11.1f}"
        )
    print("\ninside the trials, medians over runs of the per-run figures (seconds):")
    print(f"{'variant':<26}{'start':>8}{'report':>8}{'report+ckpt':>12}{'all reports':>12}")
    for name in variants:
        own = [run["in_trial"] for run in runs if run["variant"] == name]
        costs = {key: median([run[key] for run in own]) for key in own[0]}
        summary[name]["in_trial"] = costs
        print(
            f"{name:<26}{costs['trial_start_median_seconds']:>8.3f}"
            f"{costs['report_median_seconds']:>8.3f}"
            f"{costs['report_with_checkpoint_median_seconds']:>12.3f}"
            f"{costs['reports_total_seconds']:>12.1f}"
        )
    print(
        f"Tuner.fit of the same search with a trainable that only reports (Ray Tune's floor): "
        f"{median(empty):.1f} s"
    )
    if "baseline" in summary:
        for name in variants:
            if name != "baseline":
                ratio = summary[name]["fit_seconds"] / summary["baseline"]["fit_seconds"]
                print(f"fit time of {name} / baseline: {ratio:.2f}")
    write_json(
        "bench_ray_overhead",
        {
            "n_trials": args.trials,
            "max_epochs": args.epochs,
            "n_cpus": n_cpus,
            "smoke": args.smoke,
            "target_ratio": 1.25,
            "summary": summary,
            "runs": runs,
            "empty_trainable_fit_seconds": empty,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
