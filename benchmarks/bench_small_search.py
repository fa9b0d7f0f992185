"""Time a small search end to end: ``tune-rec search`` of 4 trials x 5 epochs on MovieLens-100K.

Run from the repository root:

    python benchmarks/bench_small_search.py            # 3 timed commands and 1 probed run
    python benchmarks/bench_small_search.py --smoke    # 2 trials x 1 epoch, 1 command

The search space has a random searcher over lr and a FIFO scheduler, one CPU per trial. The
figure is the wall time of the ``tune-rec search --space SPACE`` command, from its start to
its exit, with every default (report, and the steps after the search where they exist).
A second kind of run starts the same command through benchmarks/_search_probe.py, which
timestamps its phases: interpreter and imports, data load, ray.init, the first trial's start and
first result, the trials, the steps after Tuner.fit, ray.shutdown and the end (winner retrain,
report). Two reference points are timed too: ``python -c pass`` and
``python -c "import tune_rec.cli"``.

``--patches`` and ``--env`` try a change on every run (for example ``--patches cap_reruns``,
``--env TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``); their figures go to
bench_small_search_variant.json.

Needs $TUNE_REC_DATA_DIR with ml-100k/u.data; without it the search runs on synthetic ratings of
MovieLens-100K's shape (through ``--data``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    REPOSITORY,
    data_dir,
    median,
    run_command,
    tune_rec_command,
    write_json,
)

PROBE = REPOSITORY / "benchmarks" / "_search_probe.py"
TARGET_SECONDS = 20.0
# The phases of a probed run: name, first event, last event.
PHASES = (
    ("python and imports", None, "cli_main:start"),
    ("data load", "load_dataset:start", "load_dataset:end"),
    ("ray.init", "ray_init:start", "ray_init:end"),
    ("Tuner.fit to first trial start", "tuner_fit:start", "trial_start:start"),
    ("first trial start to its first result", "trial_start:start", "trial_result:start"),
    ("trials, first result to fit end", "trial_result:start", "tuner_fit:end"),
    ("after fit, before ray.shutdown", "tuner_fit:end", "ray_shutdown:start:last"),
    ("ray.shutdown", "ray_shutdown:start:last", "ray_shutdown:end:last"),
    ("after ray.shutdown to exit", "ray_shutdown:end:last", "cli_main:end"),
)


def write_space(path: Path, n_trials: int, max_epochs: int) -> None:
    """Write the small search space: random lr, FIFO, one CPU per trial."""
    space = {
        "name": "small",
        "metric": "map@10",
        "mode": "max",
        "max_epochs": max_epochs,
        "num_samples": n_trials,
        "seed": 0,
        "searcher": {"type": "random"},
        "scheduler": {"type": "fifo"},
        "resources": {"cpus_per_trial": 1},
        "params": {
            "schedule": "fixed",
            "alpha": 1.0,
            "beta": 0.1,
            "lr": {"distribution": "loguniform", "low": 0.001, "high": 0.05},
        },
    }
    path.write_text(json.dumps(space), encoding="utf-8")


def command_prefix() -> list[str]:
    """Return the installed ``tune-rec`` script, or this interpreter's ``-m tune_rec``."""
    script = shutil.which("tune-rec")
    return [script] if script else tune_rec_command()


def phases_of(events: list) -> dict[str, float]:
    """Return the duration of each phase in PHASES from a probe's events."""
    first: dict[str, float] = {}
    for name, seconds in events:
        first.setdefault(name, seconds)
        first[f"{name}:last"] = seconds
    durations = {}
    for phase, begin, end in PHASES:
        if end in first and (begin is None or begin in first):
            durations[phase] = first[end] - (0.0 if begin is None else first[begin])
    durations["total"] = first.get("cli_main:end", float("nan"))
    return durations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed commands (default 3)")
    parser.add_argument("--smoke", action="store_true", help="2 trials x 1 epoch, one command")
    parser.add_argument(
        "--patches",
        default="",
        help="probe patches for every run, comma-separated (see _search_probe.py); the timed "
        "commands then run through the probe too",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment variable for every run; may repeat",
    )
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    n_trials, max_epochs, repeats = (2, 1, 1) if args.smoke else (4, 5, args.repeats)

    python_seconds, _ = run_command([sys.executable, "-c", "pass"])
    import_seconds, _ = run_command([sys.executable, "-c", "import tune_rec.cli"])

    with tempfile.TemporaryDirectory(prefix="bench-small-") as folder:
        folder = Path(folder)
        space = folder / "space.yaml"
        write_space(space, n_trials, max_epochs)
        extra = []
        if data_dir() is None:
            from tune_rec.data.synthetic import generate_ratings

            ratings = folder / "ratings.tsv"
            generate_ratings(100_000, seed=0).to_csv(ratings, sep="\t", index=False)
            extra = ["--data", str(ratings)]

        def search_arguments(name: str) -> list[str]:
            """Return the ``tune-rec`` arguments of one timed search named ``name``."""
            return [
                "-q",
                "search",
                "--space",
                str(space),
                "--results-dir",
                str(folder),
                "--name",
                name,
                *extra,
            ]

        walls = []
        for repeat in range(repeats):
            # With patches, the timed commands go through the probe, which applies them.
            prefix = (
                [sys.executable, str(PROBE), str(folder / f"events-{repeat}.json"), "--"]
                if args.patches
                else command_prefix()
            )
            command = [*prefix, *search_arguments(f"timed-{repeat}")]
            wall, _ = run_command(command, env={**env, "BENCH_PATCHES": args.patches})
            walls.append(wall)
            print(f"tune-rec search, run {repeat}: {wall:.1f} s", flush=True)

        events_path = folder / "events.json"
        probe = [
            sys.executable,
            str(PROBE),
            str(events_path),
            "--",
            *search_arguments("probed"),
        ]
        probe_wall, _ = run_command(
            probe,
            env={**env, "BENCH_PATCHES": args.patches, "BENCH_LAUNCH_TIME": repr(time.time())},
        )
        phases = phases_of(json.loads(events_path.read_text()))

    print(f"\n{n_trials} trials x {max_epochs} epochs")
    print(f"python -c pass: {python_seconds:.2f} s")
    print(f"python -c 'import tune_rec.cli': {import_seconds:.2f} s")
    print(f"tune-rec search, median of {repeats}: {median(walls):.1f} s")
    print(f"target: at most {TARGET_SECONDS:.0f} s")
    print(f"probed run: {probe_wall:.1f} s, phases:")
    for phase, seconds in phases.items():
        print(f"  {phase:<42}{seconds:>7.2f} s")
    variant = "" if not (args.patches or env) else "_variant"
    write_json(
        f"bench_small_search{variant}",
        {
            "patches": args.patches,
            "env": env,
            "n_trials": n_trials,
            "max_epochs": max_epochs,
            "smoke": args.smoke,
            "command_seconds": walls,
            "median_command_seconds": median(walls),
            "target_seconds": TARGET_SECONDS,
            "python_seconds": python_seconds,
            "import_tune_rec_cli_seconds": import_seconds,
            "probed_seconds": probe_wall,
            "phases": phases,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
