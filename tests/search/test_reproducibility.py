"""Two searches with the same seed on CPU sample the same configs and reach the same metrics."""

from __future__ import annotations

import pandas as pd
import pytest

from tune_rec.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SPACE = """
name: repeatable
max_epochs: 3
num_samples: 4
seed: 11
searcher: {type: tpe, n_startup_trials: 2}
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
# One trial at a time: with several, the order in which results arrive steers TPE and ASHA.
resources: {cpus_per_trial: 1, max_concurrent_trials: 1}
params:
  schedule: {distribution: choice, values: [fixed, cosine]}
  alpha: {distribution: uniform, low: 0.5, high: 1.5, when: {schedule: fixed}}
  alpha_start: {distribution: uniform, low: 0.0, high: 1.0, when: {schedule: cosine}}
  alpha_end: {distribution: uniform, low: 0.0, high: 1.0, when: {schedule: cosine}}
  lr: {distribution: loguniform, low: 0.003, high: 0.03}
  embedding_dim: 8
"""


def _search(tmp_path, name):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    code = main(
        [
            "-q",
            "search",
            "--space",
            str(space),
            "--results-dir",
            str(tmp_path),
            "--name",
            name,
            "--no-report",
        ]
    )
    assert code == 0
    trials = pd.read_parquet(tmp_path / name / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / name / "epochs.parquet")
    configs = trials.filter(like="config.").drop(columns=[], errors="ignore")
    order = trials.trial_id.tolist()
    epochs["rank"] = epochs.trial_id.map({trial_id: i for i, trial_id in enumerate(order)})
    return configs, epochs.sort_values(["rank", "epoch"]).reset_index(drop=True)


def test_same_seed_same_search(tmp_path, ml100k_dir, ray_local):
    first_configs, first_epochs = _search(tmp_path, "first")
    second_configs, second_epochs = _search(tmp_path, "second")
    pd.testing.assert_frame_equal(first_configs, second_configs)
    for column in ("alpha", "loss_target", "map@10", "full_map@10"):
        assert first_epochs[column].tolist() == second_epochs[column].tolist(), column
