"""Each benchmark script in its --smoke mode: it runs, prints its figures and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
BENCHMARKS = REPOSITORY / "benchmarks"


def _run_smoke(script: str, out_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    process = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--smoke"],
        cwd=REPOSITORY,
        env={**os.environ, "TUNE_REC_BENCH_OUT": str(out_dir)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return process


def _figures(out_dir: Path, name: str) -> dict:
    document = json.loads((out_dir / f"{name}.json").read_text())
    assert document["smoke"] is True
    assert document["machine"]["n_cpus"] >= 1
    return document


def test_bench_training_smoke(tmp_path):
    process = _run_smoke("bench_training.py", tmp_path, timeout=300)
    figures = _figures(tmp_path, "bench_training")
    assert "autograd / tune-rec (training only)" in process.stdout
    assert set(figures["cases"]) == {
        "tune-rec, training only",
        "tune-rec, with evaluation",
        "tune-rec, sparse_adam",
        "autograd",
    }
    assert figures["cases"]["autograd"]["median_seconds"] > 0
    assert figures["autograd_over_training_only"] > 0


def test_bench_evaluation_smoke(tmp_path):
    process = _run_smoke("bench_evaluation.py", tmp_path, timeout=300)
    assert "validation" in process.stdout
    assert "test" in process.stdout


def test_bench_report_smoke(tmp_path):
    process = _run_smoke("bench_report.py", tmp_path, timeout=300)
    assert "write_report" in process.stdout


@pytest.mark.slow
def test_bench_scale_smoke(tmp_path):
    process = _run_smoke("bench_scale.py", tmp_path, timeout=600)
    figures = _figures(tmp_path, "bench_scale")
    assert "cost per training rating" in process.stdout
    assert [row["n_ratings"] for row in figures["rows"]] == [20_000, 40_000]
    for row in figures["rows"]:
        assert row["train"]["seconds_per_rating"] > 0
        assert row["train"]["peak_mib_training"] >= row["train"]["mib_trainer"]
        assert row["evaluate"]["peak_mib_rated"] >= row["evaluate"]["mib_before_evaluate"]
        assert row["evaluate"]["rated+full_seconds"] > 0


@pytest.mark.slow
@pytest.mark.ray
def test_bench_ray_overhead_smoke(tmp_path):
    process = _run_smoke("bench_ray_overhead.py", tmp_path, timeout=900)
    figures = _figures(tmp_path, "bench_ray_overhead")
    assert "fit ratio" in process.stdout
    baseline = figures["summary"]["baseline"]
    assert baseline["fit_ratio"] > 1
    assert baseline["phases"]["ray_init"] > 0
    assert figures["runs"][0]["n_epochs"] == 4


@pytest.mark.slow
@pytest.mark.ray
def test_bench_small_search_smoke(tmp_path):
    process = _run_smoke("bench_small_search.py", tmp_path, timeout=900)
    figures = _figures(tmp_path, "bench_small_search")
    assert "phases" in process.stdout
    assert figures["median_command_seconds"] > 0
    assert figures["phases"]["ray.init"] > 0


@pytest.mark.slow
@pytest.mark.ray
def test_bench_asha_smoke(tmp_path):
    process = _run_smoke("bench_asha.py", tmp_path, timeout=900)
    figures = _figures(tmp_path, "bench_asha")
    assert "epochs: ASHA" in process.stdout
    assert figures["n_trials"] == 4
    assert figures["n_epochs_full"] == 16
    assert figures["mismatches"] == {}


@pytest.mark.slow
@pytest.mark.ray
def test_bench_default_search_smoke(tmp_path):
    process = _run_smoke("bench_default_search.py", tmp_path, timeout=900)
    figures = _figures(tmp_path, "bench_default_search")
    assert "wall time" in process.stdout
    assert figures["n_trials"] == 2
    assert (tmp_path / "experiments").is_dir()
