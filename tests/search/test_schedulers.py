"""ASHA per schedule type against Ray's ASHA, driven with results by hand (Ray not started)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tune_rec.search.schedulers import PerScheduleASHA

ASHA = {"time_attr": "training_iteration", "max_t": 9, "grace_period": 3, "reduction_factor": 3}


@dataclass(eq=False)
class FakeTrial:
    trial_id: str
    config: dict = field(default_factory=dict)


def _decisions(scheduler):
    """Six trials: three fixed that look strong at epoch 3, three increase that look weak."""
    scheduler.set_search_properties("map@10", "max")
    trials = [FakeTrial(f"f{i}", {"schedule": "fixed"}) for i in range(3)]
    trials += [FakeTrial(f"i{i}", {"schedule": "increase"}) for i in range(3)]
    values = {"f0": 0.80, "f1": 0.79, "f2": 0.78, "i0": 0.70, "i1": 0.60, "i2": 0.50}
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    decisions = {}
    for trial in trials:
        result = {"training_iteration": 3, "map@10": values[trial.trial_id]}
        decisions[trial.trial_id] = scheduler.on_trial_result(None, trial, result)
    return decisions


def test_plain_asha_stops_every_late_ramp():
    decisions = _decisions(ASHAScheduler(**ASHA))
    assert all(decisions[f"i{i}"] == TrialScheduler.STOP for i in range(3))


def test_per_schedule_asha_keeps_best_of_each_type():
    decisions = _decisions(PerScheduleASHA(**ASHA))
    assert decisions["i0"] == TrialScheduler.CONTINUE
    assert decisions["i2"] == TrialScheduler.STOP
    assert decisions["f0"] == TrialScheduler.CONTINUE
    assert decisions["f2"] == TrialScheduler.STOP


def test_per_schedule_asha_debug_string_names_types():
    scheduler = PerScheduleASHA(**ASHA)
    _decisions(scheduler)
    text = scheduler.debug_string()
    assert "fixed:" in text
    assert "increase:" in text
