"""The report page written from synthetic experiment folders, complete and partial."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tune_rec.errors import InvalidInputError
from tune_rec.report import build_report_html, write_report
from tune_rec.report.analysis import analyse_experiment
from tune_rec.report.figures import n_figures
from tune_rec.report.reader import load_experiment
from tune_rec.report.reruns import format_interval

SECTIONS = (
    "<h2>Settings</h2>",
    "<h2>Trials</h2>",
    "<h2>1. Loss curves per schedule type</h2>",
    "<h2>2. Convergence of the best trials</h2>",
    "<h2>3. Reference: the study's Table 1</h2>",
    "<h2>4. Validation MAP@10 per epoch</h2>",
    "<h2>5. Top configs</h2>",
    "<h3>Searched parameters against the metric</h3>",
    "<h3>Parameter importance</h3>",
    "<h2>6. Seed repeats of the top configs</h2>",
    "<h2>7. Pruning audit</h2>",
)
PLOTLY_BUNDLE_MARKER = "* plotly.js v"


def _top_table_rows(html: str) -> int:
    section = html.split("<h2>5. Top configs</h2>", 1)[1].split("</table>", 1)[0]
    return section.count("<tr><td>")


def test_write_report_contains_every_section(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9)

    report = write_report(path)

    html = report.read_text(encoding="utf-8")
    assert report == path / "report.html"
    for heading in SECTIONS:
        assert heading in html
    assert n_figures(html) == 4
    assert html.count(PLOTLY_BUNDLE_MARKER) == 1
    assert 'src="http' not in html


def test_report_header_states_settings_and_budget(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=10, n_epochs=[1, 10, 10, 3])

    html = build_report_html(path)

    assert "Experiment experiment" in html
    assert "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490" in html
    assert "rated, AP@k normalisation min_k_r" in html
    assert "tpe (n_startup_trials=10)" in html
    assert "asha (grace_period=1, reduction_factor=3)" in html
    assert "<tr><th>finished</th><td>2</td></tr>" in html
    assert "<tr><th>stopped early</th><td>1</td></tr>" in html
    assert "<tr><th>failed</th><td>1</td></tr>" in html
    assert "<tr><th>running</th><td>0</td></tr>" in html
    assert "The trials ran 24 epochs of the 40" in html
    assert "60.0%, a saving of 40.0%" in html
    assert "RuntimeError: synthetic failure" in html


def test_report_states_convergence_rule(make_experiment) -> None:
    html = build_report_html(make_experiment(n_trials=6, max_epochs=8))

    assert "over its last 5 epochs" in html
    assert "below 1.0%" in html
    assert "no convergence signal" in html


def test_report_reference_table_beside_study(make_experiment) -> None:
    html = build_report_html(make_experiment(n_trials=6, max_epochs=8))

    for value in ("0.888", "0.865", "0.842", "0.819", "0.804", "0.775", "0.8375", "0.822"):
        assert f"<td>{value}</td>" in html
    assert "protocol rated" in html
    assert "not a like-for-like comparison" in html


def test_report_top_k_limits_rows(make_experiment) -> None:
    path = make_experiment(n_trials=6, max_epochs=4, n_epochs=[4] * 6, statuses=["finished"] * 6)

    assert _top_table_rows(build_report_html(path, top_k=2)) == 2
    assert _top_table_rows(build_report_html(path)) == 6


def test_report_test_metrics_only_where_present(make_experiment) -> None:
    with_test = build_report_html(make_experiment("a", n_trials=6, max_epochs=4, n_test_rows=1))
    without = build_report_html(make_experiment("b", n_trials=6, max_epochs=4, n_test_rows=0))

    assert "computed only for finished winners" in with_test
    assert "test MAP@10" in with_test
    assert "test MAP@10" not in without


@pytest.mark.parametrize("top_k", [0, -3, 2.5, True])
def test_report_invalid_top_k_rejected(make_experiment, top_k) -> None:
    path = make_experiment(n_trials=3, max_epochs=4)

    with pytest.raises(InvalidInputError, match="top_k must be an integer of at least 1"):
        write_report(path, top_k=top_k)


def test_report_missing_folder_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="experiment folder not found"):
        write_report(tmp_path / "absent")


def test_report_running_experiment_without_finished(make_experiment) -> None:
    path = make_experiment(
        n_trials=4, max_epochs=10, n_epochs=[3, 2, 1, 0], statuses=["running"] * 4
    )

    html = write_report(path).read_text(encoding="utf-8")

    assert "<tr><th>running</th><td>4</td></tr>" in html
    assert "No trial has finished with a value of map@10 yet" in html
    assert "Fewer than 2 trials have finished" in html
    assert "need at least 2 finished trials" in html
    assert n_figures(html) == 3


def test_report_epochs_missing_rows(make_experiment) -> None:
    path = make_experiment(n_trials=6, max_epochs=8, n_epochs=[8] * 6)
    epochs = pd.read_parquet(path / "epochs.parquet")
    epochs[(epochs["trial_id"] != "trial_0001") & (epochs["epoch"] < 5)].to_parquet(
        path / "epochs.parquet"
    )

    html = write_report(path).read_text(encoding="utf-8")

    assert "<h2>2. Convergence of the best trials</h2>" in html
    assert "not enough epochs" in html
    assert n_figures(html) == 4


def test_report_without_epochs_file(make_experiment) -> None:
    path = make_experiment(n_trials=6, max_epochs=8, write_epochs=False)

    html = write_report(path).read_text(encoding="utf-8")

    assert "epochs.parquet is missing." in html
    assert "No trial has recorded an epoch yet." in html
    assert "No epoch has a value of the search metric yet." in html
    assert n_figures(html) == 2
    assert "<h2>5. Top configs</h2>" in html


def test_report_without_trials_file(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=6, write_trials=False)

    html = write_report(path).read_text(encoding="utf-8")

    assert "trials.parquet is missing." in html
    assert "<tr><th>running</th><td>4</td></tr>" in html
    assert "unknown" in html


def test_report_only_settings(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=6, write_trials=False, write_epochs=False)

    html = write_report(path).read_text(encoding="utf-8")

    assert "<tr><th>trials</th><td>0 of 4 planned</td></tr>" in html
    assert "No trial has recorded an epoch yet." in html
    assert n_figures(html) == 0


def test_report_one_schedule_type(make_experiment) -> None:
    path = make_experiment(n_trials=5, max_epochs=6, schedules=("decrease",))

    html = write_report(path).read_text(encoding="utf-8")
    data = analyse_experiment(load_experiment(path))

    assert [row.schedule for row in data.verdicts] == ["decrease"]
    assert len(data.figures["losses"].data) == 4 * 2
    assert n_figures(html) == 4
    verdict_table = html.split('<table class="verdicts">', 1)[1].split("</table>", 1)[0]
    assert verdict_table.count("<tr><td>") == 1
    # The study's other settings stay in the reference table, without a trial of ours.
    assert html.count("<td>no trial</td>") == 2


def test_report_escapes_folder_values(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4)
    settings = json.loads((path / "settings.json").read_text())
    settings["name"] = "<script>alert(1)</script>"
    (path / "settings.json").write_text(json.dumps(settings))

    html = build_report_html(path)

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_write_report_custom_output(make_experiment, tmp_path: Path) -> None:
    path = make_experiment(n_trials=3, max_epochs=4)
    output = tmp_path / "out" / "nested" / "page.html"

    written = write_report(path, output=output)

    assert written == output
    assert output.is_file()
    assert not (path / "report.html").exists()
    assert oct(output.stat().st_mode & 0o777) == oct(0o644)


def test_write_report_replaces_and_leaves_no_temp(make_experiment) -> None:
    path = make_experiment(n_trials=3, max_epochs=4)
    (path / "report.html").write_text("old")

    write_report(path)

    assert (path / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [file.name for file in path.iterdir() if file.name.endswith(".tmp")] == []


def test_write_report_failure_keeps_old_report(make_experiment, monkeypatch) -> None:
    path = make_experiment(n_trials=3, max_epochs=4)
    (path / "report.html").write_text("old")

    def fail(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(path)

    assert (path / "report.html").read_text() == "old"
    assert [file.name for file in path.iterdir() if file.name.endswith(".tmp")] == []


def test_report_colours_fixed_across_figures(make_experiment) -> None:
    html = build_report_html(make_experiment(n_trials=6, max_epochs=6))

    # Each schedule's colour appears in the loss grid (hex) and the metric figure (rgba).
    for rgb in ("0,114,178", "213,94,0", "0,158,115"):
        assert re.search(rf"rgba\({rgb},0\.55\)", html)
    for colour in ("#0072B2", "#D55E00", "#009E73"):
        assert colour in html


def test_report_runs_without_ray_or_torch(make_experiment) -> None:
    path = make_experiment(n_trials=4, max_epochs=4)
    script = (
        "import sys\n"
        "from tune_rec.report import write_report\n"
        f"write_report({str(path)!r})\n"
        "print(sorted(name for name in ('ray', 'torch') if name in sys.modules))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _section(html: str, heading: str, next_heading: str | None = None) -> str:
    section = html.split(heading, 1)[1]
    return section.split(next_heading, 1)[0] if next_heading else section


REPEATS_HEADING = "<h2>6. Seed repeats of the top configs</h2>"
AUDIT_HEADING = "<h2>7. Pruning audit</h2>"


def test_report_seed_repeats_section(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=3, n_audit=2)
    summary = pd.read_parquet(path / "confirm.parquet").set_index("source_trial")
    winner = yaml.safe_load((path / "best_config.yaml").read_text())["source"]["trial_id"]

    html = write_report(path).read_text(encoding="utf-8")

    section = _section(html, REPEATS_HEADING, AUDIT_HEADING)
    assert n_figures(html) == 5
    assert n_figures(section) == 1
    assert "with fresh seeds (1, 2, 3; the search used seed 0)" in section
    assert f"<b>Winner: <code>{winner}</code>" in section
    assert "selected by best mean validation map@10 over 3 fresh seeds" in section
    assert "never used for selection" in section
    table = section.split("<table", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr><td>") == 3
    assert table.count('<b class="good">winner</b>') == 1
    row = summary.loc[winner]
    half = (row["map@10_ci_high"] - row["map@10_ci_low"]) / 2
    assert f"{row['map@10_mean']:.4f} ± {half:.4f}" in table
    assert f"std {row['test_map@10_std']:.4f}" in table


def test_report_winner_in_header_and_top_table(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=3)
    winner = yaml.safe_load((path / "best_config.yaml").read_text())["source"]["trial_id"]

    html = build_report_html(path)

    assert f"Winner (best_config.yaml): <code>{winner}</code>, selected by" in html
    top = _section(html, "<h2>5. Top configs</h2>", "<h3>")
    assert f'<code>{winner}</code> <b class="good">winner</b>' in top


def test_report_reference_shows_fresh_seed_interval(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=3)
    experiment = load_experiment(path)
    data = analyse_experiment(experiment)
    repeated = [data.repeats.row(trial_id) for trial_id in data.best_ids.values()]
    repeated = [row for row in repeated if row is not None]

    html = build_report_html(path)

    reference = _section(html, "<h2>3. Reference", "<h2>4.")
    assert repeated
    for row in repeated:
        for key in ("map@1", "map@5", "map@10"):
            assert format_interval(row.intervals[key], row.n_seeds) in reference
    assert "the line below its value gives the mean over those seeds" in reference


def test_report_reference_without_repeats(make_experiment) -> None:
    html = build_report_html(make_experiment(n_trials=12, max_epochs=9))

    reference = _section(html, "<h2>3. Reference", "<h2>4.")
    assert "seeds)" not in reference
    assert "the line below its value" not in reference


def test_report_pruning_audit_section(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_audit=2)
    audit = pd.read_parquet(path / "audit.parquet")

    html = build_report_html(path)

    section = _section(html, AUDIT_HEADING)
    assert '<b class="good">None of the 2 audited trials would have beaten the winner' in section
    closest = audit.sort_values("margin", ascending=False).iloc[0]
    assert f"the closest, trial {closest['source_trial']}" in section
    assert f"fell short by {abs(closest['margin']):.4f} MAP@10" in section
    assert "Margin = audited value − winner&#x27;s value" in section
    table = section.split("<table", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr><td>") == 2
    assert f"{closest['margin']:+.4f}" in table


def test_report_pruning_audit_trial_would_have_won(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_audit=2)
    audit = pd.read_parquet(path / "audit.parquet")
    audit.loc[0, "map@10"] = audit.loc[0, "winner_value"] + 0.005
    audit.loc[0, "margin"] = 0.005
    audit.loc[0, "would_have_won"] = True
    audit.to_parquet(path / "audit.parquet", index=False)

    html = build_report_html(path)

    section = _section(html, AUDIT_HEADING)
    trial_id = audit.loc[0, "source_trial"]
    assert f'<b class="bad">Trial {trial_id} (' in section
    assert "would have won by 0.0050 MAP@10" in section
    assert '<b class="bad">yes</b>' in section


def test_report_without_finished_search_files(make_experiment) -> None:
    html = build_report_html(make_experiment(n_trials=12, max_epochs=9))

    assert REPEATS_HEADING in html
    assert AUDIT_HEADING in html
    assert "No seed repeats: confirm.parquet is not in the folder; the search writes it" in html
    assert "No pruning audit: audit.parquet is not in the folder; the search writes it" in html
    assert n_figures(html) == 4


def test_report_best_config_without_repeats(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, write_best_config=True)

    html = build_report_html(path)

    assert "the search ran without seed repeats (--confirm-top 0)" in html
    assert "the search ran without an audit (--audit-pruned 0)" in html
    assert "selected by last-epoch validation map@10 (max) among finished trials" in html


def test_report_seed_repeats_failures_listed(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=2)
    reruns = pd.read_parquet(path / "reruns.parquet")
    reruns["error"] = None
    reruns.loc[0, "error"] = "RuntimeError: <boom>"
    reruns.to_parquet(path / "reruns.parquet", index=False)

    html = build_report_html(path)

    section = _section(html, REPEATS_HEADING, AUDIT_HEADING)
    assert "1 seed repeats failed and are left out of the table" in section
    assert f"<code>{reruns.loc[0, 'source_trial']} seed 1</code>" in section
    assert "RuntimeError: &lt;boom&gt;" in section


def test_report_escapes_selected_by(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=2)
    document = yaml.safe_load((path / "best_config.yaml").read_text())
    document["source"]["selected_by"] = "<script>alert(1)</script>"
    (path / "best_config.yaml").write_text(yaml.safe_dump(document))

    html = build_report_html(path)

    assert "<script>alert(1)</script>" not in html
    assert "selected by &lt;script&gt;alert(1)&lt;/script&gt;" in html
