"""Helpers shared by the benchmark scripts: the machine, the data, timing and the JSON output.

The scripts run from the repository root as ``python benchmarks/<name>.py``, so this module is
importable as ``_common`` from their folder.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
# $TUNE_REC_BENCH_OUT redirects the JSON files and experiments, so that the smoke tests leave
# the figures of full runs in benchmarks/out alone.
OUT_DIR = Path(os.environ.get("TUNE_REC_BENCH_OUT") or REPOSITORY / "benchmarks" / "out")

if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))


def machine() -> dict[str, Any]:
    """Return the CPU count and model, Python and torch versions, and the load average."""
    import torch

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "n_cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "load_average_1min": os.getloadavg()[0],
    }


def median(values: Sequence[float]) -> float:
    """Return the median, or NaN for no values."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the value at ``fraction`` (0 to 1) of the sorted values, nearest rank."""
    ordered = sorted(values)
    return ordered[round(fraction * (len(ordered) - 1))]


def time_call(call: Callable[[], Any]) -> tuple[float, Any]:
    """Return the wall time of ``call()`` in seconds and its result."""
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` with the machine added to ``benchmarks/out/<name>.json``."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    document = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def data_dir() -> Path | None:
    """Return $TUNE_REC_DATA_DIR when it holds ml-100k/u.data, else None."""
    value = os.environ.get("TUNE_REC_DATA_DIR")
    if value and (Path(value) / "ml-100k" / "u.data").is_file():
        return Path(value)
    return None


def ml100k_or_synthetic(seed: int = 0):
    """Return MovieLens-100K split with ``seed``, or synthetic ratings of its shape, and a label.

    MovieLens-100K is read from $TUNE_REC_DATA_DIR only, so that no benchmark downloads it.
    """
    from tune_rec.config import DataSettings
    from tune_rec.data import load_dataset
    from tune_rec.data.synthetic import synthetic_dataset

    folder = data_dir()
    if folder is not None:
        return load_dataset(DataSettings(), seed=seed, data_dir=folder), "ml-100k"
    print("TUNE_REC_DATA_DIR holds no ml-100k/u.data: using synthetic ratings of its shape")
    return synthetic_dataset(100_000, seed=seed), "synthetic-100000"


def run_command(
    command: Sequence[str], *, env: dict[str, str] | None = None, timeout: float | None = None
) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``command`` from the repository root; return its wall time and the finished process.

    Raises:
        RuntimeError: The command exited with a non-zero status; the message has its stderr.
    """
    start = time.perf_counter()
    process = subprocess.run(
        list(command),
        cwd=REPOSITORY,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with status {process.returncode}:\n"
            f"{process.stderr[-4000:]}"
        )
    return elapsed, process


def tune_rec_command() -> list[str]:
    """Return the command that runs tune-rec with this interpreter, as the console script does."""
    return [sys.executable, "-m", "tune_rec"]


def search_flags(*names: str) -> list[str]:
    """Return those of ``names`` that ``tune-rec search --help`` lists, each with value 0.

    Used to switch off optional end-of-search steps in the versions of tune-rec that have them.
    """
    _, process = run_command([*tune_rec_command(), "search", "--help"])
    flags = []
    for name in names:
        if name in process.stdout:
            flags += [name, "0"]
    return flags
