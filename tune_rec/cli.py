"""The ``tune-rec`` command: search, train, export, report and data.

Exit codes: 0 on success, 1 when a run fails, 2 for invalid input or usage, 130 when
interrupted (Ctrl-C). Results go to stdout, logs to stderr, and ``-v`` and ``-q`` set the log
level.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tune_rec import __version__
from tune_rec.errors import InvalidInputError, TuneRecError

logger = logging.getLogger("tune_rec")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}    success
  {EXIT_FAILED}    the run failed (for example, no trial of a search finished)
  {EXIT_USAGE}    invalid input or usage: a flag, search space, config, data or experiment file
  {EXIT_INTERRUPTED}  interrupted with Ctrl-C; tune-rec search --resume continues a search"""

# Defaults of the search flags whose absence a resume must tell apart from an explicit value.
SEARCH_DEFAULTS: dict[str, Any] = {
    "results_dir": Path("results"),
    "max_failures": 1,
    "confirm_top": 3,
    "confirm_seeds": 3,
    "audit_pruned": 2,
}
# Flags of the work after the trials, which settings.json stores for a resume.
RERUN_FLAGS = ("confirm_top", "confirm_seeds", "audit_pruned")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit with code 2 and a hint to --help.

    Abbreviated flags are rejected, so that a mistyped flag is an error rather than a
    silent match of another flag.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _integer(text: str) -> int:
    """Return ``text`` as an int, with a message that names the value when it is not one."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number; got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


# Optuna's samplers seed NumPy's legacy RandomState, which takes seeds from 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1


def _seed(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to {MAX_SEED} (2**32 - 1); got {value}"
        )
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more; got {text}")
    return value


def _local_folder(text: str) -> Path:
    """Return ``text`` as a path, rejecting a URI such as ``s3://bucket/results``."""
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        raise argparse.ArgumentTypeError(
            f"must be a folder of this machine's file system, not a URI; got {text!r}. "
            "tune-rec writes its tables and report there with ordinary file I/O, and Ray "
            "stores its experiment state beside them: for a cluster, mount a file system "
            f"that every node shares (NFS, or the {scheme.group(1)} bucket through a FUSE "
            "mount) and pass its path"
        )
    return Path(text)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder that holds ml-100k/u.data or receives it on download "
        "(default: $TUNE_REC_DATA_DIR, else ~/.cache/tune-rec)",
    )
    parser.add_argument(
        "--data",
        metavar="PATH",
        help="a ratings file of your own instead of MovieLens-100K: TSV, CSV or Parquet with "
        "user, item, rating and optionally timestamp columns",
    )


def _add_log_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Add -v and -q. Subcommands take them too, with a default that keeps the top level's."""
    parser.add_argument(
        "-v", "--verbose", action="count", default=default, help="more log output (-vv: debug)"
    )
    parser.add_argument(
        "-q", "--quiet", action="count", default=default, help="less log output: warnings only"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every subcommand and option."""
    parser = _Parser(
        prog="tune-rec",
        description="Search the hyperparameters and the alpha schedule of a joint-loss "
        "recommender with Ray Tune.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tune-rec {__version__}")
    _add_log_options(parser, default=0)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    search = commands.add_parser(
        "search", help="run a search", description="Run a hyperparameter and schedule search."
    )
    search.add_argument(
        "--space", type=Path, help="search space YAML file (required unless --resume)"
    )
    search.add_argument("--num-samples", type=_positive_int, help="number of trials")
    search.add_argument(
        "--max-epochs", type=_positive_int, help="full budget of each trial, in epochs"
    )
    search.add_argument(
        "--seed",
        type=_seed,
        help=f"seed of the split, the sampler and training, from 0 to {MAX_SEED}",
    )
    search.add_argument(
        "--cpus-per-trial", type=_non_negative_float, help="CPUs reserved per trial"
    )
    search.add_argument(
        "--gpus-per-trial",
        type=_non_negative_float,
        help="GPUs per trial; fractions share a GPU (0.25: four trials on one GPU)",
    )
    search.add_argument(
        "--name",
        help="experiment name: the folder under --results-dir (default: "
        "<space name>-<UTC date and time>)",
    )
    search.add_argument(
        "--results-dir",
        type=_local_folder,
        help="folder of experiment folders (default: results); with --address, a path that "
        "every node of the cluster reaches, such as a shared file system",
    )
    search.add_argument(
        "--resume",
        type=_local_folder,
        metavar="EXPERIMENT",
        help="continue the interrupted search in this experiment folder, with the settings and "
        "flags of its first run; other flags that would change the search are ignored, with a "
        "warning",
    )
    search.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing experiment of the same name",
    )
    search.add_argument(
        "--address",
        help="attach to an existing Ray cluster: auto (the cluster that `ray start` last "
        "started on this machine), HOST:PORT (its GCS address) or ray://HOST:PORT (Ray "
        "Client); default: $RAY_ADDRESS when set, else start a local Ray with this "
        "machine's CPUs and GPUs",
    )
    search.add_argument(
        "--dashboard",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="start the Ray dashboard with the local Ray and print its URL (default: off; "
        "it costs about 170 MiB and a few seconds of start-up); with --address, the "
        "cluster's own dashboard URL is printed instead",
    )
    search.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="address the dashboard binds to (default: 127.0.0.1, this machine only); another "
        "address lets anyone who reaches it submit jobs",
    )
    search.add_argument(
        "--max-failures",
        type=_integer,
        help="retries of a trial that raises, from its last checkpoint (default: 1)",
    )
    search.add_argument(
        "--checkpoint-every",
        type=_positive_int,
        default=5,
        help="epochs between trial checkpoints; the last epoch is always kept (default: 5)",
    )
    search.add_argument(
        "--asha-compare",
        choices=("all", "schedule_type"),
        help="which trials an ASHA rung compares: all (Ray Tune's ASHA) or schedule_type "
        "(each schedule type has rungs of its own); default: the search space's setting",
    )
    search.add_argument(
        "--confirm-top",
        type=_integer,
        metavar="K",
        help="retrain the K best finished configs with fresh seeds and pick the winner by "
        "their mean validation metric; 0 turns it off (default: 3)",
    )
    search.add_argument(
        "--confirm-seeds",
        type=_positive_int,
        metavar="N",
        help="fresh seeds per config for --confirm-top (default: 3)",
    )
    search.add_argument(
        "--audit-pruned",
        type=_integer,
        metavar="N",
        help="continue N trials that the scheduler stopped, spread over the schedule types, "
        "to the full budget and report whether any would have won; 0 turns it off "
        "(default: 2)",
    )
    search.add_argument(
        "--no-report", action="store_true", help="skip writing report.html at the end"
    )
    search.add_argument(
        "--mlflow-uri",
        metavar="URI",
        help="also log every trial as an MLflow run to this tracking URI: http(s)://HOST:PORT "
        "of a tracking server, sqlite:///PATH, or file:///PATH (MLflow 3 needs "
        "MLFLOW_ALLOW_FILE_STORE=true for a file store); needs pip install 'tune-rec[mlflow]'",
    )
    search.add_argument(
        "--mlflow-experiment",
        metavar="NAME",
        help="MLflow experiment of the runs (default: the experiment's name); needs --mlflow-uri",
    )
    _add_data_options(search)

    train = commands.add_parser(
        "train",
        help="train one config without Ray",
        description="Train one config (for example a best_config.yaml) without Ray and print "
        "its validation metrics.",
    )
    train.add_argument("--config", type=Path, required=True, help="config YAML file")
    train.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    train.add_argument(
        "--test", action="store_true", help="also print the metrics on the test split"
    )
    _add_data_options(train)

    export = commands.add_parser(
        "export",
        help="write the top configs of an experiment",
        description="Write the top configs of an experiment, one file each.",
    )
    export.add_argument("experiment", type=Path, help="experiment folder")
    export.add_argument(
        "--top",
        type=_positive_int,
        default=5,
        help="number of configs to write, best first; 1 or more (default: 5)",
    )
    export.add_argument(
        "--format",
        choices=("yaml", "json"),
        default="yaml",
        help="file format of each config: yaml or json (default: yaml)",
    )
    export.add_argument(
        "--output", type=Path, help="output folder (default: <experiment>/exports)"
    )

    report = commands.add_parser(
        "report",
        help="write the HTML report of an experiment",
        description="Write report.html from the files of an experiment folder, once or, with "
        "--watch, repeatedly while its search runs.",
    )
    report.add_argument("experiment", type=Path, help="experiment folder")
    report.add_argument(
        "--top",
        type=_positive_int,
        default=10,
        help="number of finished configs in the top-configs table; 1 or more (default: 10)",
    )
    report.add_argument(
        "--watch",
        type=float,
        metavar="SECONDS",
        help="rewrite the report every SECONDS seconds while the search runs; stops after the "
        "rewrite that follows best_config.yaml or the end of a search without a winner, or on "
        "Ctrl-C",
    )
    report.add_argument(
        "--png",
        action="store_true",
        help="also write each figure as a PNG file into <experiment>/figures (needs Kaleido 1 "
        "or later and a Chrome or Chromium browser)",
    )

    data = commands.add_parser("data", help="fetch or describe the ratings")
    data_commands = data.add_subparsers(
        dest="data_command", metavar="ACTION", parser_class=_Parser
    )
    data_commands.required = True
    fetch = data_commands.add_parser(
        "fetch",
        help="download and verify MovieLens-100K",
        description="Download MovieLens-100K into the data folder and verify its SHA-256.",
    )
    fetch.add_argument(
        "--data-dir",
        type=Path,
        help="target folder (default: $TUNE_REC_DATA_DIR, else ~/.cache/tune-rec)",
    )
    fetch.add_argument("--force", action="store_true", help="download even if a copy exists")
    info = data_commands.add_parser(
        "info",
        help="describe the ratings and their split",
        description="Print the size, checksum and split of the ratings.",
    )
    _add_data_options(info)
    info.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help=f"seed of the split, from 0 to {MAX_SEED} (default: 0)",
    )
    info.add_argument(
        "--format",
        choices=("yaml", "json"),
        default="yaml",
        help="output format: yaml or json (default: yaml)",
    )
    for leaf in (search, train, export, report, fetch, info):
        _add_log_options(leaf, default=argparse.SUPPRESS)
    return parser


def configure_logging(verbose: int, quiet: int) -> None:
    """Send logs to stderr at INFO, DEBUG with -vv, WARNING with -q."""
    level = logging.INFO
    if quiet:
        level = logging.WARNING
    elif verbose >= 2:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("tune_rec")
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    handlers = {
        "search": _search,
        "train": _train,
        "export": _export,
        "report": _report,
        "data": _data,
    }
    try:
        return handlers[args.command](args, argv)
    except TuneRecError as error:
        logger.error("%s", error)
        return error.exit_code
    except KeyboardInterrupt:
        logger.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the last resort of the command line
        logger.debug("unexpected error", exc_info=True)
        logger.error(
            "%s failed unexpectedly: %s: %s; run with -vv for the traceback, and report it if "
            "the input is valid",
            args.command,
            type(error).__name__,
            error,
        )
        return EXIT_FAILED


def _emit(document: Any, fmt: str = "yaml") -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    else:
        from tune_rec.experiment import dump_yaml

        sys.stdout.write(dump_yaml(document))


def _data_settings_with_overrides(settings: Any, args: argparse.Namespace) -> Any:
    if getattr(args, "data", None):
        return settings.model_copy(update={"path": args.data})
    return settings


def _at_least_zero(flag: str, value: int) -> int:
    if value < 0:
        raise InvalidInputError(f"{flag} must be 0 (off) or more; got {value}")
    return value


def _resumed_experiment(folder: Path) -> tuple[dict[str, Any], Any]:
    """Read the settings and the resolved search space of the experiment to resume.

    The tables are read too, so that a corrupt file fails here rather than once Ray runs.

    Raises:
        InvalidInputError: the folder contains no experiment, or one of its files is corrupt.
    """
    from tune_rec.experiment import (
        EPOCHS_FILE,
        SETTINGS_FILE,
        TRIALS_FILE,
        read_settings,
        read_table,
    )
    from tune_rec.space import parse_search_space

    fix = "restore it from a copy, or start a new search with --name"
    settings = read_settings(folder, fix=fix)
    if settings is None:
        raise InvalidInputError(
            f"--resume: {folder} holds no experiment ({SETTINGS_FILE} not found); pass the "
            "folder of an earlier search"
        )
    if not isinstance(settings.get("space"), dict):
        raise InvalidInputError(
            f"{folder / SETTINGS_FILE} is corrupt: it has no 'space' object, so the search "
            f"cannot be resumed; {fix}"
        )
    for name in (TRIALS_FILE, EPOCHS_FILE):
        read_table(folder, name, fix=fix)
    space = parse_search_space(settings["space"], source=str(folder / SETTINGS_FILE))
    return settings, space


def _finished_resume(folder: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """Return the summary of an experiment whose search has ended, or None to resume it.

    Raises:
        InvalidInputError: every trial ended and none finished, so a resume has nothing to run.
    """
    from tune_rec.experiment import (
        BEST_CONFIG_FILE,
        TRIALS_FILE,
        ended_without_winner,
        read_table,
        search_completed,
    )

    if ended_without_winner(settings, read_table(folder, TRIALS_FILE)):
        raise InvalidInputError(
            f"--resume: the search in {folder} has ended with no finished trial, so there is "
            f"nothing to resume; the error column of {folder / TRIALS_FILE} says why each "
            "trial failed. Fix the cause and start a new search with --name or --overwrite"
        )
    if not search_completed(folder):
        return None
    logger.warning(
        "--resume: the search in %s has already finished, so there is nothing to resume and "
        "%s is kept as it is; start a new search with --name to search again",
        folder,
        BEST_CONFIG_FILE,
    )
    return {
        "experiment": str(folder),
        "status": "finished",
        "best_config": str(folder / BEST_CONFIG_FILE),
        "train_again": f"tune-rec train --config {folder / BEST_CONFIG_FILE}",
    }


def _ignored_resume_flags(
    args: argparse.Namespace, folder: Path, settings: dict[str, Any], space: Any
) -> list[str]:
    """Return the flags given with --resume that it cannot honour, each with what it keeps.

    A resume continues the search that its first run set up: Ray restores the trials, the
    searcher, the scheduler and the run settings, and the winner is chosen with the first
    run's --confirm-top, --confirm-seeds and --audit-pruned.
    """
    from tune_rec.experiment import RERUNS_KEY

    scheduler = space.scheduler
    first_run_values: dict[str, tuple[str, Any]] = {
        "space": ("--space", f"its {folder.name}/search_space.yaml"),
        "num_samples": ("--num-samples", space.num_samples),
        "max_epochs": ("--max-epochs", space.max_epochs),
        "seed": ("--seed", space.seed),
        "cpus_per_trial": ("--cpus-per-trial", space.resources.cpus_per_trial),
        "gpus_per_trial": ("--gpus-per-trial", space.resources.gpus_per_trial),
        "asha_compare": (
            "--asha-compare",
            scheduler.compare if scheduler.type == "asha" else "its fifo scheduler",
        ),
        "data": ("--data", space.data.path or space.data.dataset),
        "max_failures": ("--max-failures", settings.get("max_failures", "its first value")),
        "mlflow_uri": ("--mlflow-uri", "the trackers of its first run"),
        "mlflow_experiment": ("--mlflow-experiment", "the trackers of its first run"),
    }
    stored = settings.get(RERUNS_KEY) or {}
    for key in RERUN_FLAGS:
        if key in stored:
            first_run_values[key] = (f"--{key.replace('_', '-')}", stored[key])

    ignored = []
    for key, (flag, value) in first_run_values.items():
        flag_value = getattr(args, key)
        if key == "data" and flag_value is not None and _absolute_path(flag_value) == value:
            # The first run stored its --data path absolute.
            continue
        if flag_value is None or flag_value == value:
            continue
        ignored.append(f"{flag} {flag_value} (the search keeps {value})")
    if args.name is not None and args.name != folder.name:
        ignored.append(f"--name {args.name} (the resume writes to {folder})")
    if args.results_dir is not None and Path(args.results_dir).resolve() != folder.parent:
        ignored.append(f"--results-dir {args.results_dir} (the resume writes to {folder})")
    if args.overwrite:
        ignored.append("--overwrite (a resume never replaces its experiment)")
    return ignored


def _resume_reruns(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, int]:
    """Return --confirm-top, --confirm-seeds and --audit-pruned for a resume.

    The first run's values come from settings.json; an experiment written before tune-rec
    stored them takes the flags, or their defaults.
    """
    from tune_rec.experiment import RERUNS_KEY

    stored = settings.get(RERUNS_KEY) or {}
    reruns = {}
    for key in RERUN_FLAGS:
        if key in stored:
            reruns[key] = int(stored[key])
        else:
            reruns[key] = _flag_or_default(args, key)
    return reruns


def check_folder_path(flag: str, path: Path) -> None:
    """Raise InvalidInputError when ``path`` or a folder above it is not a folder.

    A missing folder is fine, because the command creates it.
    """
    for candidate in (path, *path.parents):
        if not candidate.exists():
            continue
        if candidate.is_dir():
            return
        if candidate == path:
            raise InvalidInputError(
                f"{flag} {path} is a file, not a folder; pass a folder, which is created if "
                "it is missing"
            )
        raise InvalidInputError(
            f"{flag} {path} cannot be created, because {candidate} is a file; pass a folder, "
            "or a path where one can be created"
        )


def _absolute_path(text: str) -> str:
    return str(Path(text).expanduser().resolve())


def _flag_or_default(args: argparse.Namespace, key: str) -> Any:
    value = getattr(args, key)
    return SEARCH_DEFAULTS[key] if value is None else value


def _space_from_flags(args: argparse.Namespace) -> Any:
    """Return the search space of a new search, with the command-line flags applied.

    A relative ratings path, from --data or the space's data.path, is taken from the working
    directory and made absolute.
    """
    from tune_rec.space import load_search_space

    if args.space is None:
        raise InvalidInputError("search needs --space PATH (a search space YAML file) or --resume")
    space = load_search_space(args.space)
    overrides = {
        key: getattr(args, key)
        for key in ("num_samples", "max_epochs", "seed", "cpus_per_trial", "gpus_per_trial")
        if getattr(args, key) is not None
    }
    if overrides:
        space = space.with_overrides(**overrides)
    if space.seed > MAX_SEED:
        raise InvalidInputError(
            f"seed in {args.space} must be from 0 to {MAX_SEED} (2**32 - 1), the seeds that "
            f"Optuna's samplers take; got {space.seed}. Set a smaller seed in the file or pass "
            "--seed"
        )
    if args.asha_compare:
        if space.scheduler.type != "asha":
            raise InvalidInputError(
                f"--asha-compare needs the asha scheduler; the space's scheduler is "
                f"{space.scheduler.type}"
            )
        scheduler = space.scheduler.model_copy(update={"compare": args.asha_compare})
        space = space.model_copy(update={"scheduler": scheduler})
    data_path = args.data or space.data.path
    if data_path is not None:
        # Stored absolute in settings.json and best_config.yaml, so that `tune-rec train
        # --config` and `tune-rec export` find the file from any working directory.
        data = space.data.model_copy(update={"path": _absolute_path(data_path)})
        space = space.model_copy(update={"data": data})
    return space


def _search(args: argparse.Namespace, argv: list[str]) -> int:
    from tune_rec.data import load_dataset
    from tune_rec.experiment import SPACE_FILE
    from tune_rec.search.ray_session import resolve_address
    from tune_rec.search.runner import SearchOptions, run_search

    # Checked before the data is read or Ray starts, so that a typo fails at once.
    address = resolve_address(args.address)
    if args.mlflow_experiment and not args.mlflow_uri:
        raise InvalidInputError("--mlflow-experiment needs --mlflow-uri URI")

    if args.resume:
        folder = Path(args.resume).resolve()
        settings, space = _resumed_experiment(folder)
        ignored = _ignored_resume_flags(args, folder, settings, space)
        if ignored:
            logger.warning(
                "--resume continues the search with the settings of its first run, so these "
                "flags are ignored: %s",
                "; ".join(ignored),
            )
        finished = _finished_resume(folder, settings)
        if finished is not None:
            _emit(finished)
            return EXIT_OK
        space_path = folder / SPACE_FILE
        results_dir, name = folder.parent, folder.name
        reruns = _resume_reruns(args, settings)
        max_failures = settings.get("max_failures", SEARCH_DEFAULTS["max_failures"])
    else:
        if args.mlflow_uri:
            from tune_rec.search.tracking import check_mlflow_store

            check_mlflow_store(args.mlflow_uri)
        space, space_path = _space_from_flags(args), args.space
        results_dir = _flag_or_default(args, "results_dir")
        check_folder_path("--results-dir", results_dir)
        name = args.name
        reruns = {key: _flag_or_default(args, key) for key in RERUN_FLAGS}
        max_failures = _flag_or_default(args, "max_failures")
    _at_least_zero("--max-failures", max_failures)
    _at_least_zero("--confirm-top", reruns["confirm_top"])
    _at_least_zero("--audit-pruned", reruns["audit_pruned"])

    if space.data.split_seed is None:
        # Written out, so that a retrain or a seed repeat with another seed keeps the split.
        space = space.model_copy(
            update={"data": space.data.model_copy(update={"split_seed": space.seed})}
        )

    dataset = load_dataset(space.data, seed=space.seed, data_dir=args.data_dir)
    options = SearchOptions(
        space=space,
        space_path=space_path,
        name=name,
        results_dir=results_dir,
        data_dir=args.data_dir,
        address=address,
        dashboard=args.dashboard,
        dashboard_host=args.dashboard_host,
        resume=bool(args.resume),
        overwrite=args.overwrite and not args.resume,
        max_failures=max_failures,
        checkpoint_every=args.checkpoint_every,
        progress_seconds=0.0 if args.quiet else 10.0,
        write_report=not args.no_report,
        **reruns,
        log_to_driver=args.verbose > 0,
        argv=argv,
        mlflow_uri=None if args.resume else args.mlflow_uri,
        mlflow_experiment=None if args.resume else args.mlflow_experiment,
    )
    outcome = run_search(options, dataset)
    _print_search_summary(outcome)
    return EXIT_OK


def _print_search_summary(outcome: Any) -> None:
    from tune_rec.experiment import FAILED, FINISHED, STOPPED

    statuses = [trial.status for trial in outcome.log.trials.values()]
    document = outcome.best_document
    summary = {
        "experiment": str(outcome.folder),
        "trials": {
            "finished": statuses.count(FINISHED),
            "stopped_early": statuses.count(STOPPED),
            "failed": statuses.count(FAILED),
        },
        "best_trial": outcome.best.trial_id,
        "selected_by": document["source"]["selected_by"],
        "best_config": document["config"],
        "metrics": document["metrics"],
        **({"confirmation": document["confirmation"]} if "confirmation" in document else {}),
        "files": {
            "best_config": str(outcome.folder / "best_config.yaml"),
            "trials": str(outcome.folder / "trials.parquet"),
            "epochs": str(outcome.folder / "epochs.parquet"),
            "report": str(outcome.folder / "report.html"),
        },
        "train_again": f"tune-rec train --config {outcome.folder / 'best_config.yaml'}",
    }
    _emit(summary)


def _train(args: argparse.Namespace, argv: list[str]) -> int:
    from tune_rec.data import load_dataset
    from tune_rec.exports import load_run_config
    from tune_rec.metrics import Evaluator
    from tune_rec.training import Trainer

    check_device(args.device)
    config, data, document = load_run_config(args.config)
    data = _data_settings_with_overrides(data, args)
    dataset = load_dataset(data, seed=config.seed, data_dir=args.data_dir)
    expected = document.get("data_checksum")
    if expected and not args.data and dataset.checksum != expected:
        logger.warning(
            "data checksum %s differs from the config's %s; metrics will differ",
            dataset.checksum,
            expected,
        )
    trainer = Trainer(config, dataset, data, device=args.device)
    record = None
    for record in trainer.epochs():
        logger.info(
            "epoch %d/%d: alpha %.4g, loss_target %.5f, map@10 %.6f",
            record.epoch + 1,
            config.max_epochs,
            record.alpha,
            record.loss_target,
            record.metrics["map@10"],
        )
    result: dict[str, Any] = {"validation": record.metrics}
    if args.test:
        test = Evaluator(
            dataset,
            split="test",
            relevance_threshold=data.relevance_threshold,
            normalisation=config.normalisation,
        )
        result["test"] = trainer.evaluate(test)
    recorded = (document.get("metrics") or {}).get("map@10")
    if recorded is not None:
        result["recorded_map@10"] = recorded
        result["difference_map@10"] = record.metrics["map@10"] - recorded
    _emit(result)
    return EXIT_OK


def check_device(name: str) -> None:
    """Raise InvalidInputError unless PyTorch can train on the device that ``name`` names."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise InvalidInputError(
            f"--device {name!r} is not a torch device ({error}); pass cpu, cuda or cuda:N"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
            raise InvalidInputError(
                f"--device {name}: PyTorch {torch.__version__} ({build}) finds no CUDA GPU on "
                "this machine; pass --device cpu, or run on a machine with a GPU and the CUDA "
                "build of PyTorch"
            )
        n_gpus = torch.cuda.device_count()
        if device.index is not None and device.index >= n_gpus:
            raise InvalidInputError(
                f"--device {name}: this machine has {n_gpus} CUDA GPU(s), numbered from 0; "
                f"pass cuda:0 to cuda:{n_gpus - 1}"
            )
        return
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as error:
        raise InvalidInputError(
            f"--device {name}: PyTorch cannot use this device on this machine ({error}); pass "
            "--device cpu"
        ) from error


def _export(args: argparse.Namespace, argv: list[str]) -> int:
    from tune_rec.exports import export_top

    if args.output is not None:
        check_folder_path("--output", args.output)
    paths = export_top(args.experiment, args.top, args.format, args.output)
    _emit({"written": [str(path) for path in paths]})
    return EXIT_OK


def _report(args: argparse.Namespace, argv: list[str]) -> int:
    from tune_rec.report import watch_report, write_pngs, write_report
    from tune_rec.report.watch import validate_interval

    if args.watch is not None:
        validate_interval(args.watch, name="--watch")
    folder = Path(args.experiment)
    if not folder.is_dir():
        raise InvalidInputError(
            f"experiment folder {folder} not found; pass the folder of one experiment, for "
            "example results/<experiment>"
        )
    if args.watch is not None:
        result = watch_report(folder, args.watch, top_k=args.top, png=args.png)
        document: dict[str, Any] = {"report": str(result.report), "rewrites": result.n_rewrites}
        if result.failure is not None:
            document["search_failed"] = result.failure
        pngs = result.pngs
    else:
        document = {"report": str(write_report(folder, top_k=args.top))}
        pngs = write_pngs(folder, top_k=args.top) if args.png else []
    if args.png:
        document["figures"] = [str(path) for path in pngs]
    _emit(document)
    return EXIT_OK


def _data(args: argparse.Namespace, argv: list[str]) -> int:
    from tune_rec.data import describe_dataset, fetch_ml100k, load_dataset

    if args.data_command == "fetch":
        path = fetch_ml100k(args.data_dir, force=args.force)
        _emit({"ml-100k": str(path)})
        return EXIT_OK

    from tune_rec.config import DataSettings

    settings = _data_settings_with_overrides(DataSettings(), args)
    dataset = load_dataset(settings, seed=args.seed, data_dir=args.data_dir)
    _emit(describe_dataset(dataset), args.format)
    return EXIT_OK
