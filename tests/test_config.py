import pytest
from pydantic import ValidationError

from tune_rec.config import SEARCHABLE_KEYS, DataSettings, TrainConfig


def test_fixed_needs_alpha():
    with pytest.raises(ValidationError, match="schedule 'fixed' needs alpha; missing alpha"):
        TrainConfig(schedule="fixed")


def test_increase_needs_rising_ends():
    with pytest.raises(ValidationError, match="alpha_start < alpha_end; got 1.0 and 0.5"):
        TrainConfig(schedule="increase", alpha_start=1.0, alpha_end=0.5)


def test_decrease_needs_falling_ends():
    with pytest.raises(ValidationError, match="alpha_start > alpha_end; got 0.1 and 0.5"):
        TrainConfig(schedule="decrease", alpha_start=0.1, alpha_end=0.5)


def test_exponential_needs_positive_ends():
    with pytest.raises(ValidationError, match="above 0; got 0.0 and 1.0"):
        TrainConfig(schedule="exponential", alpha_start=0.0, alpha_end=1.0)


def test_unknown_key_rejected():
    with pytest.raises(ValidationError, match="learning_rate"):
        TrainConfig(alpha=1.0, learning_rate=0.1)


def test_negative_lr_rejected():
    with pytest.raises(ValidationError, match="lr"):
        TrainConfig(alpha=1.0, lr=-0.1)


def test_schedule_params_of_step():
    config = TrainConfig(schedule="step", alpha_start=0.0, alpha_end=1.0, warmup_epochs=2)
    assert config.schedule_params() == {"alpha_start": 0.0, "alpha_end": 1.0, "warmup_epochs": 2}


def test_fractions_must_leave_train():
    with pytest.raises(ValidationError, match="must be below 1"):
        DataSettings(test_fraction=0.6, validation_fraction=0.5)


def test_experiment_keys_not_searchable():
    for key in ("seed", "max_epochs", "protocol", "normalisation"):
        assert key not in SEARCHABLE_KEYS
