"""Time `tune_rec.metrics.Evaluator.evaluate` on MovieLens-100K, one CPU thread by default.

Run from the repository root:

    python benchmarks/bench_evaluation.py            # 200 timed runs per case
    python benchmarks/bench_evaluation.py --smoke    # 2 runs per case, for tests

The ratings come from $TUNE_REC_DATA_DIR/ml-100k/u.data, split per user at random (--seed, 0
by default): 20 % test, 10 % validation, the rest train. Without that file the script times
random ratings of the same shape (943 users, 1682 items, 100,000 ratings) and prints that it
did. The factors are random normal values with standard deviation 0.05, so the figures do not
depend on training. Each case prints the median and the 10th and 90th percentiles of the wall
time of one `evaluate` call, and the time to build the evaluator once.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tune_rec.data.dataset import Dataset, Interactions  # noqa: E402
from tune_rec.metrics import Evaluator  # noqa: E402

N_USERS, N_ITEMS, N_RATINGS = 943, 1682, 100_000


def load_ratings(seed: int) -> tuple[pd.DataFrame, str]:
    """Return ML-100K's ratings with 0-based ids, or random ones of its shape, and the source."""
    data_dir = os.environ.get("TUNE_REC_DATA_DIR")
    path = Path(data_dir, "ml-100k", "u.data") if data_dir else None
    if path is not None and path.is_file():
        frame = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])
        frame["user"] = pd.factorize(frame["user"], sort=True)[0]
        frame["item"] = pd.factorize(frame["item"], sort=True)[0]
        return frame, str(path)

    rng = np.random.default_rng(seed)
    keys = rng.choice(N_USERS * N_ITEMS, size=N_RATINGS, replace=False)
    frame = pd.DataFrame(
        {
            "user": keys // N_ITEMS,
            "item": keys % N_ITEMS,
            "rating": rng.integers(1, 6, size=N_RATINGS),
        }
    )
    return frame, "random ratings of ML-100K's shape (set TUNE_REC_DATA_DIR for the real ones)"


def split_per_user(frame: pd.DataFrame, seed: int) -> Dataset:
    """Split each user's ratings at random: 20 % test, 10 % validation, the rest train."""
    rng = np.random.default_rng(seed)
    frame = frame.iloc[rng.permutation(len(frame))]
    position = frame.groupby("user").cumcount().to_numpy()
    count = frame.groupby("user")["item"].transform("size").to_numpy()
    n_test = np.round(0.2 * count)
    n_validation = np.round(0.1 * count)
    part = np.where(position < n_test, 2, np.where(position < n_test + n_validation, 1, 0))

    def interactions(mask: np.ndarray) -> Interactions:
        return Interactions(
            users=frame["user"].to_numpy()[mask].astype(np.int64),
            items=frame["item"].to_numpy()[mask].astype(np.int64),
            ratings=frame["rating"].to_numpy()[mask].astype(np.float32),
        )

    n_users = int(frame["user"].max()) + 1
    n_items = int(frame["item"].max()) + 1
    return Dataset(
        name="ml-100k",
        n_users=n_users,
        n_items=n_items,
        train=interactions(part == 0),
        validation=interactions(part == 1),
        test=interactions(part == 2),
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        checksum="",
    )


def time_calls(call, n_runs: int) -> list[float]:
    """Return the wall time of each of ``n_runs`` calls, in milliseconds, after one warm-up."""
    call()
    times = []
    for _ in range(n_runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed calls per case")
    parser.add_argument("--smoke", action="store_true", help="2 timed calls per case")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--embedding-dim", type=int, default=64, help="factor size d")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and factors")
    args = parser.parse_args(argv)
    n_runs = 2 if args.smoke else args.runs

    torch.set_num_threads(args.threads)
    frame, source = load_ratings(args.seed)
    dataset = split_per_user(frame, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    user_factors = 0.05 * torch.randn(dataset.n_users, args.embedding_dim, generator=generator)
    item_factors = 0.05 * torch.randn(dataset.n_items, args.embedding_dim, generator=generator)
    user_bias = 0.05 * torch.randn(dataset.n_users, generator=generator)
    item_bias = 0.05 * torch.randn(dataset.n_items, generator=generator)

    print(f"data: {source}")
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), d = {args.embedding_dim}, "
        f"{n_runs} timed runs per case; milliseconds per evaluate call"
    )
    print(f"{'split':<11}{'protocols':<13}{'median':>8}{'p10':>8}{'p90':>8}  users")
    for split in ("validation", "test"):
        start = time.perf_counter()
        evaluator = Evaluator(dataset, split=split)
        build_ms = (time.perf_counter() - start) * 1000.0
        for protocols in (("rated", "full"), ("rated",), ("full",)):

            def call(protocols=protocols, evaluator=evaluator):
                return evaluator.evaluate(
                    user_factors, item_factors, user_bias, item_bias, protocols=protocols
                )

            times = sorted(time_calls(call, n_runs))
            p10 = times[int(0.1 * (len(times) - 1))]
            p90 = times[int(0.9 * (len(times) - 1))]
            print(
                f"{split:<11}{'+'.join(protocols):<13}{statistics.median(times):>8.2f}"
                f"{p10:>8.2f}{p90:>8.2f}  {evaluator.n_users_evaluated} evaluated, "
                f"{evaluator.n_users_skipped} skipped"
            )
        print(f"{split:<11}{'(build)':<13}{build_ms:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
