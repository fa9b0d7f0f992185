"""Time and size training and evaluation on synthetic ratings of 10**5, 10**6 and 10**7 pairs.

Run from the repository root:

    python benchmarks/bench_scale.py                         # 10**5, 10**6, 10**7
    python benchmarks/bench_scale.py --sizes 100000,1000000  # a subset
    python benchmarks/bench_scale.py --smoke                 # 20,000 and 40,000 ratings

The ratings come from tune_rec.data.synthetic (MovieLens-like popularity and activity skew;
users grow with the ratings, items with their square root) and are split 70/10/20 per user.
Each size runs in two fresh processes, so that each peak memory (``ru_maxrss``, which counts
torch's allocations too) belongs to one job:

- ``train``: build the Trainer (batch 1024, embedding 64, one thread, Adam or with
  ``--optimizer sparse_adam`` the lazy Adam), then time
  ``run_epoch(evaluate=False)``: one warm-up and 3 timed epochs, or from 10**7 ratings up
  ``--large-epochs`` timed epochs (default 1) without a warm-up.
- ``evaluate``: build the validation Evaluator and time ``evaluate`` with random factors under
  the full protocol, the rated protocol and both: one warm-up and 2 timed calls, or a single
  call from 10**7 ratings up.

Prints per size: users, items, epoch time, cost per training rating, evaluation time, the
resident memory once the data is built and each step's peak above it (the peak is reset
between steps through /proc/self/clear_refs), and the padded matrix of the rated protocol
(evaluated users x the largest number of validation ratings of one user).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPOSITORY, median, run_command, write_json  # noqa: E402

SINGLE_RUN_FROM = 10**7
DEFAULT_BATCH_SIZE = 1024
TARGET_COST_RATIO = 1.5


def peak_mib() -> float:
    """Return this process's peak resident memory since the last reset, in MiB.

    ``ru_maxrss`` is in KiB on Linux.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak() -> float:
    """Collect garbage, reset the peak to the current resident memory and return it, in MiB.

    Writing 5 to /proc/self/clear_refs resets the peak that ``ru_maxrss`` reports (Linux 4.0
    and later), so that each step's peak excludes the larger ones before it, such as the
    generation of the ratings. Where that file cannot be written, the peak stays cumulative.
    """
    gc.collect()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return peak_mib()


def train_worker(n_ratings: int, batch_size: int, optimizer: str, large_epochs: int = 1) -> dict:
    """Build a Trainer on ``n_ratings`` synthetic ratings and time its training epochs."""
    from tune_rec.config import TrainConfig
    from tune_rec.data.synthetic import synthetic_dataset
    from tune_rec.training import Trainer

    start = time.perf_counter()
    dataset = synthetic_dataset(n_ratings, seed=0)
    result = {"data_seconds": time.perf_counter() - start, "mib_data": reset_peak()}
    result.update(n_users=dataset.n_users, n_items=dataset.n_items, n_train=len(dataset.train))

    single = n_ratings >= SINGLE_RUN_FROM
    n_epochs = large_epochs if single else 4
    config = TrainConfig(
        schedule="fixed",
        alpha=1.0,
        beta=0.1,
        embedding_dim=64,
        batch_size=batch_size,
        optimizer=optimizer,
        max_epochs=n_epochs,
        seed=0,
    )
    start = time.perf_counter()
    trainer = Trainer(config, dataset)
    result["trainer_build_seconds"] = time.perf_counter() - start
    result["peak_mib_trainer_build"] = peak_mib()
    result["mib_trainer"] = reset_peak()

    seconds = []
    for _ in range(n_epochs):
        start = time.perf_counter()
        trainer.run_epoch(evaluate=False)
        seconds.append(time.perf_counter() - start)
    timed = seconds if single else seconds[1:]
    result["epoch_seconds"] = timed
    result["median_epoch_seconds"] = median(timed)
    result["seconds_per_rating"] = median(timed) / len(dataset.train)
    result["peak_mib_training"] = peak_mib()
    return result


def evaluate_worker(n_ratings: int) -> dict:
    """Build the validation Evaluator on ``n_ratings`` synthetic ratings and time it."""
    import torch

    from tune_rec.data.synthetic import synthetic_dataset
    from tune_rec.metrics import Evaluator

    torch.set_num_threads(1)
    dataset = synthetic_dataset(n_ratings, seed=0)
    result = {"mib_data": reset_peak()}
    held_out = np.bincount(dataset.validation.users, minlength=dataset.n_users)

    start = time.perf_counter()
    evaluator = Evaluator(dataset, split="validation")
    result["build_seconds"] = time.perf_counter() - start
    result["peak_mib_build"] = peak_mib()
    result["n_users_evaluated"] = evaluator.n_users_evaluated
    result["max_validation_per_user"] = int(held_out.max())
    result["rated_padded_entries"] = evaluator.n_users_evaluated * int(held_out.max())
    result["full_chunk_size"] = evaluator.chunk_size

    generator = torch.Generator().manual_seed(0)
    factors = (
        0.05 * torch.randn(dataset.n_users, 64, generator=generator),
        0.05 * torch.randn(dataset.n_items, 64, generator=generator),
        0.05 * torch.randn(dataset.n_users, generator=generator),
        0.05 * torch.randn(dataset.n_items, generator=generator),
    )
    result["mib_before_evaluate"] = reset_peak()
    single = n_ratings >= SINGLE_RUN_FROM
    # Memory that a step frees can stay resident and hide a later step's peak, so each protocol
    # is measured before the two together, the full protocol (bounded by its chunks) first.
    for protocols in (("full",), ("rated",), ("rated", "full")):
        name = "+".join(protocols)
        reset_peak()
        seconds = []
        for _ in range(1 if single else 3):
            start = time.perf_counter()
            evaluator.evaluate(*factors, protocols=protocols)
            seconds.append(time.perf_counter() - start)
        result[f"{name}_seconds"] = median(seconds if single else seconds[1:])
        result[f"peak_mib_{name}"] = peak_mib()
    return result


def run_worker(
    kind: str, n_ratings: int, batch_size: int, optimizer: str, large_epochs: int = 1
) -> dict:
    """Run one worker in a fresh process and return its JSON result."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--n-ratings",
        str(n_ratings),
        "--batch-size",
        str(batch_size),
        "--optimizer",
        optimizer,
        "--large-epochs",
        str(large_epochs),
    ]
    wall, process = run_command(command)
    result = json.loads(process.stdout.strip().splitlines()[-1])
    result["process_seconds"] = wall
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="100000,1000000,10000000",
        help="comma-separated numbers of ratings (default 10**5, 10**6, 10**7)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="ratings per step (default 1024); another value writes bench_scale_batch<N>.json",
    )
    parser.add_argument(
        "--optimizer",
        choices=("adam", "sparse_adam"),
        default="adam",
        help="the training config's optimizer (default adam); sparse_adam writes "
        "bench_scale_sparse_adam.json",
    )
    parser.add_argument(
        "--large-epochs",
        type=int,
        default=1,
        help="timed epochs from 10**7 ratings up, the median is reported (default 1)",
    )
    parser.add_argument("--smoke", action="store_true", help="20,000 and 40,000 ratings")
    parser.add_argument("--worker", choices=("train", "evaluate"), help=argparse.SUPPRESS)
    parser.add_argument("--n-ratings", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "train":
        print(
            json.dumps(
                train_worker(args.n_ratings, args.batch_size, args.optimizer, args.large_epochs)
            )
        )
        return 0
    if args.worker == "evaluate":
        print(json.dumps(evaluate_worker(args.n_ratings)))
        return 0

    sizes = [20_000, 40_000] if args.smoke else [int(size) for size in args.sizes.split(",")]
    rows = []
    for n_ratings in sizes:
        train = run_worker("train", n_ratings, args.batch_size, args.optimizer, args.large_epochs)
        evaluation = run_worker("evaluate", n_ratings, args.batch_size, args.optimizer)
        rows.append({"n_ratings": n_ratings, "train": train, "evaluate": evaluation})
        print(
            f"{n_ratings:>9,} ratings: {train['n_users']:,} users x {train['n_items']:,} items; "
            f"epoch {train['median_epoch_seconds']:.3f} s = "
            f"{1e6 * train['seconds_per_rating']:.2f} us per training rating; "
            f"evaluation (both protocols) {evaluation['rated+full_seconds']:.3f} s",
            flush=True,
        )

    print("\nMemory in MiB: resident after the data is built, then each step's peak above it.")
    print(
        f"{'ratings':>11}{'users':>9}{'items':>8}{'epoch s':>9}{'us/rating':>10}"
        f"{'eval s':>8}{'rated s':>8}{'full s':>8}{'data':>7}{'+train':>8}{'+rated':>8}"
        f"{'+full':>7}{'rated padding':>15}"
    )
    for row in rows:
        train, evaluation = row["train"], row["evaluate"]
        padded = f"{evaluation['n_users_evaluated']}x{evaluation['max_validation_per_user']}"
        base = evaluation["mib_before_evaluate"]
        print(
            f"{row['n_ratings']:>11,}{train['n_users']:>9,}{train['n_items']:>8,}"
            f"{train['median_epoch_seconds']:>9.3f}{1e6 * train['seconds_per_rating']:>10.2f}"
            f"{evaluation['rated+full_seconds']:>8.3f}{evaluation['rated_seconds']:>8.3f}"
            f"{evaluation['full_seconds']:>8.3f}{train['mib_data']:>7.0f}"
            f"{train['peak_mib_training'] - train['mib_trainer']:>8.0f}"
            f"{evaluation['peak_mib_rated'] - base:>8.0f}"
            f"{evaluation['peak_mib_full'] - base:>7.0f}{padded:>15}"
        )
    first, last = rows[0]["train"], rows[-1]["train"]
    cost_ratio = last["seconds_per_rating"] / first["seconds_per_rating"]
    print(
        f"cost per training rating, {rows[-1]['n_ratings']:,} / {rows[0]['n_ratings']:,}: "
        f"{cost_ratio:.2f} (target at most {TARGET_COST_RATIO})"
    )
    suffix = "" if args.batch_size == DEFAULT_BATCH_SIZE else f"_batch{args.batch_size}"
    if args.optimizer != "adam":
        suffix += f"_{args.optimizer}"
    write_json(
        f"bench_scale{suffix}",
        {
            "sizes": sizes,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "smoke": args.smoke,
            "large_epochs": args.large_epochs,
            "cost_ratio_last_over_first": cost_ratio,
            "target_cost_ratio": TARGET_COST_RATIO,
            "rows": rows,
            "repository": str(REPOSITORY),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
