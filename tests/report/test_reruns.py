"""Seed repeats and the pruning audit, read from the files that a finished search writes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tune_rec import confirm
from tune_rec.errors import InvalidInputError
from tune_rec.report.reader import AUDIT_FILE, CONFIRM_FILE, RERUNS_FILE, load_experiment
from tune_rec.report.reruns import (
    AuditRow,
    Interval,
    describe_audit,
    format_interval,
    pruning_audit,
    seed_repeats,
)


def _audit_row(trial_id: str, margin: float, schedule: str = "fixed") -> AuditRow:
    return AuditRow(
        trial_id=trial_id,
        schedule=schedule,
        stopped_at=3,
        value_at_stop=0.7,
        value_full=0.8 + margin,
        winner_value=0.8,
        margin=margin,
        would_have_won=margin > 0,
        from_checkpoint=True,
    )


def test_file_names_match_search_writer() -> None:
    assert CONFIRM_FILE == confirm.CONFIRM_FILE
    assert AUDIT_FILE == confirm.AUDIT_FILE
    assert RERUNS_FILE == "reruns.parquet"


def test_reader_without_finished_search_files(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=6, max_epochs=5))

    assert experiment.confirm is None
    assert experiment.reruns is None
    assert experiment.audit is None
    assert experiment.best_config is None
    assert experiment.notes == []


def test_reader_loads_finished_search_files(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=2, n_audit=2)

    experiment = load_experiment(path)

    assert len(experiment.confirm) == 2
    assert len(experiment.reruns) == 2 * 3 + 2
    assert len(experiment.audit) == 2
    assert experiment.best_config["source"]["selected_by"].startswith("best mean validation")
    assert experiment.notes == []


def test_reader_rejects_corrupt_confirm(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=2, n_audit=2)
    (path / CONFIRM_FILE).write_bytes(b"PAR1 truncated")

    with pytest.raises(InvalidInputError, match=r"confirm\.parquet is corrupt"):
        load_experiment(path)


def test_reader_rejects_corrupt_best_config(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=2, n_audit=2)
    (path / "best_config.yaml").write_text("source: [unclosed\n")

    with pytest.raises(InvalidInputError, match=r"best_config\.yaml is corrupt"):
        load_experiment(path)


def test_seed_repeats_absent_without_confirm(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=6, max_epochs=5))

    assert seed_repeats(experiment) is None


def test_seed_repeats_rows_by_rank(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=3, n_confirm_seeds=4)
    experiment = load_experiment(path)
    trials = experiment.trials.set_index("trial_id")
    summary = pd.read_parquet(path / CONFIRM_FILE).set_index("source_trial")

    repeats = seed_repeats(experiment)

    assert repeats.metric == "map@10"
    assert [row.rank for row in repeats.rows] == [1, 2, 3]
    assert repeats.seeds == [1, 2, 3, 4]
    assert repeats.failures == []
    first = repeats.rows[0]
    assert first.n_seeds == 4
    assert len(first.seed_values) == 4
    assert first.schedule == trials.loc[first.trial_id, "config.schedule"]
    assert first.search_value == pytest.approx(trials.loc[first.trial_id, "last_map@10"])
    interval = first.intervals["map@10"]
    assert interval.mean == pytest.approx(summary.loc[first.trial_id, "map@10_mean"])
    assert interval.low == pytest.approx(summary.loc[first.trial_id, "map@10_ci_low"])
    assert interval.high == pytest.approx(summary.loc[first.trial_id, "map@10_ci_high"])
    assert set(first.intervals) == {
        "map@1",
        "map@5",
        "map@10",
        "test_map@1",
        "test_map@5",
        "test_map@10",
    }


def test_seed_repeats_winner_from_best_config(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=3)
    summary = pd.read_parquet(path / CONFIRM_FILE)

    repeats = seed_repeats(load_experiment(path))

    assert repeats.winner_id == confirm.best_by_mean(summary, "map@10", "max")
    assert repeats.selected_by.startswith("best mean validation map@10 over 3 fresh seeds")


def test_seed_repeats_without_best_config(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=2, write_best_config=False)

    repeats = seed_repeats(load_experiment(path))

    assert repeats.winner_id is None
    assert repeats.selected_by is None
    assert len(repeats.rows) == 2


def test_seed_repeats_lists_failed_reruns(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=2)
    reruns = pd.read_parquet(path / RERUNS_FILE)
    reruns["error"] = None
    reruns.loc[1, "error"] = "RuntimeError: out of memory"
    reruns.to_parquet(path / RERUNS_FILE, index=False)

    repeats = seed_repeats(load_experiment(path))

    assert repeats.failures == [
        (reruns.loc[1, "source_trial"], str(reruns.loc[1, "seed"]), "RuntimeError: out of memory")
    ]


def test_seed_repeats_one_seed_has_no_interval(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_confirm=1, n_confirm_seeds=1)

    row = seed_repeats(load_experiment(path)).rows[0]

    assert row.n_seeds == 1
    assert math.isnan(row.intervals["map@10"].half_width)
    assert not math.isnan(row.intervals["map@10"].mean)


def test_pruning_audit_absent_without_file(make_experiment) -> None:
    experiment = load_experiment(make_experiment(n_trials=12, max_epochs=9, n_confirm=2))

    assert pruning_audit(experiment) is None


def test_pruning_audit_rows(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_audit=2)
    experiment = load_experiment(path)
    audit_file = pd.read_parquet(path / AUDIT_FILE).set_index("source_trial")
    epochs = experiment.epochs

    audit = pruning_audit(experiment)

    assert audit.metric == "map@10"
    assert len(audit.rows) == 2
    assert audit.rows[0].margin >= audit.rows[1].margin
    for row in audit.rows:
        recorded = audit_file.loc[row.trial_id]
        stopped = epochs[
            (epochs["trial_id"] == row.trial_id) & (epochs["training_iteration"] == row.stopped_at)
        ]
        assert row.stopped_at == int(recorded["stopped_at"])
        assert row.value_at_stop == pytest.approx(stopped["map@10"].iloc[0])
        assert row.value_full == pytest.approx(recorded["map@10"])
        assert row.winner_value == pytest.approx(recorded["winner_value"])
        assert row.margin == pytest.approx(recorded["margin"])
        assert row.would_have_won == bool(recorded["would_have_won"])
        assert row.from_checkpoint is True


def test_pruning_audit_computes_missing_margin(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_audit=1)
    audit_file = pd.read_parquet(path / AUDIT_FILE)
    audit_file["map@10"] = audit_file["winner_value"] + 0.02
    audit_file.drop(columns=["margin", "would_have_won"]).to_parquet(
        path / AUDIT_FILE, index=False
    )

    row = pruning_audit(load_experiment(path)).rows[0]

    assert row.margin == pytest.approx(0.02)
    assert row.would_have_won


def test_pruning_audit_only_failures(make_experiment) -> None:
    path = make_experiment(n_trials=12, max_epochs=9, n_audit=1)
    (path / AUDIT_FILE).unlink()
    reruns = pd.read_parquet(path / RERUNS_FILE)
    reruns["error"] = "TuneError: trial crashed"
    reruns.to_parquet(path / RERUNS_FILE, index=False)

    audit = pruning_audit(load_experiment(path))

    assert audit.rows == []
    assert audit.failures == [(reruns.loc[0, "source_trial"], "TuneError: trial crashed")]
    assert "no verdict" in audit.verdict


def test_describe_audit_none_would_have_won() -> None:
    rows = [_audit_row("a", -0.004), _audit_row("b", -0.02, "increase")]

    text = describe_audit(rows, "MAP@10")

    assert text == (
        "None of the 2 audited trials would have beaten the winner; the closest, trial a "
        "(fixed), fell short by 0.0040 MAP@10."
    )


def test_describe_audit_one_trial() -> None:
    text = describe_audit([_audit_row("a", -0.01)], "MAP@10")

    assert text == (
        "The audited trial a (fixed) would not have beaten the winner: it fell short by "
        "0.0100 MAP@10."
    )


def test_describe_audit_one_would_have_won() -> None:
    rows = [_audit_row("b", 0.003, "decrease"), _audit_row("a", -0.01)]

    text = describe_audit(rows, "MAP@10")

    assert text.startswith("Trial b (decrease) would have won by 0.0030 MAP@10")


def test_describe_audit_several_would_have_won() -> None:
    rows = [_audit_row("b", 0.003), _audit_row("c", 0.001), _audit_row("a", -0.01)]

    text = describe_audit(rows, "MAP@10")

    assert text.startswith("2 of the 3 audited trials would have won (trial b by 0.0030, trial c")


def test_describe_audit_tie() -> None:
    assert "tied with the winner" in describe_audit([_audit_row("a", 0.0)], "MAP@10")


def test_describe_audit_without_rows() -> None:
    assert describe_audit([], "MAP@10") == (
        "No audited trial ran to the full budget, so the audit has no verdict."
    )


@pytest.mark.parametrize(
    ("interval", "n_seeds", "expected"),
    [
        (Interval(0.84213, 0.002, 0.838, 0.8463), 3, "0.8421 ± 0.0042 (3 seeds)"),
        (Interval(0.8, math.nan, math.nan, math.nan), 1, "0.8000 (1 seed)"),
        (Interval(math.nan, math.nan, math.nan, math.nan), 2, "– (2 seeds)"),
    ],
)
def test_format_interval(interval: Interval, n_seeds: int, expected: str) -> None:
    assert format_interval(interval, n_seeds) == expected
