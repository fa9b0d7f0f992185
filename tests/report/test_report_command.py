"""The ``tune-rec report`` command: one rewrite, --watch and --png."""

from __future__ import annotations

import importlib.util
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tune_rec.cli import main

HAS_KALEIDO = importlib.util.find_spec("kaleido") is not None
TIMEOUT = 120


@pytest.fixture(autouse=True)
def _restore_logging():
    """Remove the stderr handler that main() installs, whose stream capsys closes later."""
    logger = logging.getLogger("tune_rec")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_report_command_writes_report(make_experiment, capsys) -> None:
    folder = make_experiment(n_trials=12, max_epochs=9, n_confirm=2, n_audit=1)

    code = main(["report", str(folder)])

    assert code == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"report": str(folder / "report.html")}
    assert "<h2>7. Pruning audit</h2>" in (folder / "report.html").read_text()


def test_report_command_missing_folder(tmp_path: Path, capsys) -> None:
    code = main(["report", str(tmp_path / "absent")])

    assert code == 2
    assert "experiment folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["trials.parquet", "epochs.parquet", "settings.json"])
def test_report_corrupt_file_keeps_old_report(make_experiment, capsys, name: str) -> None:
    folder = make_experiment(n_trials=12, max_epochs=9, n_confirm=2)
    assert main(["report", str(folder)]) == 0
    report = folder / "report.html"
    before = (report.read_bytes(), report.stat().st_mtime_ns)
    content = (folder / name).read_bytes()
    (folder / name).write_bytes(content[: len(content) // 2])
    capsys.readouterr()

    code = main(["report", str(folder)])

    assert code == 2
    assert f"{folder / name} is corrupt" in capsys.readouterr().err
    assert (report.read_bytes(), report.stat().st_mtime_ns) == before


def test_report_watch_corrupt_file_keeps_old_report(make_experiment, capsys) -> None:
    folder = make_experiment(n_trials=12, max_epochs=9, n_confirm=2)
    assert main(["report", str(folder)]) == 0
    report = folder / "report.html"
    before = report.read_bytes()
    (folder / "trials.parquet").write_bytes(b"PAR1 truncated")

    code = main(["report", str(folder), "--watch", "0.1"])

    assert code == 2
    assert "trials.parquet is corrupt" in capsys.readouterr().err
    assert report.read_bytes() == before


@pytest.mark.parametrize("seconds", ["0", "-5", "nan", "inf"])
def test_report_watch_invalid_seconds(make_experiment, capsys, seconds: str) -> None:
    folder = make_experiment(n_trials=4, max_epochs=4)

    code = main(["report", str(folder), "--watch", seconds])

    assert code == 2
    assert "--watch must be a positive, finite number of seconds" in capsys.readouterr().err
    assert not (folder / "report.html").exists()


def test_report_watch_not_a_number(make_experiment, capsys) -> None:
    folder = make_experiment(n_trials=4, max_epochs=4)

    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(folder), "--watch", "soon"])

    assert exit_info.value.code == 2
    assert "argument --watch: invalid float value: 'soon'" in capsys.readouterr().err


def test_report_watch_completed_search(make_experiment, capsys) -> None:
    folder = make_experiment(n_trials=12, max_epochs=9, n_confirm=2)

    code = main(["report", str(folder), "--watch", "0.2"])

    captured = capsys.readouterr()
    assert code == 0
    assert yaml.safe_load(captured.out) == {
        "report": str(folder / "report.html"),
        "rewrites": 1,
    }
    assert "rewrite 1 of" in captured.err


@pytest.mark.skipif(HAS_KALEIDO, reason="Kaleido is installed, so export does not fail")
def test_report_png_without_kaleido(make_experiment, capsys) -> None:
    folder = make_experiment(n_trials=4, max_epochs=4)

    code = main(["report", str(folder), "--png"])

    assert code == 1
    error = capsys.readouterr().err
    assert "writing PNG files needs Plotly's static exporter, Kaleido 1 or later" in error
    assert 'pip install "kaleido>=1"' in error


def test_report_png_lists_figures(make_experiment, capsys, monkeypatch) -> None:
    import plotly.graph_objects as go

    def write_image(self, path, **kwargs):
        path.write_bytes(b"\x89PNG")

    monkeypatch.setattr(go.Figure, "write_image", write_image)
    folder = make_experiment(n_trials=6, max_epochs=4)

    code = main(["report", str(folder), "--png"])

    assert code == 0
    figures = yaml.safe_load(capsys.readouterr().out)["figures"]
    assert figures[0] == str(folder / "figures" / "losses.png")
    assert len(figures) == 4


def test_report_watch_ctrl_c_exits_0(make_experiment) -> None:
    folder = make_experiment(n_trials=12, max_epochs=9)
    report = folder / "report.html"
    process = subprocess.Popen(
        [sys.executable, "-m", "tune_rec", "report", str(folder), "--watch", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not report.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert report.exists(), "the watch wrote no report"
        first = report.stat().st_mtime_ns
        while report.stat().st_mtime_ns == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert report.stat().st_mtime_ns != first, "the watch did not rewrite the report"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, err
    assert "rewrite 1 of" in err
    assert "stopped after" in err
    # SIGINT may land between the second os.replace and the count, so 1 is enough here.
    assert yaml.safe_load(out)["rewrites"] >= 1
