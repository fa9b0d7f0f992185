"""Kill a real search with SIGKILL in the middle, resume it, and check that nothing is lost."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SPACE = """
name: resumable
max_epochs: 8
num_samples: 8
seed: 5
searcher: {type: random}
scheduler: {type: asha, grace_period: 2, reduction_factor: 2}
resources: {cpus_per_trial: 1}
params:
  schedule: fixed
  alpha: {distribution: uniform, low: 0.5, high: 1.5}
  lr: {distribution: loguniform, low: 0.003, high: 0.03}
  embedding_dim: 8
"""


def _environment():
    environment = dict(os.environ)
    environment.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
    return environment


def _kill_tree(process):
    """SIGKILL the search and every process that it started, Ray's included."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _ended_trials(folder):
    path = folder / "trials.parquet"
    if not path.exists():
        return 0
    try:
        trials = pd.read_parquet(path)
    except Exception:
        return 0
    return int(trials.status.isin(["finished", "stopped"]).sum())


def test_sigkill_then_resume_loses_nothing(tmp_path, ml100k_dir):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    folder = tmp_path / "results" / "resumable"
    command = [
        sys.executable,
        "-m",
        "tune_rec",
        "-q",
        "search",
        "--space",
        str(space),
        "--results-dir",
        str(tmp_path / "results"),
        "--name",
        "resumable",
        "--no-report",
        "--checkpoint-every",
        "1",
        "--max-epochs",
        "6",
        "--confirm-top",
        "1",
        "--confirm-seeds",
        "1",
        "--audit-pruned",
        "0",
    ]
    process = subprocess.Popen(
        command, env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 240
    while _ended_trials(folder) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert process.poll() is None, "the search ended before it could be killed"
    _kill_tree(process)
    before = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    ended_before = before[before.status.isin(["finished", "stopped"])]
    assert len(ended_before) >= 3
    assert not (folder / "best_config.yaml").exists()

    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tune_rec",
            "-q",
            "search",
            "--resume",
            str(folder),
            "--no-report",
        ],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    trials = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    epochs = pd.read_parquet(folder / "epochs.parquet")
    assert len(trials) == 8
    assert trials.status.isin(["finished", "stopped"]).all()
    # The resume keeps the flags of the first run: a budget of 6 epochs, not the file's 8.
    assert (trials[trials.status == "finished"].n_epochs == 6).all()
    assert (trials.n_epochs <= 6).all()
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    counts = epochs.groupby("trial_id").size()
    for trial_id, row in trials.iterrows():
        assert counts[trial_id] == row.n_epochs
    for trial_id, row in ended_before.iterrows():
        assert trials.loc[trial_id, "status"] == row.status
        assert trials.loc[trial_id, "n_epochs"] == row.n_epochs
    document = yaml.safe_load((folder / "best_config.yaml").read_text())
    assert document["source"]["trial_id"] in trials.index
    # The resume keeps the first run's --confirm-top 1 --confirm-seeds 1 --audit-pruned 0.
    reruns = pd.read_parquet(folder / "reruns.parquet")
    assert (reruns.kind == "confirm").sum() == 1
    assert (reruns.kind == "audit").sum() == 0
    assert document["confirmation"]["n_seeds"] == 1
