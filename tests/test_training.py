import numpy as np
import pytest
import torch

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.data import load_dataset
from tune_rec.errors import NonFiniteLossError
from tune_rec.metrics import Evaluator
from tune_rec.training import FusedAdamStep, PairSet, Trainer, pack_batches, sample_negatives


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


def _adam_pair(seed):
    generator = torch.Generator().manual_seed(seed)
    parameters = [torch.nn.Parameter(torch.randn(7, 3, generator=generator)) for _ in range(2)]
    return parameters, torch.optim.Adam(parameters, lr=0.05, fused=True)


def test_fused_adam_step_bit_identical():
    fast_parameters, fast_optimizer = _adam_pair(0)
    plain_parameters, plain_optimizer = _adam_pair(0)
    step = FusedAdamStep(fast_optimizer)
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):
        gradients = [torch.randn(7, 3, generator=generator) for _ in range(2)]
        for parameter, gradient in zip(fast_parameters, gradients, strict=True):
            parameter.grad = gradient.clone()
        for parameter, gradient in zip(plain_parameters, gradients, strict=True):
            parameter.grad = gradient.clone()
        step()
        plain_optimizer.step()
    for fast, plain in zip(fast_parameters, plain_parameters, strict=True):
        assert torch.equal(fast, plain)
    fast_state = fast_optimizer.state_dict()["state"]
    plain_state = plain_optimizer.state_dict()["state"]
    for key in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(fast_state[0][key], plain_state[0][key])


def test_fused_adam_step_falls_back_for_amsgrad():
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.Adam([parameter], lr=0.1, fused=True, amsgrad=True)
    step = FusedAdamStep(optimizer)
    parameter.grad = torch.ones(3)
    step()
    step()
    assert "max_exp_avg_sq" in optimizer.state[parameter]
    assert optimizer.state[parameter]["step"].item() == 2


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
