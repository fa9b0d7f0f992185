import numpy as np
import pytest
import torch

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.data import load_dataset
from tune_rec.errors import NonFiniteLossError
from tune_rec.metrics import Evaluator
from tune_rec.training import Trainer, sample_negatives


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


def test_same_seed_same_numbers(dataset):
    first = [r.as_dict() for r in Trainer(_config(), dataset).epochs()]
    second = [r.as_dict() for r in Trainer(_config(), dataset).epochs()]
    for a, b in zip(first, second, strict=True):
        a.pop("epoch_seconds"), b.pop("epoch_seconds")
        assert a == b


def test_other_seed_other_numbers(dataset):
    first = Trainer(_config(seed=0), dataset).fit()
    second = Trainer(_config(seed=1), dataset).fit()
    assert first.loss_target != second.loss_target


def test_state_dict_resumes_exactly(dataset):
    straight = Trainer(_config(max_epochs=4), dataset).fit()
    interrupted = Trainer(_config(max_epochs=4), dataset)
    interrupted.run_epoch()
    interrupted.run_epoch()
    state = interrupted.state_dict()
    resumed = Trainer(_config(max_epochs=4), dataset)
    resumed.load_state_dict(state)
    record = resumed.fit()
    assert record.epoch == 3
    assert record.loss_target == straight.loss_target
    assert record.metrics["map@10"] == straight.metrics["map@10"]


def test_diverging_loss_raises(dataset):
    trainer = Trainer(_config(lr=1e20, alpha=1e10), dataset)
    with pytest.raises(NonFiniteLossError, match=r"became (nan|inf) at epoch \d"):
        trainer.fit()


@pytest.mark.slow
def test_fixed_alpha_beats_item_mean(dataset):
    """Quality floor: the study's fixed setting beats ranking by item mean rating."""
    config = _config(max_epochs=20, protocol="rated")
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
