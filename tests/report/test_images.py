"""PNG export of the report's figures, with and without Kaleido."""

from __future__ import annotations

import importlib.util

import plotly.graph_objects as go
import pytest

from tune_rec.errors import TuneRecError
from tune_rec.report import ImageExportError, write_pngs

HAS_KALEIDO = importlib.util.find_spec("kaleido") is not None


@pytest.mark.skipif(HAS_KALEIDO, reason="Kaleido is installed, so export does not fail")
def test_write_pngs_without_kaleido_explains_install(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=4)

    with pytest.raises(ImageExportError, match=r"pip install \"kaleido>=1\"") as raised:
        write_pngs(path)

    assert isinstance(raised.value, TuneRecError)
    assert "The HTML report works without them" in str(raised.value)


def test_write_pngs_missing_exporter_message(make_experiment, tmp_path, monkeypatch) -> None:
    def fail(self, *args, **kwargs):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.")

    monkeypatch.setattr(go.Figure, "write_image", fail)

    with pytest.raises(ImageExportError, match="needs Plotly's static exporter, Kaleido"):
        write_pngs(make_experiment(n_trials=4, max_epochs=4), output_dir=tmp_path / "png")


def test_write_pngs_other_errors_propagate(make_experiment, tmp_path, monkeypatch) -> None:
    def fail(self, *args, **kwargs):
        raise ValueError("invalid width")

    monkeypatch.setattr(go.Figure, "write_image", fail)

    with pytest.raises(ValueError, match="invalid width"):
        write_pngs(make_experiment(n_trials=4, max_epochs=4), output_dir=tmp_path / "png")


def test_write_pngs_one_file_per_figure(make_experiment, tmp_path, monkeypatch) -> None:
    def write_image(self, path, **kwargs):
        path.write_bytes(b"\x89PNG")

    monkeypatch.setattr(go.Figure, "write_image", write_image)

    written = write_pngs(make_experiment(n_trials=6, max_epochs=4), output_dir=tmp_path / "png")

    assert [path.name for path in written] == [
        "losses.png",
        "metric_per_epoch.png",
        "parallel_coordinates.png",
        "importances.png",
    ]
    assert all(path.is_file() for path in written)


@pytest.mark.skipif(not HAS_KALEIDO, reason="Kaleido is not installed")
def test_write_pngs_with_kaleido(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=4)

    written = write_pngs(path)

    assert written
    assert all(file.read_bytes().startswith(b"\x89PNG") for file in written)


def test_write_pngs_includes_seed_repeats(make_experiment, tmp_path, monkeypatch) -> None:
    def write_image(self, path, **kwargs):
        path.write_bytes(b"\x89PNG")

    monkeypatch.setattr(go.Figure, "write_image", write_image)
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=3)

    written = write_pngs(path, output_dir=tmp_path / "png")

    assert written[-1].name == "seed_repeats.png"
    assert len(written) == 5
