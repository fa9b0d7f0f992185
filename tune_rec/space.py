"""Search space: the YAML schema, its checks, and the Optuna define-by-run function built from it.

A search space file sets the experiment settings (metric, budget, searcher, scheduler, resources,
data) and, under ``params``, one entry per trial-config key:

- a plain scalar: a constant;
- a mapping with ``distribution`` (named as Ray Tune names it) or ``value`` (a constant), and an
  optional ``when`` condition;
- a list of such mappings: alternatives for one key under exclusive conditions.

``when`` maps param names to a value or a list of values, and holds when every named param was
set to one of its listed values (AND). A condition on a param that is not set in the config does
not hold. Every check runs when the space is parsed, before any trial starts, and every failure
raises :class:`~tune_rec.errors.InvalidInputError` with the dotted path of the offending key.

Example:
    >>> space = load_search_space("search_spaces/alpha.yaml")
    >>> study = optuna.create_study(direction=space.mode + "imize")
    >>> config = space.define_by_run(study.ask())
    >>> train_config = space.to_train_config(config)
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    PrivateAttr,
    Strict,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from tune_rec.config import SEARCHABLE_KEYS, DataSettings, Normalisation, Protocol, TrainConfig
from tune_rec.errors import InvalidInputError
from tune_rec.schedules import SCHEDULE_PARAMS, SCHEDULE_TYPES

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

REPORTED_METRICS: tuple[str, ...] = (
    "map@1",
    "map@5",
    "map@10",
    "ndcg@10",
    "recall@10",
    "loss_target",
    "loss_embedding",
    "loss_ranking",
)
"""Validation metrics and losses reported every epoch; the search metric is one of them."""

METRIC_MODES: dict[str, Literal["max", "min"]] = {
    metric: ("min" if metric.startswith("loss_") else "max") for metric in REPORTED_METRICS
}
"""The mode that improves each reported metric: higher ranking metrics, lower losses."""

DISTRIBUTIONS: tuple[str, ...] = (
    "uniform",
    "quniform",
    "loguniform",
    "randint",
    "lograndint",
    "choice",
    "grid",
)
"""Distribution names, as Ray Tune's sampling functions name them."""

DEFAULT_NUM_SAMPLES = 20
"""Trials of a tpe or random search whose space does not set ``num_samples``."""

# Conditions are checked exactly by enumerating every combination of the params that conditions
# name. Past this many combinations the overlap and schedule-coverage checks are skipped.
MAX_CONDITION_COMBINATIONS = 10_000

# Keys that the schedule types read, in the order of SCHEDULE_PARAMS.
_SCHEDULE_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys(key for keys in SCHEDULE_PARAMS.values() for key in keys)
)
_DEFAULT_SCHEDULE: str = TrainConfig.model_fields["schedule"].default
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# ---------------------------------------------------------------------------------------------
# YAML loading


class _SpaceLoader(yaml.SafeLoader):
    """Safe YAML loader that reads ``1e-3`` as a float and rejects duplicate keys.

    PyYAML implements YAML 1.1, whose float pattern requires a dot, so plain ``safe_load`` reads
    ``1e-3`` as the string "1e-3". A repeated key would otherwise silently replace the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in first_lines:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r} (first set on line {first_lines[key]})",
                        key_node.start_mark,
                    )
                first_lines[key] = key_node.start_mark.line + 1
            except TypeError:
                # An unhashable key: the base constructor reports it with its position.
                break
        return super().construct_mapping(node, deep=deep)


_SpaceLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def _read_yaml(path: Path) -> Any:
    """Read a YAML file with :class:`_SpaceLoader`, raising InvalidInputError that names it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(
            f"search space file not found: {path}. Check the path, or pass one of the files "
            "in search_spaces/."
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"cannot read search space file {path}: {error}") from None

    try:
        # A SafeLoader subclass: Python object tags are rejected, nothing is evaluated.
        return yaml.load(text, Loader=_SpaceLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = error.problem or error.context or "syntax error"
        raise InvalidInputError(
            f"invalid YAML in search space {where}: {problem}. Fix the file there."
        ) from None
    except yaml.YAMLError as error:
        raise InvalidInputError(f"invalid YAML in search space {path}: {error}") from None


# ---------------------------------------------------------------------------------------------
# Field types


def _check_scalar(value: Any) -> bool | int | float | str:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number; got {value}")
        return value
    raise ValueError(
        f"must be a number, a string or a boolean; got {value!r} ({type(value).__name__})"
    )


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


Scalar = Annotated[bool | int | float | str, PlainValidator(_check_scalar)]
"""A constant, choice or condition value."""

Number = Annotated[float, Strict(), AllowInfNan(False)]
"""A finite int or float; strings and booleans are rejected instead of converted."""

Integer = Annotated[int, Strict()]
"""An int; floats, strings and booleans are rejected instead of converted."""

Condition = dict[str, Annotated[list[Scalar], BeforeValidator(_as_list)]]
"""Param name -> accepted values; a single value is read as a one-element list."""


class _StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------
# Params


class _Alternative(_StrictModel):
    """One way to set a config key: a distribution or a constant, with its condition."""

    when: Condition = Field(default_factory=dict)
    """Condition under which this alternative sets the key. An empty condition always holds."""

    @property
    def kind(self) -> str:
        """Distribution name, or "constant"."""
        return getattr(self, "distribution", "constant")

    def holds(self, config: dict[str, Any]) -> bool:
        """Return whether the condition holds for the params set so far in ``config``."""
        return all(key in config and config[key] in values for key, values in self.when.items())

    def finite_values(self) -> list[Any] | None:
        """Return every value this alternative can set, or None for a numeric range."""
        return None

    def value_range(self) -> tuple[float, float] | None:
        """Return the lowest and highest value this alternative can set, when numeric."""
        values = self.finite_values()
        numbers = [value for value in values or [] if _is_number(value)]
        if not numbers or len(numbers) != len(values or []):
            return None
        return min(numbers), max(numbers)

    def check(self, path: str) -> list[tuple[str, str]]:
        """Return the (path, message) pairs of this alternative's invalid settings."""
        return []

    def suggest(self, trial: optuna.trial.Trial, name: str) -> Any:
        """Sample a value through ``trial`` under the Optuna parameter name ``name``."""
        raise NotImplementedError


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Range(_Alternative):
    low: Number
    high: Number

    def value_range(self) -> tuple[float, float]:
        return self.low, self.high

    def check(self, path: str) -> list[tuple[str, str]]:
        if self.low >= self.high:
            return [
                (
                    f"{path}.low",
                    f"low must be below high ({self.high}); got {self.low}. Lower low or raise "
                    "high.",
                )
            ]
        return []


class UniformParam(_Range):
    """Float drawn uniformly between low and high."""

    distribution: Literal["uniform"]

    def suggest(self, trial: optuna.trial.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high)


class QUniformParam(_Range):
    """Float drawn uniformly from low, low + q, ..., high, through Optuna's ``step``.

    Ray Tune's ``quniform`` rounds to multiples of q instead. The two agree when low is a
    multiple of q.
    """

    distribution: Literal["quniform"]
    q: Number

    def check(self, path: str) -> list[tuple[str, str]]:
        errors = super().check(path)
        if self.q <= 0:
            errors.append((f"{path}.q", f"q must be positive; got {self.q}. Set q above 0."))
        elif not errors:
            n_steps = (self.high - self.low) / self.q
            if abs(n_steps - round(n_steps)) > 1e-9 * max(1.0, abs(n_steps)):
                errors.append(
                    (
                        f"{path}.q",
                        f"high - low ({self.high} - {self.low}) must be a multiple of q so "
                        f"that high is a step; got q = {self.q}. Change q or the bounds.",
                    )
                )
        return errors

    def suggest(self, trial: optuna.trial.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.q)


class LogUniformParam(_Range):
    """Float drawn uniformly in log space between low and high, which must be positive."""

    distribution: Literal["loguniform"]

    def check(self, path: str) -> list[tuple[str, str]]:
        errors = super().check(path)
        if self.low <= 0:
            errors.append(
                (
                    f"{path}.low",
                    f"low must be positive for a loguniform distribution; got {self.low}. Set "
                    "a positive low, or use uniform to include 0.",
                )
            )
        return errors

    def suggest(self, trial: optuna.trial.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=True)


class _IntRange(_Alternative):
    low: Integer
    high: Integer
    """Exclusive upper bound, as in Ray Tune's ``randint`` and ``lograndint``."""

    def value_range(self) -> tuple[float, float]:
        return self.low, self.high - 1

    def check(self, path: str) -> list[tuple[str, str]]:
        if self.low >= self.high:
            return [
                (
                    f"{path}.low",
                    f"low must be below high ({self.high}), which is exclusive; got {self.low}. "
                    f"Set high to at least low + 1 = {self.low + 1}.",
                )
            ]
        return []


class RandIntParam(_IntRange):
    """Integer drawn uniformly from low, ..., high - 1."""

    distribution: Literal["randint"]

    def suggest(self, trial: optuna.trial.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high - 1)


class LogRandIntParam(_IntRange):
    """Integer drawn uniformly in log space from low, ..., high - 1, with low at least 1."""

    distribution: Literal["lograndint"]

    def check(self, path: str) -> list[tuple[str, str]]:
        errors = super().check(path)
        if self.low <= 0:
            errors.append(
                (
                    f"{path}.low",
                    f"low must be positive for a lograndint distribution; got {self.low}. Set "
                    "low to 1 or more, or use randint to include 0.",
                )
            )
        return errors

    def suggest(self, trial: optuna.trial.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high - 1, log=True)


class _Values(_Alternative):
    values: list[Scalar]

    def finite_values(self) -> list[Any]:
        return list(self.values)

    def check(self, path: str) -> list[tuple[str, str]]:
        if not self.values:
            return [
                (f"{path}.values", f"{self.kind} needs at least one value; got []. List them.")
            ]
        duplicates = [value for i, value in enumerate(self.values) if value in self.values[:i]]
        if duplicates:
            return [
                (
                    f"{path}.values",
                    f"values must be distinct; got {self.values} with {duplicates[0]!r} twice. "
                    "Remove the repeats.",
                )
            ]
        return []

    def suggest(self, trial: optuna.trial.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.values)


class ChoiceParam(_Values):
    """One of ``values``, drawn by the searcher (a grid searcher enumerates them)."""

    distribution: Literal["choice"]


class GridParam(_Values):
    """Each of ``values`` in turn. Only searcher grid accepts it."""

    distribution: Literal["grid"]


class ConstantParam(_Alternative):
    """A fixed value, set whenever the condition holds."""

    value: Scalar

    def finite_values(self) -> list[Any]:
        return [self.value]

    def suggest(self, trial: optuna.trial.Trial, name: str) -> Any:
        return self.value


_PARAM_MODELS: dict[str, type[_Alternative]] = {
    "uniform": UniformParam,
    "quniform": QUniformParam,
    "loguniform": LogUniformParam,
    "randint": RandIntParam,
    "lograndint": LogRandIntParam,
    "choice": ChoiceParam,
    "grid": GridParam,
    "constant": ConstantParam,
}


def _param_tag(value: Any) -> str | None:
    if isinstance(value, _Alternative):
        return value.kind
    if not isinstance(value, dict):
        return None
    if "distribution" in value:
        name = value["distribution"]
        return name if isinstance(name, str) and name in DISTRIBUTIONS else None
    return "constant" if "value" in value else None


def _as_alternatives(value: Any) -> Any:
    """Read a param entry as a list of alternatives: scalar -> constant, mapping -> [mapping]."""
    if isinstance(value, list):
        if not value:
            raise ValueError(
                "an empty list defines no alternative; give a mapping, a list of mappings or "
                "a constant"
            )
        if not all(isinstance(item, dict | _Alternative) for item in value):
            raise ValueError(
                f"a list lists alternatives, each a mapping with distribution or value; got "
                f"{value!r}. For a choice write {{distribution: choice, values: {value!r}}}"
            )
        return value
    if isinstance(value, dict | _Alternative):
        return [value]
    return [{"value": value}]


Alternative = Annotated[
    Annotated[UniformParam, Tag("uniform")]
    | Annotated[QUniformParam, Tag("quniform")]
    | Annotated[LogUniformParam, Tag("loguniform")]
    | Annotated[RandIntParam, Tag("randint")]
    | Annotated[LogRandIntParam, Tag("lograndint")]
    | Annotated[ChoiceParam, Tag("choice")]
    | Annotated[GridParam, Tag("grid")]
    | Annotated[ConstantParam, Tag("constant")],
    Discriminator(_param_tag, custom_error_type="unknown_kind", custom_error_message="unknown"),
]
ParamEntry = Annotated[list[Alternative], BeforeValidator(_as_alternatives)]


# ---------------------------------------------------------------------------------------------
# Searcher, scheduler, resources


class TPESearcher(_StrictModel):
    """Optuna's TPE sampler: random configs first, then a density model of the good ones."""

    type: Literal["tpe"] = "tpe"
    n_startup_trials: Integer = Field(10, ge=0)
    """Trials sampled at random before TPE starts modelling."""


class RandomSearcher(_StrictModel):
    """Optuna's random sampler."""

    type: Literal["random"] = "random"


class GridSearcher(_StrictModel):
    """Optuna's grid sampler over every grid and choice param."""

    type: Literal["grid"] = "grid"


class ASHAScheduler(_StrictModel):
    """Ray Tune's ASHA scheduler over epochs, with ``max_t`` set to the space's ``max_epochs``.

    The defaults differ from Ray Tune's own (grace_period 1, reduction_factor 4).
    """

    type: Literal["asha"] = "asha"
    grace_period: Integer = Field(3, ge=1)
    """Epochs every trial runs before it may be stopped."""
    reduction_factor: Number = Field(3.0, gt=1.0)
    """1 / fraction of trials that continue at each rung."""
    compare: Literal["all", "schedule_type"] = "all"
    """Which trials a rung compares: ``all`` (Ray Tune's ASHA), or ``schedule_type``, where
    each schedule type keeps rungs of its own, so a schedule that raises alpha late is
    stopped only when it trails trials of its own type."""


class FIFOScheduler(_StrictModel):
    """No early stopping: every trial runs the full ``max_epochs``."""

    type: Literal["fifo"] = "fifo"


def _type_tag(default: str, choices: Iterable[str]) -> Any:
    known = tuple(choices)

    def tag(value: Any) -> str | None:
        if isinstance(value, BaseModel):
            return getattr(value, "type", None)
        if not isinstance(value, dict):
            return None
        name = value.get("type", default)
        return name if isinstance(name, str) and name in known else None

    return tag


_SEARCHER_MODELS: dict[str, type[BaseModel]] = {
    "tpe": TPESearcher,
    "random": RandomSearcher,
    "grid": GridSearcher,
}
_SCHEDULER_MODELS: dict[str, type[BaseModel]] = {"asha": ASHAScheduler, "fifo": FIFOScheduler}

Searcher = Annotated[
    Annotated[TPESearcher, Tag("tpe")]
    | Annotated[RandomSearcher, Tag("random")]
    | Annotated[GridSearcher, Tag("grid")],
    Discriminator(
        _type_tag("tpe", _SEARCHER_MODELS),
        custom_error_type="unknown_kind",
        custom_error_message="unknown",
    ),
]
Scheduler = Annotated[
    Annotated[ASHAScheduler, Tag("asha")] | Annotated[FIFOScheduler, Tag("fifo")],
    Discriminator(
        _type_tag("asha", _SCHEDULER_MODELS),
        custom_error_type="unknown_kind",
        custom_error_message="unknown",
    ),
]


class Resources(_StrictModel):
    """Resources that Ray reserves for each trial."""

    cpus_per_trial: Number = Field(1.0, gt=0.0)
    gpus_per_trial: Number = Field(0.0, ge=0.0)
    """Fractions share one GPU between trials."""
    max_concurrent_trials: Integer | None = Field(None, ge=1)
    """None: as many as the cluster's resources allow."""


# ---------------------------------------------------------------------------------------------
# The search space


class _SpaceErrors(ValueError):
    """Several invalid settings found by the cross-field checks, each with its path."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors))
        self.errors = errors


class SearchSpace(_StrictModel):
    """A parsed and checked search space; build it with :func:`load_search_space`.

    ``params`` maps each config key to its alternatives, in file order. ``mode`` and
    ``num_samples`` are resolved when left out: ``mode`` from the metric, ``num_samples`` to the
    number of grid points under a grid searcher and to :data:`DEFAULT_NUM_SAMPLES` otherwise.
    """

    name: str | None = None
    """Experiment name prefix. :func:`load_search_space` sets it to the file's stem when unset."""
    description: str | None = None
    metric: str = "map@10"
    mode: Literal["max", "min"] | None = None
    protocol: Protocol = "rated"
    """Evaluation protocol of the metric."""
    normalisation: Normalisation = "min_k_r"
    max_epochs: Integer = Field(20, ge=1)
    """Full budget T of every trial, in epochs."""
    num_samples: Integer | None = Field(None, ge=1)
    """Number of trials."""
    seed: Integer = Field(0, ge=0)
    searcher: Searcher = Field(default_factory=TPESearcher)
    scheduler: Scheduler = Field(default_factory=ASHAScheduler)
    resources: Resources = Field(default_factory=Resources)
    data: DataSettings = Field(default_factory=DataSettings)
    params: dict[str, ParamEntry]

    _order: list[str] = PrivateAttr(default_factory=list)
    _source: str = PrivateAttr(default="<dict>")

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        errors = _check_settings(self)
        for key, alternatives in self.params.items():
            for index, alternative in enumerate(alternatives):
                path = self.alternative_path(key, index)
                errors += alternative.check(path)
                errors += _check_field(key, alternative, path, self.searcher.type)
        errors += [
            (f"params.{key}", f"unknown param {key!r}; use one of {', '.join(SEARCHABLE_KEYS)}")
            for key in self.params
            if key not in SEARCHABLE_KEYS
        ]
        if errors:
            raise _SpaceErrors(errors)

        errors = _check_conditions(self)
        if errors:
            raise _SpaceErrors(errors)
        order, errors = _dependency_order(self.params)
        if errors:
            raise _SpaceErrors(errors)
        self._order = order

        errors = _check_combinations(self)
        if errors:
            raise _SpaceErrors(errors)
        self._resolve_defaults()
        return self

    def _resolve_defaults(self) -> None:
        expected_mode = METRIC_MODES[self.metric]
        if self.mode is None:
            self.mode = expected_mode
        elif self.mode != expected_mode:
            logger.warning(
                "mode %r optimises metric %r in the unusual direction: %s is better when %s. "
                "Set mode: %s unless that is intended.",
                self.mode,
                self.metric,
                self.metric,
                "higher" if expected_mode == "max" else "lower",
                expected_mode,
            )

        if self.searcher.type == "grid":
            n_points = self.n_grid_points()
            if self.num_samples is None:
                self.num_samples = n_points
            elif self.num_samples > n_points:
                raise _SpaceErrors(
                    [
                        (
                            "num_samples",
                            f"searcher grid has {n_points} grid points, so num_samples must be "
                            f"at most {n_points}; got {self.num_samples}. Leave num_samples out "
                            "to run each grid point once.",
                        )
                    ]
                )
            elif self.num_samples < n_points:
                logger.warning(
                    "num_samples %d is below the %d grid points of searcher grid, so some grid "
                    "points never run",
                    self.num_samples,
                    n_points,
                )
        elif self.num_samples is None:
            self.num_samples = DEFAULT_NUM_SAMPLES

        if isinstance(self.scheduler, ASHAScheduler) and (
            self.scheduler.grace_period >= self.max_epochs
        ):
            logger.warning(
                "scheduler.grace_period %d is not below max_epochs %d, so ASHA stops no trial "
                "early",
                self.scheduler.grace_period,
                self.max_epochs,
            )

    # -- paths ------------------------------------------------------------------------------

    def alternative_path(self, key: str, index: int) -> str:
        """Return the dotted path of an alternative, with ``[index]`` when the key has several."""
        return f"params.{key}[{index}]" if len(self.params.get(key, ())) > 1 else f"params.{key}"

    def optuna_name(self, key: str, index: int) -> str:
        """Return the Optuna parameter name of alternative ``index`` of ``key``."""
        return f"{key}[{index}]" if len(self.params[key]) > 1 else key

    # -- overrides --------------------------------------------------------------------------

    def with_overrides(
        self,
        *,
        num_samples: int | None = None,
        max_epochs: int | None = None,
        seed: int | None = None,
        cpus_per_trial: float | None = None,
        gpus_per_trial: float | None = None,
    ) -> SearchSpace:
        """Return a checked copy with command-line flags applied. None keeps the file's value.

        Raises:
            InvalidInputError: a flag value is invalid, naming the flag, or the space becomes
                invalid with it (for example a grid smaller than ``--num-samples``).
        """
        flags = {
            "num_samples": (num_samples, int, 1),
            "max_epochs": (max_epochs, int, 1),
            "seed": (seed, int, 0),
            "cpus_per_trial": (cpus_per_trial, float, None),
            "gpus_per_trial": (gpus_per_trial, float, 0),
        }
        errors = []
        for key, (value, kind, minimum) in flags.items():
            if value is None:
                continue
            message = _check_flag(value, kind, minimum)
            if message:
                errors.append(f"--{key.replace('_', '-')} {message}")
        if errors:
            raise InvalidInputError("invalid command-line flag: " + "; ".join(errors))

        data = self.model_dump(mode="python")
        for key in ("num_samples", "max_epochs", "seed"):
            if flags[key][0] is not None:
                data[key] = flags[key][0]
        for key in ("cpus_per_trial", "gpus_per_trial"):
            if flags[key][0] is not None:
                data["resources"][key] = float(flags[key][0])
        return parse_search_space(data, source=f"{self._source} with command-line flags")

    # -- sampling ---------------------------------------------------------------------------

    def define_by_run(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        """Sample one config through an Optuna trial; pass this as OptunaSearch's ``space``.

        Params are visited in dependency order. Only params whose condition holds are suggested,
        and a key with several alternatives is suggested under ``f"{key}[{index}]"`` so that
        each Optuna parameter has one distribution.

        Returns:
            The complete config under plain keys: suggested values and the constants whose
            condition holds. Ray Tune's OptunaSearch merges it with the suggested values, so its
            config may also hold the ``key[index]`` names; :meth:`to_train_config` drops them.
        """
        config: dict[str, Any] = {}
        for key in self._order:
            for index, alternative in enumerate(self.params[key]):
                if alternative.holds(config):
                    config[key] = alternative.suggest(trial, self.optuna_name(key, index))
                    break
        return config

    def grid(self) -> dict[str, list[Any]]:
        """Return the Optuna parameter name -> values of every grid and choice param.

        This is the ``search_space`` of Optuna's ``GridSampler``.

        NOTE: GridSampler calls ``Study.stop()`` after the last grid point, which raises
        RuntimeError outside ``Study.optimize`` (Optuna 5.1). A plain ask-and-tell loop must
        catch it at the last ``tell``. Ray Tune's OptunaSearch (2.60) logs it as a warning.

        Raises:
            InvalidInputError: a param has a numeric range, which a grid cannot enumerate.
        """
        grid: dict[str, list[Any]] = {}
        for key, alternatives in self.params.items():
            for index, alternative in enumerate(alternatives):
                if isinstance(alternative, _Values):
                    grid[self.optuna_name(key, index)] = list(alternative.values)
                elif not isinstance(alternative, ConstantParam):
                    raise InvalidInputError(
                        f"{self.alternative_path(key, index)}: a grid cannot enumerate "
                        f"distribution {alternative.kind!r}; use grid or choice values"
                    )
        return grid

    def n_grid_points(self) -> int:
        """Return the number of grid points that Optuna's ``GridSampler`` runs.

        NOTE: this is the product over every grid and choice param, conditional ones included,
        so a param that applies to only some points repeats the configs of the others.
        """
        return math.prod(len(values) for values in self.grid().values())

    def searched_keys(self) -> list[str]:
        """Return the param keys with at least one sampled (not constant) alternative."""
        return [
            key
            for key, alternatives in self.params.items()
            if any(not isinstance(alternative, ConstantParam) for alternative in alternatives)
        ]

    def to_train_config(self, config: dict[str, Any]) -> TrainConfig:
        """Build a trial's TrainConfig from a sampled config and the experiment settings.

        Seed, ``max_epochs``, protocol and normalisation come from the space unless ``config``
        sets them. Optuna names of alternatives (``key[index]``) are dropped.

        Raises:
            InvalidInputError: the config is not a valid TrainConfig. The message contains it.
        """
        alternative_names = {
            self.optuna_name(key, index)
            for key, alternatives in self.params.items()
            if len(alternatives) > 1
            for index in range(len(alternatives))
        }
        values = {key: value for key, value in config.items() if key not in alternative_names}
        settings = {
            "seed": self.seed,
            "max_epochs": self.max_epochs,
            "protocol": self.protocol,
            "normalisation": self.normalisation,
        }
        try:
            return TrainConfig.model_validate({**settings, **values})
        except ValidationError as error:
            details = "; ".join(
                f"{_join_loc(item['loc']) or 'config'}: {_error_text(item)}"
                for item in error.errors()
            )
            raise InvalidInputError(
                f"config {values} is not a valid trial config: {details}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Return the space as plain data in its shortest form. Parsing it gives an equal space."""
        data = self.model_dump(mode="python", exclude={"params"})
        for key in ("name", "description"):
            if data[key] is None:
                del data[key]
        data["params"] = {}
        for key, alternatives in self.params.items():
            entries = []
            for alternative in alternatives:
                entry = alternative.model_dump(mode="python", exclude={"when"})
                if "distribution" in entry:
                    entry = {"distribution": entry.pop("distribution"), **entry}
                if alternative.when:
                    entry["when"] = {
                        name: values[0] if len(values) == 1 else list(values)
                        for name, values in alternative.when.items()
                    }
                if list(entry) == ["value"]:
                    entry = entry["value"]
                entries.append(entry)
            data["params"][key] = entries[0] if len(entries) == 1 else entries
        return data


# ---------------------------------------------------------------------------------------------
# Checks


def _check_flag(value: Any, kind: type, minimum: float | None) -> str | None:
    """Return the message for an invalid flag value, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number; got {value!r}"
    if kind is int and not isinstance(value, int):
        return f"must be a whole number; got {value!r}"
    if not math.isfinite(value):
        return f"must be finite; got {value!r}"
    if minimum is None and value <= 0:
        return f"must be above 0; got {value!r}. Pass a positive value."
    if minimum is not None and value < minimum:
        return f"must be at least {minimum}; got {value!r}. Pass {minimum} or more."
    return None


def _check_settings(space: SearchSpace) -> list[tuple[str, str]]:
    """Return errors of the experiment settings outside ``params``."""
    errors = []
    if space.metric not in REPORTED_METRICS:
        hint = (
            " Test-split metrics are computed only for finished winners, so search on the "
            "validation metric without the test_ prefix."
            if space.metric.startswith("test_")
            else ""
        )
        errors.append(
            (
                "metric",
                f"unknown metric {space.metric!r}; use one of {', '.join(REPORTED_METRICS)}."
                + hint,
            )
        )
    if space.name is not None and not _NAME_PATTERN.fullmatch(space.name):
        errors.append(
            (
                "name",
                f"name must start with a letter or digit and contain only letters, digits, "
                f"'.', '_' and '-', because it names the experiment folder; got {space.name!r}",
            )
        )
    return errors


def _field_adapter(key: str) -> tuple[TypeAdapter[Any], str]:
    """Return a validator of one TrainConfig field and its kind: "int", "float" or "literal"."""
    info = TrainConfig.model_fields[key]
    annotation = info.annotation
    arguments = get_args(annotation)
    if type(None) in arguments:
        # A search space cannot set None, so the optional fields are checked as their type.
        annotation = next(argument for argument in arguments if argument is not type(None))
    if get_origin(annotation) is Literal:
        kind = "literal"
    elif annotation is int:
        kind = "int"
    else:
        kind = "float"
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]
    return TypeAdapter(annotation), kind


_FIELD_ADAPTERS = {key: _field_adapter(key) for key in SEARCHABLE_KEYS}


def _check_field(
    key: str, alternative: _Alternative, path: str, searcher: str
) -> list[tuple[str, str]]:
    """Return errors of an alternative against its TrainConfig field and the searcher."""
    errors = []
    if alternative.kind == "grid" and searcher != "grid":
        errors.append(
            (
                f"{path}.distribution",
                f"distribution 'grid' needs searcher type grid; got searcher {searcher!r}. Use "
                "choice, or set searcher: {type: grid}.",
            )
        )
    if searcher == "grid" and alternative.finite_values() is None:
        errors.append(
            (
                f"{path}.distribution",
                f"searcher grid can only enumerate listed values, but this param has "
                f"distribution {alternative.kind!r}. List values with grid or choice, or use "
                "searcher tpe or random.",
            )
        )
    if key not in _FIELD_ADAPTERS:
        return errors

    adapter, kind = _FIELD_ADAPTERS[key]
    if kind == "literal" and alternative.finite_values() is None:
        return [
            *errors,
            (
                f"{path}.distribution",
                f"{key} takes names, so distribution {alternative.kind!r} is invalid; use "
                "choice, grid or a constant",
            ),
        ]
    if kind == "int" and isinstance(alternative, _Range):
        return [
            *errors,
            (
                f"{path}.distribution",
                f"{key} takes integers, but distribution {alternative.kind!r} samples floats; "
                "use randint, lograndint, choice or a constant",
            ),
        ]

    if isinstance(alternative, _Values):
        to_check = [(f"{path}.values[{i}]", v) for i, v in enumerate(alternative.values)]
    elif isinstance(alternative, ConstantParam):
        to_check = [(path, alternative.value)]
    else:
        low, high = alternative.value_range()
        to_check = [(f"{path}.low", low), (f"{path}.high", high)]
    for value_path, value in to_check:
        if key == "schedule" and value not in SCHEDULE_TYPES:
            errors.append(
                (
                    value_path,
                    f"unknown schedule type {value!r}; use one of {', '.join(SCHEDULE_TYPES)}",
                )
            )
            continue
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError as error:
            errors.append(
                (value_path, f"invalid value for {key}: {_error_text(error.errors()[0])}")
            )
    return errors


def _check_conditions(space: SearchSpace) -> list[tuple[str, str]]:
    """Return errors of ``when`` conditions: unknown params, impossible values, empty lists."""
    errors = []
    for key, alternatives in space.params.items():
        for index, alternative in enumerate(alternatives):
            for name, accepted in alternative.when.items():
                path = f"{space.alternative_path(key, index)}.when.{name}"
                if name not in space.params:
                    errors.append(
                        (
                            path,
                            f"the condition names {name!r}, which is not a param of this space; "
                            f"define params.{name} or remove the condition. Params: "
                            f"{', '.join(space.params)}",
                        )
                    )
                    continue
                possible = _possible_values(space.params[name])
                if possible is None:
                    errors.append(
                        (
                            path,
                            f"a condition can only name a param with a finite set of values "
                            f"(choice, grid or a constant); {name} is sampled from a range. "
                            f"Make {name} a choice, or condition on another param",
                        )
                    )
                    continue
                if not accepted:
                    errors.append(
                        (path, "the condition lists no value, so it never holds; list values")
                    )
                for value in accepted:
                    if value not in possible:
                        errors.append(
                            (
                                path,
                                f"{name} can never be {value!r}; its values are {possible}. "
                                "Fix the value or add it to the param",
                            )
                        )
    return errors


def _possible_values(alternatives: list[_Alternative]) -> list[Any] | None:
    """Return the values that some alternative can set, or None when one samples a range."""
    values: list[Any] = []
    for alternative in alternatives:
        finite = alternative.finite_values()
        if finite is None:
            return None
        values += [value for value in finite if value not in values]
    return values


def _dependency_order(
    params: dict[str, list[_Alternative]],
) -> tuple[list[str], list[tuple[str, str]]]:
    """Order params so that each comes after the params its conditions name.

    Ties keep file order. Returns the order and the errors, one per cycle found.
    """
    depends_on = {
        key: {name for alternative in alternatives for name in alternative.when}
        for key, alternatives in params.items()
    }
    order: list[str] = []
    pending = list(params)
    while pending:
        ready = next((key for key in pending if depends_on[key] <= set(order)), None)
        if ready is None:
            cycle = _find_cycle(pending, depends_on)
            return order, [
                (
                    f"params.{cycle[0]}.when",
                    f"conditions form a cycle: {' -> '.join(cycle)}. Remove one of these "
                    "conditions.",
                )
            ]
        order.append(ready)
        pending.remove(ready)
    return order, []


def _find_cycle(pending: list[str], depends_on: dict[str, set[str]]) -> list[str]:
    """Return a cycle among ``pending`` keys, each of which depends on another pending key."""
    path = [pending[0]]
    while True:
        following = sorted(name for name in depends_on[path[-1]] if name in pending)[0]
        if following in path:
            return [*path[path.index(following) :], following]
        path.append(following)


def _enumerate_combinations(space: SearchSpace) -> list[dict[str, Any]] | None:
    """Return every combination of values of the params that decide conditions.

    These are the params named in some condition, plus ``schedule``. A param of a combination
    is absent where none of its alternatives applies. Returns None past
    MAX_CONDITION_COMBINATIONS.
    """
    deciding = {name for alts in space.params.values() for alt in alts for name in alt.when}
    if "schedule" in space.params:
        deciding.add("schedule")
    combinations: list[dict[str, Any]] = [{}]
    for key in space._order:
        if key not in deciding:
            continue
        extended = []
        for combination in combinations:
            applying = [alt for alt in space.params[key] if alt.holds(combination)]
            if not applying:
                extended.append(combination)
                continue
            for value in applying[0].finite_values() or []:
                extended.append({**combination, key: value})
        combinations = extended
        if len(combinations) > MAX_CONDITION_COMBINATIONS:
            return None
    return combinations


def _describe_combination(combination: dict[str, Any]) -> str:
    """Return " when a = 1, b = 'x'" for a combination, or "" for the empty one."""
    if not combination:
        return ""
    return " when " + ", ".join(f"{key} = {value!r}" for key, value in combination.items())


def _check_combinations(space: SearchSpace) -> list[tuple[str, str]]:
    """Return errors found by evaluating every combination of the deciding params.

    These are overlapping alternatives, schedule params set for a schedule type that does not
    read them, missing schedule params, and alpha ranges that cannot meet their schedule type.
    Each error is reported once, for the first combination that shows it.
    """
    combinations = _enumerate_combinations(space)
    if combinations is None:
        logger.warning(
            "conditions of the search space have more than %d combinations; overlap and "
            "schedule-coverage checks skipped",
            MAX_CONDITION_COMBINATIONS,
        )
        return []

    found: dict[tuple[Any, ...], tuple[str, str]] = {}
    for combination in combinations:
        applying = {
            key: [i for i, alt in enumerate(alts) if alt.holds(combination)]
            for key, alts in space.params.items()
        }
        overlapping = {key: indices for key, indices in applying.items() if len(indices) > 1}
        for key, indices in overlapping.items():
            first, second = (space.alternative_path(key, i) for i in indices[:2])
            message = (
                f"overlaps {second}: both apply{_describe_combination(combination)}. Make "
                "their when conditions exclusive"
            )
            found.setdefault(("overlap", key, *indices[:2]), (first, message))
        if overlapping:
            continue
        chosen = {key: indices[0] for key, indices in applying.items() if indices}
        for error_key, path, message in _check_schedule(space, chosen, combination):
            found.setdefault(error_key, (path, message))
    return list(found.values())


def _check_schedule(
    space: SearchSpace, chosen: dict[str, int], combination: dict[str, Any]
) -> list[tuple[tuple[Any, ...], str, str]]:
    """Return errors of the schedule params under one combination of the deciding params.

    ``chosen`` maps each key that is set under the combination to the index of its applying
    alternative. Each error comes with a key that identifies it across combinations.
    """
    schedule = combination.get("schedule", _DEFAULT_SCHEDULE)
    needed = SCHEDULE_PARAMS[schedule]
    where = _describe_combination(combination)
    schedule_text = repr(schedule)
    if "schedule" not in combination:
        schedule_text += " (the default, because schedule is not set)"
    errors = []
    for key in _SCHEDULE_KEYS:
        if key not in needed and key in chosen:
            path = space.alternative_path(key, chosen[key])
            readers = ", ".join(name for name, keys in SCHEDULE_PARAMS.items() if key in keys)
            message = (
                f"applies{where}, but schedule type {schedule_text} does not read {key} "
                f"(it reads {', '.join(needed)}). Add a condition when: {{schedule: [...]}} "
                f"that lists only schedule types among {readers}"
            )
            errors.append((("unread", key, chosen[key], schedule), path, message))
        if key in needed and key not in chosen:
            if key in space.params:
                problem = f"no alternative of params.{key} applies{where}"
            else:
                problem = f"params.{key} is not defined"
            message = (
                f"schedule type {schedule_text} may be sampled but needs {key}, and {problem}. "
                f"Define {key} with when: {{schedule: {schedule}}}"
            )
            errors.append((("missing", key, schedule), f"params.{key}", message))
    if errors or any(key not in chosen for key in needed):
        return errors

    if schedule in ("increase", "decrease", "exponential"):
        start = ("alpha_start", chosen["alpha_start"])
        end = ("alpha_end", chosen["alpha_end"])
        for path, message in _check_alpha_ranges(space, schedule, start, end, where):
            errors.append((("range", schedule, start, end, path), path, message))
    if schedule == "step":
        path = space.alternative_path("warmup_epochs", chosen["warmup_epochs"])
        value_range = space.params["warmup_epochs"][chosen["warmup_epochs"]].value_range()
        if value_range and value_range[1] >= space.max_epochs:
            logger.warning(
                "%s reaches %s epochs, not below max_epochs %d, so some step schedules never "
                "switch to alpha_end",
                path,
                value_range[1],
                space.max_epochs,
            )
    return errors


def _check_alpha_ranges(
    space: SearchSpace,
    schedule: str,
    start: tuple[str, int],
    end: tuple[str, int],
    where: str,
) -> list[tuple[str, str]]:
    """Return errors when the alpha_start and alpha_end alternatives cannot meet the schedule.

    ``start`` and ``end`` are (key, alternative index) pairs.
    """
    start_path, end_path = space.alternative_path(*start), space.alternative_path(*end)
    start_range = space.params[start[0]][start[1]].value_range()
    end_range = space.params[end[0]][end[1]].value_range()
    if start_range is None or end_range is None:
        return []  # non-numeric values were already reported against the field
    spans = f"{start_path} spans {list(start_range)} and {end_path} spans {list(end_range)}{where}"
    if schedule == "increase" and start_range[1] >= end_range[0]:
        return [
            (
                start_path,
                f"schedule 'increase' needs alpha_start < alpha_end for every sample, but "
                f"{spans}. Keep the highest alpha_start below the lowest alpha_end",
            )
        ]
    if schedule == "decrease" and start_range[0] <= end_range[1]:
        return [
            (
                start_path,
                f"schedule 'decrease' needs alpha_start > alpha_end for every sample, but "
                f"{spans}. Keep the lowest alpha_start above the highest alpha_end",
            )
        ]
    if schedule == "exponential":
        return [
            (
                path,
                f"schedule 'exponential' needs alpha above 0, but {path} spans "
                f"{list(value_range)}{where}. Raise its lowest value above 0",
            )
            for path, value_range in ((start_path, start_range), (end_path, end_range))
            if value_range[0] <= 0
        ]
    return []


# ---------------------------------------------------------------------------------------------
# Parsing and error messages


def _join_loc(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text


def _error_path(loc: tuple[Any, ...], data: Any) -> str:
    """Return the user-facing path of a pydantic error location.

    Drops the tags of tagged unions and writes an alternative's index only when its key lists
    several alternatives, so that the path matches the file.
    """
    parts = list(loc)
    if len(parts) >= 3 and parts[0] == "params" and isinstance(parts[2], int):
        key, index = parts[1], parts[2]
        entry = data.get("params", {}).get(key) if isinstance(data, dict) else None
        listed = isinstance(entry, list) and len(entry) > 1
        head = f"params.{key}[{index}]" if listed else f"params.{key}"
        rest = parts[4:] if len(parts) > 3 and parts[3] in _PARAM_MODELS else parts[3:]
        tail = _join_loc(rest)
        if tail and not tail.startswith("["):
            tail = "." + tail
        return head + tail
    if len(parts) >= 2 and parts[0] in ("searcher", "scheduler"):
        return _join_loc([parts[0], *parts[2:]])
    return _join_loc(parts)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """Return the model whose fields sit at ``loc``, for listing its allowed keys."""
    if not loc:
        return SearchSpace
    head = loc[0]
    if head == "params" and len(loc) == 4:
        return _PARAM_MODELS.get(loc[3])
    if head == "searcher" and len(loc) == 2:
        return _SEARCHER_MODELS.get(loc[1])
    if head == "scheduler" and len(loc) == 2:
        return _SCHEDULER_MODELS.get(loc[1])
    if head == "resources" and len(loc) == 1:
        return Resources
    if head == "data" and len(loc) == 1:
        return DataSettings
    return None


def _error_text(error: Any) -> str:
    """Return pydantic's message for one error with the value received."""
    if error["type"] in ("value_error", "assertion_error"):
        return str(error["ctx"]["error"])
    return f"{error['msg']}; got {error['input']!r}"


def _unknown_kind_message(loc: tuple[Any, ...], value: Any) -> str:
    head = loc[0]
    if head in ("searcher", "scheduler"):
        models = _SEARCHER_MODELS if head == "searcher" else _SCHEDULER_MODELS
        if not isinstance(value, dict):
            return (
                f"{head} must be a mapping such as {{type: {next(iter(models))}}}; got {value!r}"
            )
        return f"unknown {head} type {value.get('type')!r}; use type: one of {', '.join(models)}"
    if isinstance(value, dict) and "distribution" in value:
        return (
            f"unknown distribution {value['distribution']!r}; use one of "
            f"{', '.join(DISTRIBUTIONS)}"
        )
    return (
        f"a param needs either distribution (one of {', '.join(DISTRIBUTIONS)}) or value (a "
        f"constant); got {value!r}"
    )


def _format_errors(error: ValidationError, data: Any) -> list[str]:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        ctx_error = item.get("ctx", {}).get("error")
        if isinstance(ctx_error, _SpaceErrors):
            lines += [f"{path}: {message}" for path, message in ctx_error.errors]
            continue
        path = _error_path(loc, data) or "search space"
        if item["type"] == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = f"; allowed keys here: {', '.join(model.model_fields)}" if model else ""
            message = (
                f"unknown key (value {item['input']!r}). Remove it or fix its spelling{allowed}"
            )
        elif item["type"] == "missing":
            message = "required key is missing; add it"
        elif item["type"] == "unknown_kind":
            message = _unknown_kind_message(loc, item["input"])
        else:
            message = _error_text(item)
        lines.append(f"{path}: {message}")
    return lines


def parse_search_space(data: Any, source: str = "<dict>") -> SearchSpace:
    """Parse and check a search space given as plain data (the content of the YAML file).

    Args:
        data: The mapping read from the file.
        source: What the data came from, for error messages.

    Raises:
        InvalidInputError: one line per invalid setting, each with its dotted path, the rule,
            the value received and the fix.
    """
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"search space {source} must be a mapping with at least a params key; got "
            f"{type(data).__name__} {data!r}"
        )
    try:
        space = SearchSpace.model_validate(data)
    except ValidationError as error:
        lines = _format_errors(error, data)
        raise InvalidInputError(
            f"invalid search space {source} ({len(lines)} error{'s' * (len(lines) > 1)}):\n"
            + "\n".join(f"  {line}" for line in lines)
        ) from None
    space._source = source
    return space


def load_search_space(path: str | Path) -> SearchSpace:
    """Read, parse and check a search space YAML file.

    YAML is loaded safely; ``1e-3``-style numbers are read as floats, and repeated keys are
    errors. ``name`` defaults to the file's stem.

    Raises:
        InvalidInputError: the file is missing or unreadable, is not valid YAML (with line and
            column), or is not a valid search space.
    """
    path = Path(path)
    data = _read_yaml(path)
    if isinstance(data, dict) and data.get("name") is None:
        data["name"] = path.stem
    return parse_search_space(data, source=str(path))
