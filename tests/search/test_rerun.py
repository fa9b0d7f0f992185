"""Reruns after a search: in this process or as Ray trials, with the same results."""

from __future__ import annotations

import math
from concurrent.futures import CancelledError
from pathlib import Path

import pandas as pd
import pytest

from tune_rec.config import DataSettings
from tune_rec.data import load_dataset
from tune_rec.experiment import EPOCHS_FILE
from tune_rec.search import rerun as rerun_module
from tune_rec.search.rerun import (
    TRIAL_PROCESS_START_SECONDS,
    run_reruns,
    runs_in_process,
    start_reruns,
)
from tune_rec.search.runner import SearchOptions
from tune_rec.space import parse_search_space

pytestmark = pytest.mark.ray

SPACE = {
    "name": "reruns",
    "max_epochs": 2,
    "seed": 0,
    "searcher": {"type": "grid"},
    "scheduler": {"type": "fifo"},
    "resources": {"cpus_per_trial": 1},
    "params": {"schedule": "fixed", "alpha": 1.0, "embedding_dim": 8},
}


def _options(**resources) -> SearchOptions:
    space = parse_search_space({**SPACE, "resources": {"cpus_per_trial": 1, **resources}})
    return SearchOptions(space=space, space_path=Path("reruns.yaml"))


def _runs(n: int) -> list[dict]:
    return [
        {
            "kind": "confirm",
            "source_trial": "t0",
            "rank": 1,
            "seed": seed,
            "params": {"schedule": "fixed", "alpha": 1.0, "embedding_dim": 8},
            "checkpoint": None,
        }
        for seed in range(1, n + 1)
    ]


def _epochs_table(folder: Path, seconds: float) -> None:
    pd.DataFrame({"trial_id": ["t0"] * 3, "epoch_seconds": [seconds] * 3}).to_parquet(
        folder / EPOCHS_FILE
    )


def test_reruns_in_process_match_ray_trials(tmp_path, ml100k_dir, ray_local):
    dataset = load_dataset(DataSettings(), seed=0, data_dir=ml100k_dir)
    options, runs = _options(), _runs(2)
    in_process = run_reruns(tmp_path, options, dataset, runs, in_process=True)
    on_ray = run_reruns(tmp_path, options, dataset, runs, in_process=False)
    assert (tmp_path / "reruns").is_dir()
    columns = ["kind", "seed", "map@10", "test_map@10", "test_ndcg@10"]
    pd.testing.assert_frame_equal(
        in_process[columns].sort_values("seed").reset_index(drop=True),
        on_ray[columns].sort_values("seed").reset_index(drop=True),
    )
    assert in_process["map@10"].notna().all()


def test_threaded_reruns_match_one_thread(tmp_path, ml100k_dir, monkeypatch, caplog):
    dataset = load_dataset(DataSettings(), seed=0, data_dir=ml100k_dir)
    options, runs = _options(), _runs(3)
    monkeypatch.setattr(rerun_module, "_local_cpus", lambda: 1)
    one_thread = run_reruns(tmp_path, options, dataset, runs, in_process=True)
    monkeypatch.setattr(rerun_module, "_local_cpus", lambda: 3)
    with caplog.at_level("INFO", logger="tune_rec.search.rerun"):
        threaded = run_reruns(tmp_path, options, dataset, runs, in_process=True)
    assert "on 3 threads" in caplog.text
    assert list(threaded.seed) == [1, 2, 3]
    pd.testing.assert_frame_equal(threaded, one_thread)


def test_started_reruns_return_in_run_order(tmp_path, ml100k_dir):
    dataset = load_dataset(DataSettings(), seed=0, data_dir=ml100k_dir)
    pending = start_reruns(tmp_path, _options(), dataset, _runs(3), in_process=True)
    table = pending.result()
    assert list(table.seed) == [1, 2, 3]
    assert pending.result() is table


def test_cancelled_reruns_drop_unstarted_runs(tmp_path, ml100k_dir, monkeypatch):
    dataset = load_dataset(DataSettings(), seed=0, data_dir=ml100k_dir)
    monkeypatch.setattr(rerun_module, "_local_cpus", lambda: 1)
    pending = start_reruns(tmp_path, _options(), dataset, _runs(3), in_process=True)
    pending.cancel()
    with pytest.raises(CancelledError):
        pending.result()


def test_short_reruns_in_process(tmp_path, ray_local):
    _epochs_table(tmp_path, 0.05)
    in_process, seconds = runs_in_process(tmp_path, _options(), _runs(4))
    assert in_process
    assert seconds == pytest.approx(4 * 2 * 0.05)


def test_long_reruns_go_to_ray(tmp_path, ray_local):
    # 4 runs x 2 epochs take 8 x the epoch time in this process, and on 2 CPUs half that after the
    # start of the trial processes.
    _epochs_table(tmp_path, TRIAL_PROCESS_START_SECONDS)
    in_process, seconds = runs_in_process(tmp_path, _options(), _runs(4))
    assert not in_process
    assert seconds == pytest.approx(8 * TRIAL_PROCESS_START_SECONDS)


def test_one_slot_keeps_reruns_in_process(tmp_path, ray_local):
    # With one trial at a time Ray cannot finish sooner than this process.
    _epochs_table(tmp_path, TRIAL_PROCESS_START_SECONDS)
    assert runs_in_process(tmp_path, _options(max_concurrent_trials=1), _runs(4))[0]


def test_gpu_reruns_go_to_ray(tmp_path, ray_local):
    _epochs_table(tmp_path, 0.05)
    assert not runs_in_process(tmp_path, _options(gpus_per_trial=1), _runs(2))[0]


def test_without_epoch_times_reruns_go_to_ray(tmp_path, ray_local):
    in_process, seconds = runs_in_process(tmp_path, _options(), _runs(2))
    assert not in_process
    assert math.isnan(seconds)
