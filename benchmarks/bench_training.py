"""Time one training epoch on MovieLens-100K: tune-rec's loop against a plain autograd loop.

Run from the repository root:

    python benchmarks/bench_training.py            # 30 timed epochs per case
    python benchmarks/bench_training.py --smoke    # 2 timed epochs per case, 20,000 ratings

Config: batch 1024, embedding 64, alpha 1, beta 0.1, l2 0.05, lr 0.01, one torch thread. Four
cases take turns, one epoch each, after one warm-up epoch each, so that a change in the
machine's load hits all of them:

- ``tune-rec, training only``: ``Trainer.run_epoch(evaluate=False)``: shuffling, negative
  sampling, closed-form gradients and the fused Adam step.
- ``tune-rec, with evaluation``: ``Trainer.run_epoch()``, which adds both protocols' validation
  metrics.
- ``tune-rec, sparse_adam``: training only, with ``optimizer: sparse_adam``, which moves only
  the rows of each batch.
- ``autograd``: the same shuffling and negatives, then per batch ``model.batch_losses``,
  ``loss.backward()`` and a default ``torch.optim.Adam``: what a plain PyTorch loop does.

The data is $TUNE_REC_DATA_DIR/ml-100k/u.data, split with seed 0, or synthetic ratings of its
shape without it. The smoke run uses 20,000 synthetic ratings. Prints the median and the 10th
and 90th percentiles of each case's epoch time, and the ratio of the autograd loop's median to
tune-rec's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, ml100k_or_synthetic, percentile, write_json  # noqa: E402

from tune_rec.config import TrainConfig  # noqa: E402
from tune_rec.data.dataset import Dataset  # noqa: E402
from tune_rec.data.synthetic import synthetic_dataset  # noqa: E402
from tune_rec.model import JointLossModel  # noqa: E402
from tune_rec.training import PairSet, Trainer, sample_negatives  # noqa: E402

TARGET_SECONDS = 0.1


class AutogradLoop:
    """The model trained by autograd and a default ``torch.optim.Adam``, one epoch a call."""

    def __init__(self, config: TrainConfig, dataset: Dataset) -> None:
        self.config = config
        self.dataset = dataset
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model = JointLossModel(
            dataset.n_users,
            dataset.n_items,
            config.embedding_dim,
            dataset.global_mean,
            config.init_std,
            self.generator,
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.users = torch.tensor(dataset.train.users, dtype=torch.int64)
        self.items = torch.tensor(dataset.train.items, dtype=torch.int64)
        self.ratings = torch.tensor(dataset.train.ratings, dtype=torch.float32)
        self.positives = PairSet.from_keys(
            self.users * dataset.n_items + self.items, dataset.n_users * dataset.n_items
        )

    def run_epoch(self) -> float:
        """Train one epoch and return the mean target loss."""
        config = self.config
        order = torch.randperm(self.users.shape[0], generator=self.generator)
        users, items, ratings = self.users[order], self.items[order], self.ratings[order]
        negatives = sample_negatives(users, self.positives, self.dataset.n_items, self.generator)
        total = torch.zeros(())
        for start in range(0, users.shape[0], config.batch_size):
            batch = slice(start, start + config.batch_size)
            losses = self.model.batch_losses(
                users[batch], items[batch], ratings[batch], negatives[batch]
            )
            target = (
                config.alpha * losses.embedding
                + config.beta * losses.ranking
                + config.l2 * losses.regularisation
            )
            self.optimizer.zero_grad()
            target.backward()
            self.optimizer.step()
            total += target.detach() * min(config.batch_size, users.shape[0] - start)
        return float(total) / users.shape[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30, help="timed epochs per case")
    parser.add_argument("--smoke", action="store_true", help="2 epochs on 20,000 ratings")
    args = parser.parse_args(argv)
    n_epochs = 2 if args.smoke else args.epochs

    if args.smoke:
        dataset, source = synthetic_dataset(20_000, seed=0), "synthetic-20000"
    else:
        dataset, source = ml100k_or_synthetic()
    config = TrainConfig(
        schedule="fixed",
        alpha=1.0,
        beta=0.1,
        l2=0.05,
        lr=0.01,
        embedding_dim=64,
        batch_size=1024,
        max_epochs=n_epochs + 1,
        seed=0,
    )
    # Trainer sets one intra-op thread for the whole process, the autograd loop included.
    training_only = Trainer(config, dataset)
    with_evaluation = Trainer(config, dataset)
    sparse = Trainer(config.model_copy(update={"optimizer": "sparse_adam"}), dataset)
    autograd = AutogradLoop(config, dataset)
    cases = {
        "tune-rec, training only": lambda: training_only.run_epoch(evaluate=False),
        "tune-rec, with evaluation": with_evaluation.run_epoch,
        "tune-rec, sparse_adam": lambda: sparse.run_epoch(evaluate=False),
        "autograd": autograd.run_epoch,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for epoch in range(n_epochs + 1):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            if epoch > 0:  # the first epoch of each case is a warm-up
                times[name].append(time.perf_counter() - start)

    print(
        f"data: {source}, {len(dataset.train)} training ratings; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread; {n_epochs} timed epochs per case; seconds"
    )
    print(f"{'case':<28}{'median':>9}{'p10':>9}{'p90':>9}")
    results = {}
    for name, values in times.items():
        results[name] = {
            "median_seconds": median(values),
            "p10_seconds": percentile(values, 0.1),
            "p90_seconds": percentile(values, 0.9),
            "seconds": values,
        }
        print(
            f"{name:<28}{results[name]['median_seconds']:>9.4f}"
            f"{results[name]['p10_seconds']:>9.4f}{results[name]['p90_seconds']:>9.4f}"
        )
    training = results["tune-rec, training only"]["median_seconds"]
    evaluation = results["tune-rec, with evaluation"]["median_seconds"]
    ratio = results["autograd"]["median_seconds"] / training
    print(f"autograd / tune-rec (training only): {ratio:.2f}")
    print(f"evaluation share of an epoch: {(evaluation - training) / evaluation:.0%}")
    print(
        f"target: at most {TARGET_SECONDS} s per epoch; training only "
        f"{'meets' if training <= TARGET_SECONDS else 'misses'} it, with evaluation "
        f"{'meets' if evaluation <= TARGET_SECONDS else 'misses'} it"
    )
    write_json(
        "bench_training",
        {
            "data": source,
            "n_train": len(dataset.train),
            "n_epochs": n_epochs,
            "smoke": args.smoke,
            "config": config.model_dump(),
            "target_seconds": TARGET_SECONDS,
            "cases": results,
            "autograd_over_training_only": ratio,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
