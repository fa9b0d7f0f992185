"""Run the default search command once and record its time and outcome.

Run from the repository root:

    python benchmarks/bench_default_search.py            # tune-rec search --space alpha.yaml
    python benchmarks/bench_default_search.py --smoke    # the same with 2 trials x 2 epochs

The command is ``tune-rec search --space search_spaces/alpha.yaml`` with every default (report
included), writing to benchmarks/out/experiments/<name>, which stays for
``bench_asha.py --experiment``. The script records the command's wall time, the trials
finished, stopped by the scheduler and failed (from trials.parquet), the epochs run, and the
winner's validation MAP@10 (from best_config.yaml).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import OUT_DIR, REPOSITORY, run_command, tune_rec_command, write_json  # noqa: E402

SPACE = REPOSITORY / "search_spaces" / "alpha.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2 trials x 2 epochs")
    args = parser.parse_args(argv)

    results = OUT_DIR / "experiments"
    name = f"{'smoke' if args.smoke else 'alpha'}-{time.strftime('%Y%m%d-%H%M%S')}"
    script = shutil.which("tune-rec")
    command = [
        *([script] if script else tune_rec_command()),
        "search",
        "--space",
        str(SPACE.relative_to(REPOSITORY)),
        "--results-dir",
        str(results),
        "--name",
        name,
    ]
    if args.smoke:
        command += ["--num-samples", "2", "--max-epochs", "2"]
    wall, process = run_command(command)

    folder = results / name
    trials = pd.read_parquet(folder / "trials.parquet")
    best = yaml.safe_load((folder / "best_config.yaml").read_text())
    counts = trials["status"].value_counts().to_dict()
    metrics = best.get("metrics", {})
    print(f"command: {' '.join(command)}")
    print(f"wall time: {wall:.1f} s")
    print(f"trials: {len(trials)}; " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    print(f"epochs run: {int(trials['n_epochs'].sum())}")
    print(f"winner validation map@10: {metrics.get('map@10')}, test: {metrics.get('test_map@10')}")
    write_json(
        "bench_default_search",
        {
            "command": command,
            "smoke": args.smoke,
            "experiment": str(folder),
            "wall_seconds": wall,
            "n_trials": len(trials),
            "status_counts": counts,
            "n_epochs": int(trials["n_epochs"].sum()),
            "winner_metrics": metrics,
            "stdout_tail": process.stdout[-2000:],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
