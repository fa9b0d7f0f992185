"""Time write_report on a synthetic experiment folder of 200 trials x 50 epochs.

Run from the repository root:

    python benchmarks/bench_report.py            # 200 trials x 50 epochs, median of 3 runs
    python benchmarks/bench_report.py --smoke    # 6 trials x 4 epochs, 1 run

The folder is written by tests/report/fake_experiment.py, in the format that the search writes,
with every trial run to the full budget (200 x 50 = 10,000 epoch rows). Only write_report is
timed, not the writing of the synthetic folder. The script prints one line per run and the
median, and exits with status 1 when the median exceeds --limit seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
FAKE_EXPERIMENT = REPOSITORY / "tests" / "report" / "fake_experiment.py"


def _load_fake_experiment():
    spec = importlib.util.spec_from_file_location("report_fake_experiment", FAKE_EXPERIMENT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="number of trials (default 200)")
    parser.add_argument(
        "--epochs", type=int, default=50, help="max_epochs of every trial (default 50)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument(
        "--limit", type=float, default=10.0, help="largest median allowed, in seconds"
    )
    parser.add_argument("--smoke", action="store_true", help="6 trials x 4 epochs, one run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.trials, args.epochs, args.repeats = 6, 4, 1
    for name in ("trials", "epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1; got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Write the synthetic folder, time write_report on it and print the results."""
    args = _parse_args(argv)
    sys.path.insert(0, str(REPOSITORY))
    from tune_rec.report import write_report

    fake_experiment = _load_fake_experiment()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as directory:
        path = fake_experiment.write_fake_experiment(
            Path(directory) / "experiment",
            n_trials=args.trials,
            max_epochs=args.epochs,
            schedules=("fixed", "increase", "decrease", "cosine"),
            # Every trial runs the full budget: the largest epochs.parquet for this size.
            n_epochs=[args.epochs] * args.trials,
        )
        seconds = []
        for run in range(1, args.repeats + 1):
            start = time.perf_counter()
            report = write_report(path)
            seconds.append(time.perf_counter() - start)
            size_mb = report.stat().st_size / 1e6
            print(f"run {run}: {seconds[-1]:.2f} s, report.html {size_mb:.1f} MB")

    median = statistics.median(seconds)
    print(
        f"write_report, {args.trials} trials x {args.epochs} epochs: median {median:.2f} s "
        f"of {args.repeats} run(s) (limit {args.limit:.1f} s)"
    )
    return 0 if median <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
