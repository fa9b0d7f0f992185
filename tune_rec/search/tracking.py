"""Experiment trackers of a search: MLflow on request, and where TensorBoard finds its logs.

Ray Tune writes TensorBoard event files into every trial's folder of the experiment by itself
when ``tensorboardX`` is installed (Ray 2.x's default loggers: CSV, JSON and TensorBoard). This
module adds what Ray does not do by default: an MLflow run per trial when ``--mlflow-uri`` is
given.

Metric names: Ray's TensorBoard logger writes ``map@10`` as the tag ``ray/tune/map_10``, and
MLflow rejects ``@`` in names, so the MLflow callback logs the same ``map_10``.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ray.tune import Callback

from tune_rec.errors import InvalidInputError

if TYPE_CHECKING:
    from tune_rec.search.runner import SearchOptions

logger = logging.getLogger(__name__)

MLFLOW_INSTALL_HINT = "pip install 'tune-rec[mlflow]' (or pip install mlflow-skinny)"


def tracker_key(key: str) -> str:
    """Return ``key`` as MLflow and TensorBoard name it: ``map@10`` becomes ``map_10``."""
    return key.replace("@", "_")


def check_mlflow_store(tracking_uri: str) -> None:
    """Check that MLflow is installed and can read the tracking store at ``tracking_uri``.

    The command line calls this before it loads data or starts Ray, so that a wrong URI fails
    before any work is done.

    Raises:
        InvalidInputError: MLflow is not installed, or it cannot use the store (a file store
            that MLflow 3 rejects by default, an unreachable server, a malformed URI).
    """
    with _mlflow_errors(tracking_uri) as client_class:
        client_class(tracking_uri=tracking_uri).search_experiments(max_results=1)


def open_mlflow_experiment(tracking_uri: str, experiment_name: str) -> str:
    """Return the id of the MLflow experiment ``experiment_name``, created if missing.

    Raises:
        InvalidInputError: as :func:`check_mlflow_store`.
    """
    with _mlflow_errors(tracking_uri) as client_class:
        client = client_class(tracking_uri=tracking_uri)
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(experiment_name)


@contextmanager
def _mlflow_errors(tracking_uri: str) -> Iterator[type]:
    """Yield MLflow's client class, and raise InvalidInputError when MLflow or its store fails."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise InvalidInputError(
            f"--mlflow-uri needs MLflow, which is not installed: {MLFLOW_INSTALL_HINT}"
        ) from None
    try:
        yield MlflowClient
    except MlflowException as error:
        raise InvalidInputError(
            f"--mlflow-uri {tracking_uri}: MLflow cannot use this tracking store: {error}"
        ) from None


def build_callbacks(folder: Path, options: SearchOptions) -> list[Callback]:
    """Return the tracker callbacks that ``options`` request, after checking each store.

    Raises:
        InvalidInputError: a requested tracker cannot be used.
    """
    logger.info(
        "TensorBoard logs are written per trial; view them with: tensorboard --logdir %s",
        shlex.quote(str(folder)),
    )
    callbacks: list[Callback] = []
    if options.mlflow_uri:
        # Imported here: MLflow takes over a second to import, and most searches do not use it.
        from tune_rec.search.mlflow_tracker import MLflowTracker

        experiment_name = options.mlflow_experiment or folder.name
        experiment_id = open_mlflow_experiment(options.mlflow_uri, experiment_name)
        logger.info(
            "logging every trial to MLflow at %s, experiment %r (id %s)",
            options.mlflow_uri,
            experiment_name,
            experiment_id,
        )
        callbacks.append(
            MLflowTracker(
                tracking_uri=options.mlflow_uri,
                experiment_name=experiment_name,
                tags={"tune_rec.experiment": folder.name, "tune_rec.folder": str(folder)},
            )
        )
    return callbacks
