"""Config documents: what best_config.yaml and the exports hold."""

from __future__ import annotations

import pytest
import yaml

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.errors import InvalidInputError
from tune_rec.exports import load_run_config, run_config_document


def test_config_section_omits_unset_keys():
    config = TrainConfig(schedule="fixed", alpha=1.0, beta=0.1, seed=3)
    document = run_config_document(
        config, DataSettings(), metrics={"map@10": 0.8}, checksum="abc", source={}
    )
    assert "alpha_start" not in document["config"]
    assert "warmup_epochs" not in document["config"]
    assert document["config"]["alpha"] == 1.0
    assert TrainConfig(**document["config"]) == config


def test_data_section_keeps_none():
    data = DataSettings(dataset=None, path="ratings.csv")
    document = run_config_document(
        TrainConfig(schedule="fixed", alpha=1.0), data, metrics={}, checksum="abc", source={}
    )
    assert document["data"]["dataset"] is None
    assert DataSettings(**document["data"]) == data


@pytest.mark.parametrize("metrics", [7, [0.8], {"map@10": "high"}, {"map@10": True}])
def test_invalid_metrics_section_rejected(tmp_path, metrics):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"config": {"alpha": 1.0}, "metrics": metrics}))
    with pytest.raises(InvalidInputError, match="metrics"):
        load_run_config(path)


def test_valid_metrics_section_loads(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"config": {"alpha": 1.0}, "metrics": {"map@10": 0.8}}))
    config, _, document = load_run_config(path)
    assert config.alpha == 1.0
    assert document["metrics"]["map@10"] == 0.8
