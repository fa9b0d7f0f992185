"""Searches on a Ray cluster of two nodes on loopback, GPU requests, and the --address forms.

The cluster is Ray's own test helper, ``ray.cluster_utils.Cluster``: a head node and a worker
node with 1 CPU each, both on 127.0.0.1. The worker also declares one GPU, which Ray only
counts, so that a GPU request can be scheduled on a machine without one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tune_rec.cli import main
from tune_rec.errors import InvalidInputError
from tune_rec.search import trainable as trainable_module
from tune_rec.search.ray_session import (
    check_address,
    check_reachable,
    configure_environment,
    ray_session,
    resolve_address,
)
from tune_rec.search.runner import SearchOptions
from tune_rec.space import parse_search_space

# With a searcher, Ray Tune keeps one trial pending unless max_concurrent_trials is set, so a
# second node would only get a trial if its actor started before the first node's actor had
# finished every trial. Two concurrent trials start an actor on each node at once. Tune reuses
# actors, so long trials keep a slow-starting actor's trial from moving to a freed actor.
SPREAD_EPOCHS = 40
SPREAD_SPACE = f"""
name: spread
max_epochs: {SPREAD_EPOCHS}
num_samples: 4
seed: 11
searcher: {{type: random}}
scheduler: {{type: fifo}}
resources: {{cpus_per_trial: 1, max_concurrent_trials: 2}}
params:
  schedule: fixed
  alpha: {{distribution: uniform, low: 0.5, high: 1.5}}
  lr: {{distribution: loguniform, low: 0.003, high: 0.03}}
  embedding_dim: 8
"""

GPU_SPACE = """
name: gpu
max_epochs: 2
num_samples: 2
seed: 12
searcher: {type: random}
scheduler: {type: fifo}
resources: {cpus_per_trial: 0.5, gpus_per_trial: 0.5}
params:
  schedule: fixed
  alpha: {distribution: uniform, low: 0.5, high: 1.5}
  lr: 0.01
  embedding_dim: 8
"""

# Flags that keep a test search to its trials: no seed repeats, no audit, no report.
QUICK_FLAGS = ["--no-report", "--confirm-top", "0", "--audit-pruned", "0"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _trial_nodes(folder: Path) -> dict[str, set[str]]:
    """Return the node ids that each trial reported, from Ray's result.json of each trial."""
    nodes = {}
    for path in sorted(folder.glob("trial_*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        nodes[path.parent.name.removeprefix("trial_")] = {row["node_id"] for row in rows}
    return nodes


def _client_server_logs(cluster) -> str:
    """Return the end of each Ray Client server's error log on the head node."""
    logs = Path(cluster.head_node.get_session_dir_path()) / "logs"
    parts = []
    for path in sorted(logs.glob("ray_client_server*.err")):
        lines = path.read_text(errors="replace").splitlines()[-20:]
        parts.append(f"--- {path.name}\n" + "\n".join(lines))
    return "\n".join(parts) or f"no ray_client_server*.err under {logs}"


@pytest.fixture(scope="module")
def cluster():
    """Yield a two-node Ray cluster on loopback, with its own temp dir; shut down at the end."""
    with pytest.MonkeyPatch.context() as patch:
        # Ray writes the address of the last cluster it started under its temp dir, where a
        # plain ray.init() or `auto` elsewhere on this machine would find it. A private temp
        # dir keeps this cluster to this module. Its path is short because Ray's socket paths
        # must fit in 107 bytes.
        ray_tmp = Path(tempfile.mkdtemp(prefix="trc", dir="/tmp"))
        patch.setenv("RAY_TMPDIR", str(ray_tmp))
        patch.setenv("RAY_AUTH_MODE", "disabled")
        patch.delenv("RAY_ADDRESS", raising=False)
        configure_environment()
        import ray
        from ray.cluster_utils import Cluster

        if ray.is_initialized():
            ray.shutdown()
        client_port = _free_port()
        started = time.monotonic()
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "include_dashboard": False,
                "ray_client_server_port": client_port,
            },
        )
        try:
            cluster.add_node(num_cpus=1, num_gpus=1)
            cluster.wait_for_nodes()
            cluster.client_port = client_port
            cluster.start_seconds = time.monotonic() - started
            yield cluster
        finally:
            cluster.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def node_ids(cluster):
    """Return the head's and the worker's node ids."""
    worker = next(iter(cluster.worker_nodes))
    return {"head": cluster.head_node.node_id, "worker": worker.node_id}


@pytest.fixture(scope="module")
def spread_search(cluster, tmp_path_factory, ml100k_dir):
    """Run a search attached to the cluster by its address; count the dataset's ray.put calls."""
    import ray

    folder = tmp_path_factory.mktemp("spread")
    space = folder / "spread.yaml"
    space.write_text(SPREAD_SPACE)
    puts = []
    put = ray.put

    def counting_put(value, *args, **kwargs):
        puts.append(type(value).__name__)
        return put(value, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray, "put", counting_put)
        code = main(
            [
                "search",
                "--space",
                str(space),
                "--results-dir",
                str(folder / "results"),
                "--name",
                "spread",
                "--address",
                cluster.address,
                *QUICK_FLAGS,
            ]
        )
    return {"code": code, "folder": folder / "results" / "spread", "puts": puts}


@pytest.mark.slow
@pytest.mark.ray
def test_cluster_has_two_nodes(cluster, node_ids):
    import ray

    with ray_session(address=cluster.address):
        alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
        resources = ray.cluster_resources()
    assert alive == set(node_ids.values())
    assert resources["CPU"] == 2
    assert resources["GPU"] == 1


@pytest.mark.slow
@pytest.mark.ray
def test_search_on_cluster_exits_zero(spread_search):
    assert spread_search["code"] == 0
    assert (spread_search["folder"] / "best_config.yaml").is_file()


@pytest.mark.slow
@pytest.mark.ray
def test_search_on_cluster_uses_both_nodes(spread_search, node_ids):
    nodes = _trial_nodes(spread_search["folder"])
    assert len(nodes) == 4
    for trial_id, trial_nodes in nodes.items():
        assert len(trial_nodes) == 1, f"trial {trial_id} moved between nodes: {trial_nodes}"
    used = set().union(*nodes.values())
    assert used == set(node_ids.values()), f"nodes of each trial: {nodes}, cluster: {node_ids}"


@pytest.mark.slow
@pytest.mark.ray
def test_search_on_cluster_records_every_epoch(spread_search):
    trials = pd.read_parquet(spread_search["folder"] / "trials.parquet")
    epochs = pd.read_parquet(spread_search["folder"] / "epochs.parquet")
    assert len(trials) == 4
    assert (trials.status == "finished").all()
    assert (trials.n_epochs == SPREAD_EPOCHS).all()
    for trial_id, rows in epochs.groupby("trial_id"):
        assert sorted(rows.epoch) == list(range(SPREAD_EPOCHS)), trial_id
    assert epochs["map@10"].notna().all()
    assert set(epochs.device) == {"cpu"}


@pytest.mark.slow
@pytest.mark.ray
def test_dataset_put_once_per_search(spread_search):
    # tune.with_parameters puts each keyword argument once; every trial reads that object.
    assert spread_search["puts"].count("Dataset") == 1


@pytest.mark.slow
@pytest.mark.ray
def test_fractional_gpus_run_on_gpu_node(cluster, node_ids, tmp_path, ml100k_dir):
    from ray.tune import ExperimentAnalysis

    space = tmp_path / "gpu.yaml"
    space.write_text(GPU_SPACE)
    code = main(
        [
            "search",
            "--space",
            str(space),
            "--results-dir",
            str(tmp_path / "results"),
            "--name",
            "gpu",
            "--address",
            cluster.address,
            *QUICK_FLAGS,
        ]
    )
    assert code == 0
    folder = tmp_path / "results" / "gpu"

    nodes = _trial_nodes(folder)
    assert len(nodes) == 2
    assert set().union(*nodes.values()) == {node_ids["worker"]}
    analysis = ExperimentAnalysis(str(folder))
    for trial in analysis.trials:
        assert trial.placement_group_factory.required_resources == {"CPU": 0.5, "GPU": 0.5}

    # The GPU is only declared, so torch finds no CUDA device and the trials train on the CPU.
    epochs = pd.read_parquet(folder / "epochs.parquet")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert set(epochs.device) == {expected}


@pytest.mark.slow
@pytest.mark.ray
def test_gpu_request_beyond_cluster_rejected(cluster, tmp_path, ml100k_dir, capsys):
    space = tmp_path / "gpu.yaml"
    space.write_text(GPU_SPACE)
    started = time.monotonic()
    code = main(
        [
            "search",
            "--space",
            str(space),
            "--results-dir",
            str(tmp_path / "results"),
            "--address",
            cluster.address,
            "--gpus-per-trial",
            "2",
            *QUICK_FLAGS,
        ]
    )
    assert code == 2
    assert time.monotonic() - started < 60
    assert "gpus_per_trial is 2.0 but the Ray cluster has 1 GPUs" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("form", ["host_port", "auto", "ray_client"])
def test_address_forms_attach(cluster, node_ids, form):
    import ray

    address = {
        "host_port": cluster.address,
        # Found through the address file that the cluster wrote under RAY_TMPDIR.
        "auto": "auto",
        "ray_client": f"ray://127.0.0.1:{cluster.client_port}",
    }[form]
    attempts = 3
    for attempt in range(attempts):
        try:
            with ray_session(address=address) as session:
                assert session.started is False
                alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
            break
        except InvalidInputError as error:
            # NOTE: Ray Client's server starts a process per connection, which has failed to
            # start on a loaded machine ("Initialization failure from server"); it is retried.
            if "Initialization failure from server" not in str(error):
                raise
            if attempt == attempts - 1:
                raise AssertionError(f"{error}\n{_client_server_logs(cluster)}") from error
            time.sleep(5)
    assert alive == set(node_ids.values())
    assert not ray.is_initialized()


def test_failed_client_attach_leaves_no_client_mode(monkeypatch):
    import ray
    from ray._private import client_mode_hook

    def failing_init(**kwargs):
        # What ray.init("ray://...") does when the server never answers.
        client_mode_hook._explicitly_enable_client_mode()
        raise ConnectionError("ray client connection timeout")

    monkeypatch.setattr(ray, "init", failing_init)
    monkeypatch.setattr("tune_rec.search.ray_session.check_reachable", lambda address: None)
    session = ray_session(address="ray://127.0.0.1:10001")
    with pytest.raises(InvalidInputError, match="could not attach to a Ray cluster: ray client"):
        session.__enter__()
    assert client_mode_hook.is_client_mode_enabled is False


@pytest.mark.slow
@pytest.mark.ray
def test_gpu_request_without_gpus_fails_fast(tmp_path, ml100k_dir):
    """A local Ray on a machine without GPUs: the search stops before any trial waits."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    space = tmp_path / "gpu.yaml"
    space.write_text(GPU_SPACE)
    environment = dict(os.environ, RAY_AUTH_MODE="disabled", TUNE_REC_DATA_DIR=str(ml100k_dir))
    environment.pop("RAY_ADDRESS", None)
    command = [
        sys.executable,
        "-m",
        "tune_rec",
        "search",
        "--space",
        str(space),
        "--results-dir",
        str(tmp_path / "results"),
        "--gpus-per-trial",
        "0.25",
        *QUICK_FLAGS,
    ]
    started = time.monotonic()
    result = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=300, check=False
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-2000:]
    assert "gpus_per_trial is 0.25 but the Ray cluster has 0 GPUs" in result.stderr
    assert "--gpus-per-trial 0" in result.stderr
    # Process start, data loading and a local Ray's start-up; Ray alone would wait forever.
    assert elapsed < 120


@pytest.mark.parametrize(
    ("cuda_available", "n_gpus", "expected"),
    [(True, 1, "cuda"), (True, 0, "cpu"), (False, 1, "cpu"), (False, 0, "cpu")],
)
def test_trial_device_needs_cuda_and_gpu(monkeypatch, cuda_available, n_gpus, expected):
    chosen = []

    class StopAtConstruction(Exception):
        pass

    def fake_trainer(config, dataset, data, *, device):
        chosen.append(device)
        raise StopAtConstruction

    monkeypatch.setattr(trainable_module.torch.cuda, "is_available", lambda: cuda_available)
    monkeypatch.setattr(trainable_module, "_assigned_gpus", lambda: n_gpus)
    monkeypatch.setattr(trainable_module, "Trainer", fake_trainer)
    with pytest.raises(StopAtConstruction):
        trainable_module.train_trial(
            {"schedule": "fixed", "alpha": 1.0, "lr": 0.01, "embedding_dim": 8},
            dataset=None,
            fixed={"seed": 0, "max_epochs": 2},
            data={},
            checkpoint_epochs=[2],
            metric="map@10",
        )
    assert chosen == [expected]


def test_fractional_gpu_in_resource_request():
    from tune_rec.search.tuner import build_trainable

    space = parse_search_space(yaml.safe_load(GPU_SPACE)).with_overrides(
        gpus_per_trial=0.25, cpus_per_trial=1
    )
    options = SearchOptions(space=space, space_path=Path("gpu.yaml"))
    trainable = build_trainable(options, dataset={"stand-in": "dataset"})
    assert trainable._resources.required_resources == {"CPU": 1.0, "GPU": 0.25}


@pytest.mark.parametrize(
    "address",
    ["auto", "127.0.0.1:6379", "head.example:6379", "[::1]:6379", "ray://127.0.0.1:10001"],
)
def test_check_address_accepts_forms(address):
    assert check_address(f" {address} ") == address


@pytest.mark.parametrize(
    "address", ["", "127.0.0.1", "http://127.0.0.1:8265", "127.0.0.1:99999", "ray://head"]
)
def test_check_address_rejects_other_forms(address):
    with pytest.raises(InvalidInputError, match="--address must be auto, HOST:PORT"):
        check_address(address)


def test_resolve_address_reads_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert resolve_address(None) == "127.0.0.1:6379"
    assert resolve_address("ray://127.0.0.1:10001") == "ray://127.0.0.1:10001"
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert resolve_address(None) is None
    monkeypatch.delenv("RAY_ADDRESS")
    assert resolve_address(None) is None


def test_resolve_address_rejects_bad_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "nowhere")
    with pytest.raises(InvalidInputError, match=r"\$RAY_ADDRESS: --address must be"):
        resolve_address(None)


def test_unreachable_address_fails_fast():
    port = _free_port()
    started = time.monotonic()
    with pytest.raises(InvalidInputError, match=f"no Ray cluster reachable at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}", timeout_s=5)
    assert time.monotonic() - started < 10


def test_cli_rejects_invalid_address(tmp_path, capsys):
    code = main(["search", "--space", str(tmp_path / "absent.yaml"), "--address", "head"])
    assert code == 2
    assert "--address must be auto, HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--results-dir", "--resume"])
def test_cli_rejects_uri_folder(flag, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["search", "--space", "space.yaml", flag, "s3://bucket/results"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "must be a folder of this machine's file system, not a URI" in error
    assert "s3 bucket through a FUSE mount" in error
