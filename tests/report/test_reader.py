"""Reading experiment folders, complete, partial and invalid."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tune_rec.errors import InvalidInputError
from tune_rec.report.reader import load_experiment


def test_load_complete_folder(make_experiment) -> None:
    path = make_experiment(n_trials=6, max_epochs=5)

    experiment = load_experiment(path)

    assert experiment.notes == []
    assert experiment.settings["name"] == "experiment"
    assert len(experiment.trials) == 6
    assert experiment.epochs["trial_id"].nunique() == 6
    assert experiment.metric == "map@10"
    assert experiment.mode == "max"
    assert experiment.optuna_db is None


def test_load_missing_folder_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="experiment folder not found"):
        load_experiment(tmp_path / "absent")


def test_load_folder_without_experiment_files_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="is not an experiment folder"):
        load_experiment(tmp_path)


def test_load_without_trials_derives_running_trials(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=5, write_trials=False)

    experiment = load_experiment(path)

    assert any("trials.parquet is missing" in note for note in experiment.notes)
    assert any("counted as running" in note for note in experiment.notes)
    assert len(experiment.trials) == 4
    assert set(experiment.trials["status"]) == {"running"}
    assert set(experiment.trials["config.schedule"]) == {"unknown"}
    assert experiment.trials["last_map@10"].notna().all()


def test_load_without_epochs_keeps_trials(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=5, write_epochs=False)

    experiment = load_experiment(path)

    assert any("epochs.parquet is missing" in note for note in experiment.notes)
    assert len(experiment.trials) == 4
    assert experiment.epochs.empty
    assert "loss_embedding" in experiment.epochs


def test_load_without_settings_uses_defaults(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4, write_settings=False)

    experiment = load_experiment(path)

    assert experiment.settings == {}
    assert experiment.metric == "map@10"
    assert any("settings.json is missing" in note for note in experiment.notes)


def test_load_truncated_parquet_raises(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4)
    content = (path / "epochs.parquet").read_bytes()
    (path / "epochs.parquet").write_bytes(content[: len(content) // 2])

    with pytest.raises(InvalidInputError, match=r"epochs\.parquet is corrupt"):
        load_experiment(path)


def test_load_invalid_settings_raises(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4)
    (path / "settings.json").write_text("{not json")

    with pytest.raises(
        InvalidInputError, match=r"settings\.json is corrupt: it is not valid JSON"
    ):
        load_experiment(path)


def test_load_settings_not_object_raises(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4)
    (path / "settings.json").write_text("[1, 2]")

    with pytest.raises(InvalidInputError, match="contains a JSON list"):
        load_experiment(path)


def test_load_fills_missing_metrics_from_epochs(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4, statuses=["running"] * 3)
    trials = pd.read_parquet(path / "trials.parquet")
    trials["last_map@10"] = None
    trials["n_epochs"] = 0
    trials.to_parquet(path / "trials.parquet")
    epochs = pd.read_parquet(path / "epochs.parquet")

    experiment = load_experiment(path)

    last = epochs.groupby("trial_id")["map@10"].last()
    loaded = experiment.trials.set_index("trial_id")
    assert loaded["last_map@10"].to_dict() == pytest.approx(last.to_dict())
    assert (loaded["n_epochs"] == epochs.groupby("trial_id").size()).all()


def test_load_epochs_missing_rows_keeps_trial_counts(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=6, n_epochs=[6, 6, 6])
    epochs = pd.read_parquet(path / "epochs.parquet")
    epochs[epochs["epoch"] < 2].to_parquet(path / "epochs.parquet")

    experiment = load_experiment(path)

    assert (experiment.trials["n_epochs"] == 6).all()
    assert len(experiment.epochs) == 6


def test_load_duplicate_epoch_keeps_later_row(make_experiment) -> None:
    path = make_experiment(n_trials=1, max_epochs=3, n_epochs=[3])
    epochs = pd.read_parquet(path / "epochs.parquet")
    repeat = epochs.iloc[[1]].assign(loss_embedding=123.0)
    pd.concat([epochs, repeat]).to_parquet(path / "epochs.parquet")

    experiment = load_experiment(path)

    assert len(experiment.epochs) == 3
    assert experiment.epochs.loc[1, "loss_embedding"] == 123.0


def test_load_without_epoch_column_uses_row_order(make_experiment) -> None:
    path = make_experiment(n_trials=2, max_epochs=3, n_epochs=[3, 3])
    epochs = pd.read_parquet(path / "epochs.parquet")
    epochs.drop(columns=["epoch", "training_iteration"]).to_parquet(path / "epochs.parquet")

    experiment = load_experiment(path)

    assert experiment.epochs["epoch"].tolist() == [0, 1, 2, 0, 1, 2]
    assert experiment.epochs["training_iteration"].tolist() == [1, 2, 3, 1, 2, 3]
