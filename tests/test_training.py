import subprocess
import sys

import numpy as np
import pytest
import torch

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.data import load_dataset
from tune_rec.errors import NonFiniteLossError
from tune_rec.metrics import Evaluator
from tune_rec.model import LossWeights
from tune_rec.training import PairSet, Trainer, pack_batches, sample_negatives


@pytest.fixture(scope="module")
def dataset(ml100k_dir):
    return load_dataset(DataSettings(), seed=0, data_dir=ml100k_dir)


def _config(**overrides):
    values = {"schedule": "fixed", "alpha": 1.0, "beta": 0.1, "max_epochs": 3, "seed": 0}
    return TrainConfig(**(values | overrides))


def test_sample_negatives_avoids_training_items():
    n_items = 6
    users = torch.tensor([0, 0, 0, 1, 1] * 200)
    items = torch.tensor([0, 1, 2, 3, 4] * 200)
    keys = torch.unique(users * n_items + items)
    negatives = sample_negatives(users, keys, n_items, torch.Generator().manual_seed(0))
    rated = {(0, 0), (0, 1), (0, 2), (1, 3), (1, 4)}
    pairs = set(zip(users.tolist(), negatives.tolist(), strict=True))
    assert not pairs & rated
    assert {item for user, item in pairs if user == 0} == {3, 4, 5}


def test_sample_negatives_user_with_every_item():
    users = torch.tensor([0, 0])
    keys = torch.tensor([0, 1])
    negatives = sample_negatives(users, keys, 2, torch.Generator().manual_seed(0))
    assert negatives.shape == (2,)


def test_records_follow_schedule(dataset):
    config = _config(schedule="increase", alpha=None, alpha_start=0.0, alpha_end=1.0)
    records = list(Trainer(config, dataset).epochs())
    assert [r.epoch for r in records] == [0, 1, 2]
    assert [r.alpha for r in records] == [0.0, 0.5, 1.0]
    for record in records:
        assert np.isfinite(record.loss_embedding)
        assert np.isfinite(record.loss_ranking)
        assert record.metrics["full_map@10"] >= 0
        assert record.epoch_seconds > 0
    expected_target = 0.5 * records[1].loss_embedding + 0.1 * records[1].loss_ranking
    # The target also holds the L2 term, so it is above the weighted sum of the two losses.
    assert records[1].loss_target > expected_target


@pytest.mark.parametrize("optimizer", ["adam", "sparse_adam"])
def test_same_seed_same_numbers(dataset, optimizer):
    first = [r.as_dict() for r in Trainer(_config(optimizer=optimizer), dataset).epochs()]
    second = [r.as_dict() for r in Trainer(_config(optimizer=optimizer), dataset).epochs()]
    for a, b in zip(first, second, strict=True):
        a.pop("epoch_seconds"), b.pop("epoch_seconds")
        assert a == b


def test_other_seed_other_numbers(dataset):
    first = Trainer(_config(seed=0), dataset).fit()
    second = Trainer(_config(seed=1), dataset).fit()
    assert first.loss_target != second.loss_target


@pytest.mark.parametrize("optimizer", ["adam", "sparse_adam"])
def test_state_dict_resumes_exactly(dataset, optimizer, tmp_path):
    config = _config(max_epochs=4, optimizer=optimizer)
    straight = Trainer(config, dataset).fit()
    interrupted = Trainer(config, dataset)
    interrupted.run_epoch()
    interrupted.run_epoch()
    torch.save(interrupted.state_dict(), tmp_path / "trainer.pt")
    state = torch.load(tmp_path / "trainer.pt", weights_only=True)
    resumed = Trainer(config, dataset)
    resumed.load_state_dict(state)
    record = resumed.fit()
    assert record.epoch == 3
    assert record.loss_target == straight.loss_target
    assert record.metrics["map@10"] == straight.metrics["map@10"]


def test_fit_evaluates_last_epoch_only(dataset, monkeypatch):
    trainer = Trainer(_config(max_epochs=3), dataset)
    evaluated = []
    evaluate = trainer.evaluate

    def counting_evaluate(*args, **kwargs):
        evaluated.append(trainer.epoch)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", counting_evaluate)
    record = trainer.fit()
    every_epoch = list(Trainer(_config(max_epochs=3), dataset).epochs())
    assert evaluated == [2]
    assert record.epoch == 2
    assert record.metrics["map@10"] == every_epoch[-1].metrics["map@10"]


def test_fit_at_budget_raises(dataset):
    trainer = Trainer(_config(max_epochs=1), dataset)
    trainer.fit()
    with pytest.raises(ValueError, match="already the budget"):
        trainer.fit()


def test_diverging_loss_raises(dataset):
    trainer = Trainer(_config(lr=1e20, alpha=1e10), dataset)
    with pytest.raises(NonFiniteLossError, match=r"became (nan|inf) at epoch \d"):
        trainer.fit()


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sparse_adam"])
def test_fixed_alpha_beats_item_mean(dataset, optimizer):
    """Quality floor: the study's fixed setting beats ranking by item mean rating."""
    config = _config(max_epochs=20, protocol="rated", optimizer=optimizer)
    trained = Trainer(config, dataset).fit().metrics["map@10"]

    train = dataset.train
    sums = np.bincount(train.items, weights=train.ratings, minlength=dataset.n_items)
    counts = np.bincount(train.items, minlength=dataset.n_items)
    item_mean = np.where(counts > 0, sums / np.maximum(counts, 1), dataset.global_mean)
    evaluator = Evaluator(dataset, split="validation", relevance_threshold=4.0)
    baseline = evaluator.evaluate(
        torch.zeros(dataset.n_users, 1),
        torch.zeros(dataset.n_items, 1),
        torch.zeros(dataset.n_users),
        torch.as_tensor(item_mean, dtype=torch.float32),
        protocols=("rated",),
    )["map@10"]
    assert baseline > 0.6
    assert trained > baseline


def test_pair_set_bitset_matches_binary_search():
    generator = torch.Generator().manual_seed(0)
    keys = torch.unique(torch.randint(40 * 30, (300,), generator=generator))
    queries = torch.randint(40 * 30, (2000,), generator=generator)
    with_bitset = PairSet.from_keys(keys[torch.randperm(keys.numel(), generator=generator)], 1200)
    without = PairSet(torch.sort(keys).values)
    assert with_bitset.bits is not None
    assert without.bits is None
    expected = torch.isin(queries, keys)
    assert torch.equal(with_bitset.contains(queries), expected)
    assert torch.equal(without.contains(queries), expected)


def test_pair_set_large_sparse_keeps_binary_search(monkeypatch):
    monkeypatch.setattr("tune_rec.training._BITSET_MAX_BYTES", 16)
    keys = torch.tensor([5, 900, 4000])
    pairs = PairSet.from_keys(keys, 10_000)
    assert pairs.bits is None
    assert pairs.contains(torch.tensor([5, 6, 4000])).tolist() == [True, False, True]


def test_pair_set_empty_contains_nothing():
    pairs = PairSet(torch.zeros(0, dtype=torch.int64))
    assert not pairs.contains(torch.tensor([0, 3])).any()


def test_sample_negatives_pair_set_same_draws():
    users = torch.tensor([0, 1, 2, 1, 0] * 50)
    items = torch.tensor([1, 2, 0, 3, 4] * 50)
    keys = torch.unique(users * 5 + items)
    from_keys = sample_negatives(users, keys, 5, torch.Generator().manual_seed(3))
    from_set = sample_negatives(
        users, PairSet.from_keys(keys, 15), 5, torch.Generator().manual_seed(3)
    )
    assert torch.equal(from_keys, from_set)


def test_pack_batches_layout():
    items = torch.arange(5)
    negatives = torch.arange(10, 15)
    batches = pack_batches(items, negatives, batch_size=2)
    assert [batch.tolist() for batch in batches] == [[0, 1, 10, 11], [2, 3, 12, 13], [4, 14]]


def test_pack_batches_one_short_batch():
    batches = pack_batches(torch.arange(3), torch.arange(3) + 5, batch_size=8)
    assert [batch.tolist() for batch in batches] == [[0, 1, 2, 5, 6, 7]]


def test_run_epoch_without_evaluation(dataset):
    trainer = Trainer(_config(), dataset)
    record = trainer.run_epoch(evaluate=False)
    assert record.metrics == {}
    assert trainer.epoch == 1
    assert np.isfinite(record.loss_target)


def test_evaluation_leaves_training_unchanged(dataset):
    evaluated = Trainer(_config(), dataset)
    skipped = Trainer(_config(), dataset)
    for _ in range(2):
        with_metrics = evaluated.run_epoch()
        without = skipped.run_epoch(evaluate=False)
        assert with_metrics.loss_target == without.loss_target


def test_state_of_other_optimizer_rejected(dataset):
    state = Trainer(_config(optimizer="adam"), dataset).state_dict()
    with pytest.raises(ValueError, match="'adam', not 'sparse_adam'"):
        Trainer(_config(optimizer="sparse_adam"), dataset).load_state_dict(state)


def test_sparse_adam_leaves_untouched_rows(dataset):
    """One batch moves only the rows that it gathers, and their moments."""
    trainer = Trainer(_config(optimizer="sparse_adam", batch_size=64), dataset)
    before = trainer.model.item_factors.detach().clone()
    users = torch.tensor([0, 1])
    items = torch.tensor([5, 7, 9, 9])
    rows = trainer.model.row_gradients(
        users, items, torch.zeros(2), LossWeights(alpha=1.0, beta=0.1, l2=0.05)
    )
    trainer.optimizer.step_rows((users, items) * 2, rows[:4])
    after = trainer.model.item_factors.detach()
    changed = (after != before).any(dim=1).nonzero().squeeze(1).tolist()
    assert changed == [5, 7, 9]
    moments = trainer.optimizer.exp_avg[1].abs().sum(dim=1).nonzero().squeeze(1).tolist()
    assert moments == [5, 7, 9]


def test_training_imports_no_dynamo(ml100k_dir):
    """Building and stepping a trainer does not import torch._dynamo (seconds per process)."""
    code = (
        "import sys\n"
        "from tune_rec.config import DataSettings, TrainConfig\n"
        "from tune_rec.data import load_dataset\n"
        "from tune_rec.training import Trainer\n"
        f"dataset = load_dataset(DataSettings(), seed=0, data_dir={str(ml100k_dir)!r})\n"
        "for optimizer in ('adam', 'sparse_adam'):\n"
        "    config = TrainConfig(alpha=1.0, max_epochs=1, optimizer=optimizer)\n"
        "    trainer = Trainer(config, dataset)\n"
        "    trainer.fit()\n"
        "    trainer.load_state_dict(trainer.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
