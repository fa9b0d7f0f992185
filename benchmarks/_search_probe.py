"""Run ``tune-rec`` in this process and record when each phase of a search starts and ends.

Usage, from the repository root:

    python benchmarks/_search_probe.py EVENTS.json -- search --space SPACE.yaml ...

The arguments after ``--`` go to ``tune_rec.cli.main``. Timing wrappers are installed on the
functions that the search looks up at call time (``tune_rec.data.load_dataset``, ``ray.init``,
``ray.shutdown``, ``ray.tune.Tuner.fit`` and the experiment recorder's trial callbacks), so
tune-rec itself is unchanged. EVENTS.json receives a list of ``[name, seconds]`` pairs, with
seconds counted from $BENCH_LAUNCH_TIME (the parent's ``time.time()`` just before it started
this process) or else from this script's first line. A wrapper whose target does not exist is
skipped and named in the events as ``missing:<target>``.

$BENCH_PATCHES may name, comma-separated, changes to try without editing tune-rec:

- ``keep_all_checkpoints``: ``CheckpointConfig`` without ``num_to_keep``, so that Tune does
  not snapshot the experiment state after every few trial checkpoints.
- ``cap_reruns``: the reruns after the search (seed repeats of the top configs, the audit of
  stopped trials) are cut, in their planned order, to as many epochs as the search itself ran.
- ``warm_workers``: ``ray.init`` with a ``worker_process_setup_hook`` that imports the trainable's
  module (torch, Ray Tune, tune_rec.training) when a worker process starts, before a trial
  needs it.
"""

from __future__ import annotations

import time

_FIRST_LINE = time.time()

import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

_ORIGIN = float(os.environ.get("BENCH_LAUNCH_TIME", _FIRST_LINE))
_EVENTS: list[list] = [["interpreter_started", _FIRST_LINE - _ORIGIN]]


def _mark(name: str) -> None:
    _EVENTS.append([name, time.time() - _ORIGIN])


def _wrap(owner: object, attribute: str, name: str, *, once: bool = False) -> None:
    """Replace ``owner.attribute`` by a wrapper that marks ``name:start`` and ``name:end``."""
    original = getattr(owner, attribute, None)
    if original is None:
        _mark(f"missing:{name}")
        return
    seen = []

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if once and seen:
            return original(*args, **kwargs)
        seen.append(True)
        _mark(f"{name}:start")
        try:
            return original(*args, **kwargs)
        finally:
            _mark(f"{name}:end")

    setattr(owner, attribute, wrapper)


def _keep_all_checkpoints(tune) -> None:
    original = tune.CheckpointConfig

    def checkpoint_config(*args, **kwargs):
        kwargs.pop("num_to_keep", None)
        return original(*args, **kwargs)

    tune.CheckpointConfig = checkpoint_config
    _mark("patched:keep_all_checkpoints")


def _warm_workers(tune) -> None:
    import ray

    original = ray.init

    @functools.wraps(original)
    def init(*args, **kwargs):
        # The hook names a function without arguments in the trainable's module, so importing
        # the hook imports everything a trial needs.
        runtime_env = dict(kwargs.pop("runtime_env", None) or {})
        runtime_env["worker_process_setup_hook"] = "tune_rec.search.trainable._assigned_gpus"
        return original(*args, runtime_env=runtime_env, **kwargs)

    ray.init = init
    _mark("patched:warm_workers")


def _cap_reruns(tune) -> None:
    try:
        from tune_rec.search import rerun
    except ImportError:
        _mark("missing:cap_reruns")
        return
    original = rerun.plan_reruns

    @functools.wraps(original)
    def plan_reruns(folder, options, log):
        runs = original(folder, options, log)
        budget = sum(len(trial.epochs) for trial in log.trials.values())
        kept, spent = [], 0
        for run in runs:
            cost = options.space.max_epochs - (run.get("stopped_at") or 0)
            if spent + cost > budget:
                break
            kept.append(run)
            spent += cost
        _mark(f"cap_reruns:{len(kept)}_of_{len(runs)}")
        return kept

    rerun.plan_reruns = plan_reruns
    _mark("patched:cap_reruns")


_PATCHES = {
    "keep_all_checkpoints": _keep_all_checkpoints,
    "cap_reruns": _cap_reruns,
    "warm_workers": _warm_workers,
}


def _install() -> None:
    _mark("probe_imports_start")
    import tune_rec.cli  # noqa: F401
    import tune_rec.data

    _mark("tune_rec_cli_imported")
    _wrap(tune_rec.data, "load_dataset", "load_dataset")

    import ray
    from ray import tune

    _mark("ray_imported")
    for name in filter(None, os.environ.get("BENCH_PATCHES", "").split(",")):
        if name not in _PATCHES:
            raise SystemExit(f"unknown patch {name!r} in BENCH_PATCHES; known: {list(_PATCHES)}")
        _PATCHES[name](tune)
    _wrap(ray, "init", "ray_init")
    _wrap(ray, "shutdown", "ray_shutdown")
    _wrap(tune.Tuner, "fit", "tuner_fit")

    from tune_rec.search import recorder, runner

    _mark("search_modules_imported")
    _wrap(recorder.ExperimentRecorder, "on_trial_start", "trial_start")
    _wrap(recorder.ExperimentRecorder, "on_trial_result", "trial_result")
    _wrap(recorder.ExperimentRecorder, "on_trial_complete", "trial_complete")
    _wrap(runner, "finish_search", "finish_search")


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    events_path = Path(sys.argv[1])
    _install()
    from tune_rec.cli import main as cli_main

    _mark("cli_main:start")
    try:
        status = cli_main(sys.argv[3:])
    finally:
        _mark("cli_main:end")
        events_path.write_text(json.dumps(_EVENTS) + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
