"""Tests of the search-space schema, its checks, and sampling through real Optuna studies."""

from __future__ import annotations

import copy
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution, IntDistribution

from tune_rec.config import TrainConfig
from tune_rec.errors import InvalidInputError
from tune_rec.schedules import SCHEDULE_PARAMS, SCHEDULE_TYPES
from tune_rec.space import (
    METRIC_MODES,
    REPORTED_METRICS,
    SearchSpace,
    load_search_space,
    parse_search_space,
)

SPACES_DIR = Path(__file__).resolve().parents[1] / "search_spaces"
ALPHA_YAML = SPACES_DIR / "alpha.yaml"
PAPER_YAML = SPACES_DIR / "paper.yaml"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _base() -> dict[str, Any]:
    """Return a small valid space: fixed and increase schedules, lr and embedding size."""
    return {
        "metric": "map@10",
        "max_epochs": 10,
        "num_samples": 4,
        "params": {
            "schedule": {"distribution": "choice", "values": ["fixed", "increase"]},
            "alpha": {
                "distribution": "uniform",
                "low": 0.1,
                "high": 2.0,
                "when": {"schedule": "fixed"},
            },
            "alpha_start": {
                "distribution": "uniform",
                "low": 0.0,
                "high": 0.5,
                "when": {"schedule": "increase"},
            },
            "alpha_end": {
                "distribution": "uniform",
                "low": 1.0,
                "high": 2.0,
                "when": {"schedule": "increase"},
            },
            "lr": {"distribution": "loguniform", "low": 0.001, "high": 0.05},
            "embedding_dim": {"distribution": "choice", "values": [32, 64]},
            "batch_size": 1024,
        },
    }


def _space(top: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    """Return the base space with top-level keys and params replaced (None deletes a param)."""
    data = _base()
    data.update(copy.deepcopy(top or {}))
    for key, value in params.items():
        if value is None:
            data["params"].pop(key, None)
        else:
            data["params"][key] = copy.deepcopy(value)
    return data


def _uniform(low: float, high: float, **when: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"distribution": "uniform", "low": low, "high": high}
    if when:
        entry["when"] = when
    return entry


def _grid_space(**params: Any) -> dict[str, Any]:
    """Return a grid-searchable variant of the base space, with params replaced."""
    grid_params: dict[str, Any] = {
        "schedule": {"distribution": "grid", "values": ["fixed", "increase"]},
        "alpha": {"value": 1.0, "when": {"schedule": "fixed"}},
        "alpha_start": {"value": 0.0, "when": {"schedule": "increase"}},
        "alpha_end": {"value": 1.0, "when": {"schedule": "increase"}},
        "lr": 0.01,
        "embedding_dim": 64,
    }
    grid_params.update(params)
    return _space({"searcher": {"type": "grid"}, "num_samples": None}, **grid_params)


INVALID_CASES = [
    # (id, data, path, value): the message must name the path and, on the same line, the value.
    ("unknown top-level key", _space({"metrc": "map@10"}), "metrc", "'map@10'"),
    (
        "unknown param key",
        _space(lr={"distribution": "loguniform", "low": 0.001, "hgh": 0.05, "high": 0.1}),
        "params.lr.hgh",
        "0.05",
    ),
    (
        "unknown searcher key",
        _space({"searcher": {"type": "tpe", "n_startup": 3}}),
        "searcher.n_startup",
        "3",
    ),
    (
        "unknown scheduler key",
        _space({"scheduler": {"type": "asha", "grace": 2}}),
        "scheduler.grace",
        "2",
    ),
    (
        "unknown resources key",
        _space({"resources": {"gpus": 1}}),
        "resources.gpus",
        "1",
    ),
    ("unknown data key", _space({"data": {"splt": "random"}}), "data.splt", "'random'"),
    (
        "unknown when key inside alternative",
        _space(alpha_start=[{**_uniform(0.0, 0.5, schedule="increase"), "whn": 1}]),
        "params.alpha_start.whn",
        "1",
    ),
    (
        "low of wrong type",
        _space(lr={"distribution": "loguniform", "low": "small", "high": 0.05}),
        "params.lr.low",
        "'small'",
    ),
    ("max_epochs of wrong type", _space({"max_epochs": "20"}), "max_epochs", "'20'"),
    ("max_epochs float", _space({"max_epochs": 2.5}), "max_epochs", "2.5"),
    (
        "bool where number",
        _space(lr={"distribution": "loguniform", "low": True, "high": 0.05}),
        "params.lr.low",
        "True",
    ),
    (
        "constant of wrong type",
        _space(batch_size={"value": [1, 2]}),
        "params.batch_size.value",
        "[1, 2]",
    ),
    (
        "low not below high",
        _space(lr={"distribution": "loguniform", "low": 0.05, "high": 0.01}),
        "params.lr.low",
        "0.05",
    ),
    (
        "low equal to high",
        _space(alpha=_uniform(1.0, 1.0, schedule="fixed")),
        "params.alpha.low",
        "1.0",
    ),
    (
        "loguniform low zero",
        _space(l2={"distribution": "loguniform", "low": 0.0, "high": 0.01}),
        "params.l2.low",
        "0.0",
    ),
    (
        "loguniform low negative",
        _space(beta={"distribution": "loguniform", "low": -0.1, "high": 1.0}),
        "params.beta.low",
        "-0.1",
    ),
    (
        "lograndint low zero",
        _space(embedding_dim={"distribution": "lograndint", "low": 0, "high": 128}),
        "params.embedding_dim.low",
        "0",
    ),
    (
        "randint high exclusive",
        _space(embedding_dim={"distribution": "randint", "low": 32, "high": 32}),
        "params.embedding_dim.low",
        "32",
    ),
    (
        "empty choice",
        _space(embedding_dim={"distribution": "choice", "values": []}),
        "params.embedding_dim.values",
        "[]",
    ),
    (
        "empty grid",
        _grid_space(batch_size={"distribution": "grid", "values": []}),
        "params.batch_size.values",
        "[]",
    ),
    (
        "duplicate choice values",
        _space(embedding_dim={"distribution": "choice", "values": [32, 64, 32]}),
        "params.embedding_dim.values",
        "32",
    ),
    (
        "q zero",
        _space(beta={"distribution": "quniform", "low": 0.0, "high": 1.0, "q": 0.0}),
        "params.beta.q",
        "0.0",
    ),
    (
        "q negative",
        _space(beta={"distribution": "quniform", "low": 0.0, "high": 1.0, "q": -0.1}),
        "params.beta.q",
        "-0.1",
    ),
    (
        "range not multiple of q",
        _space(beta={"distribution": "quniform", "low": 0.0, "high": 1.0, "q": 0.3}),
        "params.beta.q",
        "0.3",
    ),
    (
        "non-finite bound",
        _space(lr={"distribution": "loguniform", "low": 0.001, "high": float("inf")}),
        "params.lr.high",
        "inf",
    ),
    (
        "when names missing param",
        _space(alpha=_uniform(0.1, 2.0, schedul="fixed")),
        "params.alpha.when.schedul",
        "'schedul'",
    ),
    (
        "when value never taken by choice",
        _space(alpha=_uniform(0.1, 2.0, schedule="fixd")),
        "params.alpha.when.schedule",
        "'fixd'",
    ),
    (
        "when value never taken by constant",
        _space(lr={**_uniform(0.001, 0.05), "when": {"batch_size": 512}}),
        "params.lr.when.batch_size",
        "512",
    ),
    (
        "when on a sampled range",
        _space(beta={"value": 0.1, "when": {"lr": 0.01}}),
        "params.beta.when.lr",
        "lr is sampled from a range",
    ),
    (
        "when with empty list",
        _space(beta={"value": 0.1, "when": {"embedding_dim": []}}),
        "params.beta.when.embedding_dim",
        "no value",
    ),
    (
        "cycle of conditions",
        _space(
            beta={"value": 0.1, "when": {"l2": 0.001}},
            l2={"value": 0.001, "when": {"beta": 0.1}},
        ),
        "params.beta.when",
        "beta -> l2 -> beta",
    ),
    (
        "self condition",
        _space(embedding_dim={"value": 64, "when": {"embedding_dim": 64}}),
        "params.embedding_dim.when",
        "embedding_dim -> embedding_dim",
    ),
    (
        "overlapping alternatives",
        _space(
            lr=[
                {**_uniform(0.001, 0.05), "when": {"embedding_dim": [32, 64]}},
                {**_uniform(0.01, 0.1), "when": {"embedding_dim": 64}},
            ]
        ),
        "params.lr[0]",
        "embedding_dim = 64",
    ),
    (
        "overlapping unconditional alternatives",
        _space(lr=[_uniform(0.001, 0.05), _uniform(0.01, 0.1)]),
        "params.lr[0]",
        "params.lr[1]",
    ),
    ("metric unknown", _space({"metric": "map@20"}), "metric", "'map@20'"),
    ("metric on test split", _space({"metric": "test_map@10"}), "metric", "'test_map@10'"),
    ("mode unknown", _space({"mode": "maximize"}), "mode", "'maximize'"),
    (
        "grid with searcher tpe",
        _space(embedding_dim={"distribution": "grid", "values": [32, 64]}),
        "params.embedding_dim.distribution",
        "'tpe'",
    ),
    (
        "grid with searcher random",
        _space(
            {"searcher": {"type": "random"}},
            embedding_dim={"distribution": "grid", "values": [32, 64]},
        ),
        "params.embedding_dim.distribution",
        "'random'",
    ),
    (
        "searcher grid with range",
        _grid_space(lr={"distribution": "loguniform", "low": 0.001, "high": 0.05}),
        "params.lr.distribution",
        "'loguniform'",
    ),
    (
        "num_samples above grid points",
        {**_grid_space(), "num_samples": 5},
        "num_samples",
        "5",
    ),
    ("num_samples zero", _space({"num_samples": 0}), "num_samples", "0"),
    (
        "schedule type unknown",
        _space(schedule={"distribution": "choice", "values": ["fixed", "linear"]}),
        "params.schedule.values[1]",
        "'linear'",
    ),
    (
        "schedule from a range",
        _space(schedule={"distribution": "randint", "low": 0, "high": 3}),
        "params.schedule.distribution",
        "'randint'",
    ),
    (
        "schedule param for type not reading it",
        _space(alpha_start=_uniform(0.0, 0.5, schedule=["increase", "fixed"])),
        "params.alpha_start",
        "'fixed'",
    ),
    (
        "unconditional schedule param",
        _space(alpha=_uniform(0.1, 2.0)),
        "params.alpha",
        "'increase'",
    ),
    (
        "schedule type missing its param",
        _space(schedule={"distribution": "choice", "values": ["fixed", "increase", "step"]}),
        "params.warmup_epochs",
        "'step'",
    ),
    (
        "schedule param missing under one combination",
        _space(alpha_end=_uniform(1.0, 2.0, schedule="increase", embedding_dim=64)),
        "params.alpha_end",
        "schedule = 'increase', embedding_dim = 32",
    ),
    (
        "default fixed schedule without alpha",
        _space(schedule=None, alpha_start=None, alpha_end=None, alpha=None),
        "params.alpha",
        "'fixed'",
    ),
    (
        "increase ranges overlap",
        _space(alpha_start=_uniform(0.0, 1.5, schedule="increase")),
        "params.alpha_start",
        "[0.0, 1.5]",
    ),
    (
        "decrease ranges overlap",
        _space(
            schedule={"distribution": "choice", "values": ["fixed", "decrease"]},
            alpha_start=_uniform(0.5, 2.0, schedule="decrease"),
            alpha_end=_uniform(0.0, 0.6, schedule="decrease"),
        ),
        "params.alpha_start",
        "[0.0, 0.6]",
    ),
    (
        "exponential range reaching zero",
        _space(
            schedule={"distribution": "choice", "values": ["fixed", "exponential"]},
            alpha_start=_uniform(0.0, 1.0, schedule="exponential"),
            alpha_end=_uniform(0.5, 1.0, schedule="exponential"),
        ),
        "params.alpha_start",
        "[0.0, 1.0]",
    ),
    (
        "param not searchable",
        _space(seed={"distribution": "choice", "values": [0, 1]}),
        "params.seed",
        "'seed'",
    ),
    (
        "unknown distribution",
        _space(lr={"distribution": "log-uniform", "low": 0.001, "high": 0.05}),
        "params.lr",
        "'log-uniform'",
    ),
    (
        "neither distribution nor value",
        _space(lr={"low": 0.001, "high": 0.05}),
        "params.lr",
        "'low': 0.001",
    ),
    (
        "list of scalars",
        _space(embedding_dim=[32, 64]),
        "params.embedding_dim",
        "[32, 64]",
    ),
    (
        "float distribution for integer key",
        _space(embedding_dim={"distribution": "uniform", "low": 16, "high": 64}),
        "params.embedding_dim.distribution",
        "'uniform'",
    ),
    (
        "bound outside key range",
        _space(lr={"distribution": "uniform", "low": 0.0, "high": 0.05}),
        "params.lr.low",
        "0.0",
    ),
    (
        "choice value outside key range",
        _space(embedding_dim={"distribution": "choice", "values": [32, 0]}),
        "params.embedding_dim.values[1]",
        "0",
    ),
    (
        "unknown searcher type",
        _space({"searcher": {"type": "bayes"}}),
        "searcher",
        "'bayes'",
    ),
    (
        "data fractions",
        _space({"data": {"test_fraction": 0.6, "validation_fraction": 0.5}}),
        "data",
        "0.6 + 0.5",
    ),
    ("name with slash", _space({"name": "../up"}), "name", "'../up'"),
    ("missing params", {"metric": "map@10"}, "params", "missing"),
]


@pytest.mark.parametrize(
    ("data", "path", "value"),
    [pytest.param(data, path, value, id=case_id) for case_id, data, path, value in INVALID_CASES],
)
def test_parse_rejects_invalid(data: dict[str, Any], path: str, value: str) -> None:
    pattern = rf"(?m)^  {re.escape(path)}: .*{re.escape(value)}"
    with pytest.raises(InvalidInputError, match=pattern):
        parse_search_space(data, source="case.yaml")


def test_parse_error_names_source_and_counts() -> None:
    data = _space(
        {"metric": "map@20"},
        l2={"distribution": "loguniform", "low": 0.0, "high": 0.001},
    )

    with pytest.raises(InvalidInputError) as raised:
        parse_search_space(data, source="mine.yaml")

    message = str(raised.value)
    assert message.startswith("invalid search space mine.yaml (2 errors):\n")
    assert "metric: unknown metric 'map@20'" in message
    assert "params.l2.low: low must be positive for a loguniform distribution" in message


def test_parse_rejects_non_mapping() -> None:
    with pytest.raises(InvalidInputError, match=r"must be a mapping .* got list \[1, 2\]"):
        parse_search_space([1, 2])


def test_parse_valid_base_space() -> None:
    space = parse_search_space(_base())

    assert isinstance(space, SearchSpace)
    assert space.mode == "max"
    assert space.num_samples == 4
    assert space.searched_keys() == ["schedule", "alpha", "alpha_start", "alpha_end", "lr",
                                     "embedding_dim"]  # fmt: skip


def test_parse_condition_on_later_param() -> None:
    data = _base()
    # Conditional params listed before the schedule they depend on.
    data["params"] = dict(reversed(list(data["params"].items())))

    space = parse_search_space(data)
    config = space.define_by_run(optuna.create_study().ask())

    assert "schedule" in config
    assert set(SCHEDULE_PARAMS[config["schedule"]]) <= set(config)


def test_parse_resolves_mode_of_loss_metric() -> None:
    space = parse_search_space(_space({"metric": "loss_target"}))

    assert space.mode == "min"


def test_parse_warns_on_mode_against_metric(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tune_rec.space"):
        space = parse_search_space(_space({"metric": "loss_target", "mode": "max"}))

    assert space.mode == "max"
    assert "loss_target is better when lower" in caplog.text


def test_parse_default_num_samples_and_grid_count() -> None:
    space = parse_search_space(_space({"num_samples": None}))
    grid_space = parse_search_space(_grid_space())

    assert space.num_samples == 20
    assert grid_space.num_samples == 2


def test_reported_metrics_modes() -> None:
    assert set(METRIC_MODES) == set(REPORTED_METRICS)
    assert METRIC_MODES["map@10"] == "max"
    assert METRIC_MODES["ndcg@10"] == "max"
    assert METRIC_MODES["loss_target"] == "min"
    assert METRIC_MODES["loss_embedding"] == "min"
    assert METRIC_MODES["loss_ranking"] == "min"


# ---------------------------------------------------------------------------------------------
# YAML files


def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_reads_exponent_numbers_as_floats(tmp_path: Path) -> None:
    text = """
params:
  schedule: fixed
  alpha: 1
  lr: {distribution: loguniform, low: 1e-3, high: 5E-2}
  l2: 1e-5
data: {relevance_threshold: -2e-4}
"""
    # PyYAML's own safe loader reads these as strings, which this loader must not.
    assert yaml.safe_load("1e-3") == "1e-3"

    space = load_search_space(_write(tmp_path, text))

    lr = space.params["lr"][0]
    assert lr.low == 1e-3
    assert lr.high == 5e-2
    assert space.params["l2"][0].value == 1e-5
    assert isinstance(space.params["l2"][0].value, float)
    assert space.data.relevance_threshold == -2e-4


def test_load_keeps_integers_and_strings(tmp_path: Path) -> None:
    text = "params: {schedule: fixed, alpha: 1, batch_size: 1_024, ranking_loss: bpr}\n"

    space = load_search_space(_write(tmp_path, text))

    assert space.params["batch_size"][0].value == 1024
    assert isinstance(space.params["batch_size"][0].value, int)
    assert space.params["ranking_loss"][0].value == "bpr"


def test_load_names_space_after_file(tmp_path: Path) -> None:
    space = load_search_space(_write(tmp_path, "params: {alpha: 1}\n", name="quick.yaml"))

    assert space.name == "quick"


def test_load_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"

    with pytest.raises(InvalidInputError, match=re.escape(f"not found: {missing}")):
        load_search_space(missing)


def test_load_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "params:\n  lr: {distribution: uniform, low: 1\n  beta: 0.1\n")

    with pytest.raises(InvalidInputError) as raised:
        load_search_space(path)

    message = str(raised.value)
    assert str(path) in message
    assert re.search(r"line \d+, column \d+", message)


def test_load_syntax_error_position(tmp_path: Path) -> None:
    path = _write(tmp_path, "params:\n  alpha: 1\n  lr: [0.1\n")

    with pytest.raises(InvalidInputError, match=re.escape(f"{path}, line 4, column 1: ")):
        load_search_space(path)


def test_load_rejects_duplicate_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "params:\n  alpha: 1\n  alpha: 2\n")

    pattern = re.escape(
        f"{path}, line 3, column 3: found duplicate key 'alpha' (first set on line 2)"
    )
    with pytest.raises(InvalidInputError, match=pattern):
        load_search_space(path)


def test_load_rejects_python_tags(tmp_path: Path) -> None:
    path = _write(tmp_path, "params: !!python/object/apply:os.system ['true']\n")

    with pytest.raises(InvalidInputError, match="invalid YAML"):
        load_search_space(path)


def test_load_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="must be a mapping"):
        load_search_space(_write(tmp_path, ""))


def test_load_error_names_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "params: {lr: {distribution: uniform, low: 0.1, high: 0.01}}\n")

    with pytest.raises(InvalidInputError, match=re.escape(f"invalid search space {path}")):
        load_search_space(path)


@pytest.mark.parametrize("path", [ALPHA_YAML, PAPER_YAML], ids=["alpha", "paper"])
def test_load_shipped_space_round_trip(path: Path, tmp_path: Path) -> None:
    space = load_search_space(path)

    again = parse_search_space(space.to_dict())
    written = _write(tmp_path, yaml.safe_dump(space.to_dict(), sort_keys=False))
    reloaded = load_search_space(written)

    assert again.to_dict() == space.to_dict()
    assert again.model_dump() == space.model_dump()
    assert reloaded.model_dump() == space.model_dump()


def test_load_round_trip_keeps_alternatives() -> None:
    space = parse_search_space(_base())

    data = space.to_dict()

    assert data["params"]["batch_size"] == 1024
    assert data["params"]["alpha"]["when"] == {"schedule": "fixed"}
    assert data["params"]["schedule"]["distribution"] == "choice"
    assert parse_search_space(data).model_dump() == space.model_dump()


def test_alpha_yaml_settings() -> None:
    space = load_search_space(ALPHA_YAML)

    assert space.metric == "map@10"
    assert space.mode == "max"
    assert space.protocol == "rated"
    assert space.searcher.type == "tpe"
    assert space.scheduler.type == "asha"
    assert space.max_epochs == 30
    assert space.num_samples == 64
    assert space.params["batch_size"][0].value == 1024
    assert set(space.params["schedule"][0].values) == set(SCHEDULE_TYPES)


def test_paper_yaml_settings() -> None:
    space = load_search_space(PAPER_YAML)

    assert space.searcher.type == "grid"
    assert space.scheduler.type == "fifo"
    assert space.max_epochs == 30
    assert space.searched_keys() == ["schedule"]
    assert space.params["beta"][0].value == 0.1


# ---------------------------------------------------------------------------------------------
# Sampling


def _sample(space: SearchSpace, sampler: optuna.samplers.BaseSampler, n_trials: int) -> list:
    """Run ``n_trials`` trials through ask and tell; return (config, Optuna params) pairs."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    samples = []
    for _ in range(n_trials):
        trial = study.ask()
        config = space.define_by_run(trial)
        samples.append((config, dict(trial.params)))
        study.tell(trial, config["lr"])
    return samples


@pytest.mark.parametrize(
    "make_sampler",
    [
        lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
        lambda: optuna.samplers.RandomSampler(seed=0),
    ],
    ids=["tpe", "random"],
)
def test_define_by_run_conditional_params(make_sampler: Any) -> None:
    space = load_search_space(ALPHA_YAML)
    schedule_keys = {"alpha", "alpha_start", "alpha_end", "warmup_epochs"}

    samples = _sample(space, make_sampler(), 30)

    for config, optuna_params in samples:
        schedule = config["schedule"]
        assert schedule_keys & set(config) == set(SCHEDULE_PARAMS[schedule]), config
        assert config["batch_size"] == 1024
        assert {"beta", "lr", "l2", "embedding_dim"} <= set(config)
        sampled_keys = {name.split("[")[0] for name in optuna_params}
        assert sampled_keys == set(config) - {"batch_size"}, optuna_params
        train_config = space.to_train_config(config)
        assert train_config.schedule == schedule
        assert train_config.max_epochs == space.max_epochs
        assert train_config.seed == space.seed
    assert len({config["schedule"] for config, _ in samples}) >= 4


def test_define_by_run_alternative_names() -> None:
    space = load_search_space(ALPHA_YAML)

    samples = _sample(space, optuna.samplers.RandomSampler(seed=1), 30)

    index = {"increase": 0, "decrease": 1, "cosine": 2, "step": 2, "exponential": 3}
    for config, optuna_params in samples:
        schedule = config["schedule"]
        if schedule == "fixed":
            assert "alpha" in optuna_params
            continue
        name = f"alpha_start[{index[schedule]}]"
        assert optuna_params[name] == config["alpha_start"]
        assert not any(key.startswith("alpha_start[") and key != name for key in optuna_params)


def test_define_by_run_same_seed_same_configs() -> None:
    space = load_search_space(ALPHA_YAML)

    def configs(seed: int) -> list[dict[str, Any]]:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
        return [config for config, _ in _sample(space, sampler, 15)]

    assert configs(0) == configs(0)
    assert configs(0) != configs(1)


def test_define_by_run_distributions() -> None:
    data = _space(
        warmup_epochs={
            "distribution": "randint",
            "low": 1,
            "high": 3,
            "when": {"schedule": "step"},
        },
        schedule={"distribution": "choice", "values": ["step"]},
        alpha=None,
        alpha_start={"value": 1.0},
        alpha_end={"value": 0.0},
        beta={"distribution": "quniform", "low": 0.0, "high": 1.0, "q": 0.25},
        embedding_dim={"distribution": "lograndint", "low": 8, "high": 65},
    )
    space = parse_search_space(data)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()

    config = space.define_by_run(trial)

    assert trial.distributions["warmup_epochs"] == IntDistribution(low=1, high=2)
    assert trial.distributions["beta"] == FloatDistribution(low=0.0, high=1.0, step=0.25)
    assert trial.distributions["lr"] == FloatDistribution(low=0.001, high=0.05, log=True)
    assert trial.distributions["embedding_dim"] == IntDistribution(low=8, high=64, log=True)
    assert config["warmup_epochs"] in (1, 2)
    assert config["beta"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert space.to_train_config(config).warmup_epochs == config["warmup_epochs"]


def test_define_by_run_condition_on_choice() -> None:
    data = _space(
        lr=[
            {
                "distribution": "loguniform",
                "low": 0.001,
                "high": 0.01,
                "when": {"embedding_dim": 32},
            },
            {
                "distribution": "loguniform",
                "low": 0.02,
                "high": 0.05,
                "when": {"embedding_dim": 64},
            },
        ]
    )
    space = parse_search_space(data)

    samples = _sample(space, optuna.samplers.RandomSampler(seed=0), 20)

    for config, optuna_params in samples:
        name = "lr[0]" if config["embedding_dim"] == 32 else "lr[1]"
        assert optuna_params[name] == config["lr"]
        assert "lr" not in optuna_params
        assert len([key for key in optuna_params if key.startswith("lr[")]) == 1


def test_to_train_config_accepts_ray_config() -> None:
    space = load_search_space(ALPHA_YAML)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2)).ask()
    config = space.define_by_run(trial)

    # Ray Tune's OptunaSearch merges the Optuna names into the config it passes on.
    train_config = space.to_train_config({**trial.params, **config})

    assert isinstance(train_config, TrainConfig)
    assert train_config.lr == config["lr"]


def test_to_train_config_rejects_invalid() -> None:
    space = parse_search_space(_base())
    config = {"schedule": "increase", "alpha_start": 1.0, "alpha_end": 0.5}

    with pytest.raises(InvalidInputError, match=r"config \{.*'alpha_start': 1.0.*alpha_start < "):
        space.to_train_config(config)


def test_to_train_config_rejects_unknown_key() -> None:
    space = parse_search_space(_base())

    with pytest.raises(InvalidInputError, match=r"lrr: Extra inputs are not permitted; got 0.1"):
        space.to_train_config({"schedule": "fixed", "alpha": 1.0, "lrr": 0.1})


# ---------------------------------------------------------------------------------------------
# Grid


def test_grid_enumerates_paper_settings() -> None:
    space = load_search_space(PAPER_YAML)
    sampler = optuna.samplers.GridSampler(space.grid(), seed=0)
    study = optuna.create_study(sampler=sampler)

    configs = []

    def objective(trial: optuna.trial.Trial) -> float:
        configs.append(space.define_by_run(trial))
        return 0.0

    # GridSampler stops the study once every grid point has run, before n_trials.
    study.optimize(objective, n_trials=10)

    assert len(configs) == 3

    assert space.grid() == {"schedule": ["fixed", "increase", "decrease"]}
    assert space.n_grid_points() == 3
    assert space.num_samples == 3
    by_schedule = {config["schedule"]: config for config in configs}
    assert set(by_schedule) == {"fixed", "increase", "decrease"}
    assert by_schedule["fixed"]["alpha"] == 1.0
    assert (by_schedule["increase"]["alpha_start"], by_schedule["increase"]["alpha_end"]) == (
        0.0,
        1.0,
    )
    assert (by_schedule["decrease"]["alpha_start"], by_schedule["decrease"]["alpha_end"]) == (
        1.0,
        0.0,
    )
    for config in configs:
        assert config["beta"] == 0.1
        assert "alpha" not in config or config["schedule"] == "fixed"
        train_config = space.to_train_config(config)
        assert train_config.max_epochs == 30


def test_grid_product_of_params() -> None:
    space = parse_search_space(
        _grid_space(
            embedding_dim={"distribution": "choice", "values": [32, 64]},
            batch_size={"distribution": "grid", "values": [512, 1024, 2048]},
        )
    )

    assert space.grid() == {
        "schedule": ["fixed", "increase"],
        "embedding_dim": [32, 64],
        "batch_size": [512, 1024, 2048],
    }
    assert space.n_grid_points() == 12
    assert space.num_samples == 12


def test_grid_rejects_range() -> None:
    space = load_search_space(ALPHA_YAML)

    with pytest.raises(
        InvalidInputError, match=r"params\.alpha: a grid cannot enumerate .*'uniform'"
    ):
        space.grid()


# ---------------------------------------------------------------------------------------------
# Overrides


def test_with_overrides_applies_flags() -> None:
    space = load_search_space(ALPHA_YAML)

    changed = space.with_overrides(
        num_samples=4, max_epochs=5, seed=7, cpus_per_trial=2, gpus_per_trial=0.5
    )

    assert (changed.num_samples, changed.max_epochs, changed.seed) == (4, 5, 7)
    assert changed.resources.cpus_per_trial == 2.0
    assert changed.resources.gpus_per_trial == 0.5
    assert changed.params == space.params
    assert space.num_samples == 64
    assert space.max_epochs == 30


def test_with_overrides_none_keeps_values() -> None:
    space = load_search_space(ALPHA_YAML)

    assert space.with_overrides().model_dump() == space.model_dump()


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        ({"num_samples": 0}, r"--num-samples must be at least 1; got 0"),
        ({"max_epochs": -3}, r"--max-epochs must be at least 1; got -3"),
        ({"max_epochs": 2.5}, r"--max-epochs must be a whole number; got 2.5"),
        ({"seed": -1}, r"--seed must be at least 0; got -1"),
        ({"cpus_per_trial": 0}, r"--cpus-per-trial must be above 0; got 0"),
        ({"gpus_per_trial": -0.5}, r"--gpus-per-trial must be at least 0; got -0.5"),
        ({"num_samples": "4"}, r"--num-samples must be a number; got '4'"),
    ],
    ids=["num_samples", "max_epochs", "max_epochs_float", "seed", "cpus", "gpus", "string"],
)
def test_with_overrides_rejects_flag(flags: dict[str, Any], match: str) -> None:
    space = load_search_space(ALPHA_YAML)

    with pytest.raises(InvalidInputError, match=match):
        space.with_overrides(**flags)


def test_with_overrides_grid_num_samples() -> None:
    space = load_search_space(PAPER_YAML)

    with pytest.raises(InvalidInputError, match=r"num_samples: .*at most 3; got 4"):
        space.with_overrides(num_samples=4)


# ---------------------------------------------------------------------------------------------
# Module boundaries


def test_space_module_imports_no_ray() -> None:
    code = "import sys, tune_rec.space; print('ray' in sys.modules)"

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )

    assert result.stdout.strip() == "False"
