import math

import pandas as pd
import pytest
from scipy import stats

from tune_rec.confirm import (
    audit_verdicts,
    best_by_mean,
    confirmation_seeds,
    select_audit_trials,
    summarise_repeats,
)
from tune_rec.experiment import ExperimentLog


def test_seeds_exclude_search_seed():
    assert confirmation_seeds(7, 3) == [8, 9, 10]


def test_summary_mean_std_and_t_interval():
    runs = pd.DataFrame(
        {
            "source_trial": ["a", "a", "a", "b", "b", "b"],
            "rank": [1, 1, 1, 2, 2, 2],
            "map@10": [0.80, 0.82, 0.84, 0.70, 0.70, 0.70],
            "test_map@10": [0.7, 0.7, 0.7, 0.6, 0.6, 0.6],
        }
    )
    summary = summarise_repeats(runs, metrics=("map@10",)).set_index("source_trial")
    assert summary.loc["a", "map@10_mean"] == pytest.approx(0.82)
    assert summary.loc["a", "map@10_std"] == pytest.approx(0.02)
    half = stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)
    assert summary.loc["a", "map@10_ci_low"] == pytest.approx(0.82 - half)
    assert summary.loc["a", "map@10_ci_high"] == pytest.approx(0.82 + half)
    assert summary.loc["b", "map@10_std"] == pytest.approx(0.0, abs=1e-12)
    assert summary.loc["a", "test_map@10_mean"] == pytest.approx(0.7)
    assert summary.loc["a", "n_seeds"] == 3


def test_single_seed_has_no_interval():
    runs = pd.DataFrame({"source_trial": ["a"], "map@10": [0.8]})
    row = summarise_repeats(runs, metrics=("map@10",)).iloc[0]
    assert row["map@10_mean"] == 0.8
    assert math.isnan(row["map@10_ci_low"])


def test_best_by_mean_respects_mode():
    summary = pd.DataFrame({"source_trial": ["a", "b"], "map@10_mean": [0.8, 0.9]})
    assert best_by_mean(summary, "map@10", "max") == "b"
    assert best_by_mean(summary, "map@10", "min") == "a"


def test_audit_margin_and_verdict():
    audit = pd.DataFrame({"source_trial": ["a", "b"], "map@10": [0.81, 0.79]})
    verdicts = audit_verdicts(audit, 0.80, "map@10", "max").set_index("source_trial")
    assert verdicts.loc["a", "margin"] == pytest.approx(0.01)
    assert bool(verdicts.loc["a", "would_have_won"])
    assert not bool(verdicts.loc["b", "would_have_won"])


def _result(epoch, value):
    return {"epoch": epoch, "map@10": value}


def test_audit_selection_spreads_over_types(tmp_path):
    log = ExperimentLog(tmp_path, max_epochs=9, metric="map@10", mode="max")
    for trial_id, schedule, value in [
        ("f1", "fixed", 0.70),
        ("f2", "fixed", 0.75),
        ("i1", "increase", 0.60),
        ("d1", "decrease", 0.65),
        ("done", "fixed", 0.9),
    ]:
        log.add_result(trial_id, {"schedule": schedule}, _result(0, value))
    for epoch in range(1, 9):
        log.add_result("done", {}, _result(epoch, 0.9))
    for trial_id in ("f1", "f2", "i1", "d1", "done"):
        log.complete(trial_id, {})
    chosen = [t.trial_id for t in select_audit_trials(log, 3)]
    assert chosen == ["d1", "f2", "i1"]
    assert [t.trial_id for t in select_audit_trials(log, 10)] == ["d1", "f2", "i1", "f1"]
