"""Parameter importances from trials.parquet and from optuna.db."""

from __future__ import annotations

import importlib.util

import optuna
import pandas as pd
import pytest

from tune_rec.report.importance import _distribution_from_spec, compute_importances
from tune_rec.report.reader import load_experiment

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None


def _all_finished(make_experiment, n_trials: int = 40, **kwargs):
    return make_experiment(
        n_trials=n_trials,
        max_epochs=6,
        n_epochs=[6] * n_trials,
        statuses=["finished"] * n_trials,
        **kwargs,
    )


def test_importances_from_trials(make_experiment) -> None:
    experiment = load_experiment(_all_finished(make_experiment))

    importances = compute_importances(experiment)

    assert importances.source == "trials.parquet"
    assert importances.method in {"fANOVA", "PED-ANOVA"}
    assert importances.n_trials == 40
    assert sum(importances.values.values()) == pytest.approx(1.0)
    assert list(importances.values)[0] == "lr"
    assert "max_epochs" not in importances.values


def test_distribution_merges_alternatives_bounds() -> None:
    spec = [_alternative("uniform", low=0.0, high=0.5), _alternative("uniform", low=1.0, high=2)]

    distribution = _distribution_from_spec(spec)

    assert (distribution.low, distribution.high) == (0.0, 2.0)


def test_distribution_merges_alternatives_choices() -> None:
    spec = [_alternative("choice", values=[1, 2]), _alternative("choice", values=[2, 3])]

    assert _distribution_from_spec(spec).choices == (1, 2, 3)


def test_importances_leave_out_conditional_params(make_experiment) -> None:
    experiment = load_experiment(_all_finished(make_experiment))

    importances = compute_importances(experiment)

    assert "alpha" not in importances.values
    assert any("set in only some trials: alpha" in note for note in importances.notes)


def test_importances_leave_out_constant_params(make_experiment) -> None:
    path = _all_finished(make_experiment, n_trials=10)
    trials = pd.read_parquet(path / "trials.parquet")
    trials["config.embedding_dim"] = 32
    trials.to_parquet(path / "trials.parquet")

    importances = compute_importances(load_experiment(path))

    assert "embedding_dim" not in importances.values
    assert "lr" in importances.values


@pytest.mark.skipif(HAS_SKLEARN, reason="fANOVA works where scikit-learn is installed")
def test_importances_fall_back_without_sklearn(make_experiment) -> None:
    importances = compute_importances(load_experiment(_all_finished(make_experiment, 10)))

    assert importances.method == "PED-ANOVA"
    assert any("needs scikit-learn" in note for note in importances.notes)


def test_importances_need_two_finished_trials(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4, statuses=["finished", "stopped", "running"])

    importances = compute_importances(load_experiment(path))

    assert importances.values == {}
    assert importances.method == "none"
    assert any("need at least 2 finished trials" in note for note in importances.notes)


def test_importances_without_trials_file(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4, write_trials=False)

    importances = compute_importances(load_experiment(path))

    assert importances.values == {}


def test_importances_from_optuna_db(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4)
    storage = f"sqlite:///{path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, direction="maximize", study_name="search")
    distributions = {
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
        "beta": optuna.distributions.FloatDistribution(0.0, 1.0),
    }
    for index in range(12):
        lr = 10 ** (-4 + 3 * index / 11)
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr, "beta": (index * 7 % 12) / 12},
                distributions=distributions,
                value=-abs(index - 6),
            )
        )
    before = (path / "optuna.db").read_bytes()

    importances = compute_importances(load_experiment(path))

    assert importances.source == "optuna.db"
    assert importances.n_trials == 12
    assert set(importances.values) == {"lr", "beta"}
    assert list(importances.values)[0] == "lr"
    assert (path / "optuna.db").read_bytes() == before


def test_importances_unreadable_optuna_db_falls_back(make_experiment) -> None:
    path = _all_finished(make_experiment, n_trials=6)
    (path / "optuna.db").write_bytes(b"not a database")

    importances = compute_importances(load_experiment(path))

    assert importances.source == "trials.parquet"
    assert any("optuna.db could not be read" in note for note in importances.notes)
    assert importances.values


def _alternative(distribution: str, **fields) -> dict:
    return {"when": {}, "distribution": distribution, **fields}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ([_alternative("loguniform", low=1e-4, high=1e-1)], "FloatDistribution(log)"),
        ([_alternative("uniform", low=0.0, high=2.0)], "FloatDistribution"),
        ([_alternative("quniform", low=0.0, high=2.0, q=0.5)], "FloatDistribution"),
        ([_alternative("randint", low=8, high=64)], "IntDistribution"),
        ([_alternative("lograndint", low=8, high=64)], "IntDistribution(log)"),
        ([_alternative("choice", values=[16, 32])], "CategoricalDistribution"),
        ([_alternative("grid", values=[16, 32])], "CategoricalDistribution"),
        ([{"when": {}, "value": 1024}], None),
        ([_alternative("uniform", low=1.0, high=1.0)], None),
        (
            [
                _alternative("uniform", low=0.0, high=0.5),
                _alternative("loguniform", low=0.05, high=2.0),
            ],
            "FloatDistribution",
        ),
        (
            [
                _alternative("loguniform", low=1e-3, high=1e-2),
                _alternative("loguniform", low=1e-2, high=1e-1),
            ],
            "FloatDistribution(log)",
        ),
        ([_alternative("uniform", low=0.0, high=0.5), _alternative("choice", values=[1])], None),
        ({"type": "loguniform", "low": 1e-4, "high": 1e-1}, "FloatDistribution(log)"),
        ([0.1, 0.2], "CategoricalDistribution"),
        (0.1, None),
    ],
)
def test_distribution_from_spec(spec, expected: str | None) -> None:
    distribution = _distribution_from_spec(spec)

    if expected is None:
        assert distribution is None
    else:
        name = type(distribution).__name__
        if getattr(distribution, "log", False):
            name += "(log)"
        assert name == expected
