import pandas as pd
import pytest
import yaml

from tune_rec.experiment import (
    EPOCHS_FILE,
    TRIALS_FILE,
    ExperimentLog,
    plain,
    write_text_atomic,
    write_yaml_atomic,
)


def _result(epoch, value):
    return {
        "epoch": epoch,
        "training_iteration": epoch + 1,
        "alpha": 1.0,
        "loss_embedding": 1.0,
        "loss_ranking": 0.5,
        "loss_target": 1.1,
        "map@10": value,
        "full_map@10": value / 10,
        "time_this_iter_s": 0.1,
        "config": {"lr": 0.01},
    }


def _log(tmp_path, max_epochs=3):
    return ExperimentLog(tmp_path, max_epochs=max_epochs, metric="map@10", mode="max")


def test_statuses_from_epochs_and_errors(tmp_path):
    log = _log(tmp_path)
    for epoch in range(3):
        log.add_result("a", {"lr": 0.01}, _result(epoch, 0.5 + epoch / 10))
    log.add_result("b", {"lr": 0.02}, _result(0, 0.4))
    log.add_result("c", {"lr": 0.03}, _result(0, 0.45))
    log.complete("a", {})
    log.complete("b", {})
    log.complete("c", {}, error="NonFiniteLossError: loss_target became nan at epoch 1")
    trials = log.trials_frame().set_index("trial_id")
    assert trials.loc["a", "status"] == "finished"
    assert trials.loc["b", "status"] == "stopped"
    assert bool(trials.loc["b", "stopped_early"])
    assert trials.loc["c", "status"] == "failed"
    assert "nan at epoch 1" in trials.loc["c", "error"]
    assert trials.loc["a", "last_map@10"] == pytest.approx(0.7)
    assert trials.loc["a", "n_epochs"] == 3
    assert trials.loc["b", "config.lr"] == 0.02


def test_repeated_result_replaces_row(tmp_path):
    log = _log(tmp_path)
    log.add_result("a", {"lr": 0.01}, _result(0, 0.5))
    log.add_result("a", {"lr": 0.01}, _result(0, 0.6))
    epochs = log.epochs_frame()
    assert len(epochs) == 1
    assert epochs["map@10"].iloc[0] == 0.6
    assert "config" not in epochs.columns
    assert "full_map@10" in epochs.columns


def test_best_trial_ignores_stopped_and_zero_is_a_score(tmp_path):
    log = _log(tmp_path, max_epochs=2)
    log.add_result("zero", {}, _result(0, 0.0))
    log.add_result("zero", {}, _result(1, 0.0))
    log.add_result("early", {}, _result(0, 0.9))
    log.complete("zero", {})
    log.complete("early", {})
    assert log.best_trial().trial_id == "zero"


def test_best_trial_none_without_finished(tmp_path):
    log = _log(tmp_path)
    log.add_result("a", {}, _result(0, 0.5))
    assert log.best_trial() is None


def test_flush_and_load_round_trip(tmp_path):
    log = _log(tmp_path)
    for epoch in range(3):
        log.add_result("a", {"lr": 0.01, "schedule": "fixed"}, _result(epoch, 0.5))
    log.complete("a", {})
    log.test_metrics["a"] = {"test_map@10": 0.42}
    log.flush()
    assert (tmp_path / TRIALS_FILE).exists()
    assert len(pd.read_parquet(tmp_path / EPOCHS_FILE)) == 3

    loaded = ExperimentLog.load(tmp_path, max_epochs=3, metric="map@10", mode="max")
    assert loaded.trials["a"].status == "finished"
    assert loaded.trials["a"].config == {"lr": 0.01, "schedule": "fixed"}
    assert sorted(loaded.trials["a"].epochs) == [0, 1, 2]
    assert loaded.test_metrics["a"] == {"test_map@10": 0.42}


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "report.html"
    write_text_atomic(path, "old")

    class Boom(Exception):
        pass

    from tune_rec.experiment import write_atomic

    def fail(temporary):
        temporary.write_text("half")
        raise Boom

    with pytest.raises(Boom):
        write_atomic(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_plain_values_dump_as_safe_yaml():
    import numpy as np

    document = plain({"a": np.float32(0.5), "b": [np.int64(3)], "c": (1, 2)})
    assert yaml.safe_load(yaml.safe_dump(document)) == {"a": 0.5, "b": [3], "c": [1, 2]}


def test_long_strings_stay_on_one_line(tmp_path):
    text = "best mean validation map@10 over 3 fresh seeds among the top 3 finished trials"
    path = tmp_path / "best_config.yaml"
    write_yaml_atomic(path, {"source": {"selected_by": text * 2}})
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert yaml.safe_load(path.read_text()) == {"source": {"selected_by": text * 2}}


def test_epochs_keep_user_counts_of_both_protocols(tmp_path):
    log = _log(tmp_path)
    counts = {
        "n_users_evaluated": 898,
        "n_users_skipped": 45,
        "full_n_users_evaluated": 898,
        "full_n_users_skipped": 45,
    }
    log.add_result("a", {"lr": 0.01}, {**_result(0, 0.5), **counts})
    log.flush()
    epochs = pd.read_parquet(tmp_path / EPOCHS_FILE)
    for key, value in counts.items():
        assert epochs.loc[0, key] == value, key
    assert "time_this_iter_s" not in epochs
