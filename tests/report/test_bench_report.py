"""The report benchmark in its smoke mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_report.py"


def test_bench_report_smoke_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--smoke"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "run 1:" in result.stdout
    assert "6 trials x 4 epochs: median" in result.stdout


def test_bench_report_fails_over_limit() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--smoke", "--limit", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1, result.stderr
