"""Config documents: what best_config.yaml and the exports hold."""

from __future__ import annotations

from tune_rec.config import DataSettings, TrainConfig
from tune_rec.exports import run_config_document


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
