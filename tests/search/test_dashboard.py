"""The Ray dashboard of a running search, read through its REST API and in headless Chromium.

The search runs as ``tune-rec search --dashboard`` in a subprocess, with token authentication
off (``RAY_AUTH_MODE=disabled``) so that the API responds without Ray's token. Set CHROMIUM to
the browser's executable to use one that is not on PATH. The screenshot of the cluster view is
kept in the test's tmp dir and copied to benchmarks/out/dashboard_cluster.png.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.browser]

SCREENSHOT_COPY = Path(__file__).resolve().parents[2] / "benchmarks" / "out"

# Long enough to outlast the checks; the last test interrupts it.
SPACE = """
name: watched
max_epochs: 20
num_samples: 40
seed: 31
searcher: {type: random}
scheduler: {type: fifo}
resources: {cpus_per_trial: 1}
params:
  schedule: fixed
  alpha: {distribution: uniform, low: 0.5, high: 1.5}
  lr: {distribution: loguniform, low: 0.003, high: 0.03}
  embedding_dim: 8
"""

URL_LINE = re.compile(r"Ray dashboard: (http://\S+)")
TRIAL_STARTED = re.compile(r"trial \w+ started")
STARTUP_TIMEOUT_S = 240


# The size of every page that Chromium opens, and of the cluster view's screenshot.
WINDOW_SIZE = "--window-size=1400,900"


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


class _TextParser(HTMLParser):
    """Collects the visible text of a page, without scripts and styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(data.strip())


class _StderrReader(threading.Thread):
    """Reads a process's stderr into a list of lines, so that the pipe never fills up."""

    def __init__(self, process: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.lines: list[str] = []

    def run(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        tail = "\n".join(self.lines[-40:])
        raise AssertionError(f"no line matching {pattern.pattern!r}; stderr ends with:\n{tail}")


def _stop(process: subprocess.Popen, timeout_s: float = 120) -> int:
    """Interrupt the search as Ctrl-C does, then kill it if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=30)


@pytest.fixture(scope="module")
def search(chromium, tmp_path_factory, ml100k_dir):
    """Start a search with the dashboard; yield once its first trial runs; stop it at the end."""
    folder = tmp_path_factory.mktemp("dashboard")
    space = folder / "watched.yaml"
    space.write_text(SPACE)
    environment = dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
        TUNE_REC_DATA_DIR=str(ml100k_dir),
    )
    environment.pop("RAY_ADDRESS", None)
    command = [
        sys.executable,
        "-m",
        "tune_rec",
        "search",
        "--space",
        str(space),
        "--results-dir",
        str(folder / "results"),
        "--name",
        "watched",
        "--dashboard",
        "--no-report",
        "--confirm-top",
        "0",
        "--audit-pruned",
        "0",
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader = _StderrReader(process)
    reader.start()
    try:
        url = reader.wait_for(URL_LINE, STARTUP_TIMEOUT_S).group(1)
        url_seconds = time.monotonic() - started
        reader.wait_for(TRIAL_STARTED, STARTUP_TIMEOUT_S)
        yield SimpleNamespace(
            url=url,
            url_seconds=url_seconds,
            process=process,
            reader=reader,
            folder=folder / "results" / "watched",
            profile=folder / "chromium-profile",
            shots=folder,
        )
    finally:
        _stop(process)
        reader.join(timeout=30)


def test_dashboard_url_on_loopback(search):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", search.url)


def test_dashboard_api_lists_node(search):
    body = _get_json(f"{search.url}/nodes?view=summary")
    nodes = body["data"]["summary"]
    assert len(nodes) == 1
    raylet = nodes[0]["raylet"]
    assert raylet["state"] == "ALIVE"
    assert raylet["nodeManagerAddress"] == "127.0.0.1"
    assert raylet["isHeadNode"] is True


def test_dashboard_api_lists_trial_actor(search):
    body = _get_json(f"{search.url}/api/v0/actors?detail=1&limit=100")
    actors = body["data"]["result"]["result"]
    alive = [actor for actor in actors if actor["state"] == "ALIVE"]
    # Ray Tune runs a function trainable in an actor of class ImplicitFunc.
    assert any(actor["class_name"] == "ImplicitFunc" for actor in alive), [
        (actor["class_name"], actor["state"]) for actor in actors
    ]


def test_dashboard_cluster_page_in_browser(search, chromium):
    node = _get_json(f"{search.url}/nodes?view=summary")["data"]["summary"][0]
    node_id = node["raylet"]["nodeId"]
    page = f"{search.url}/#/cluster"

    dom = chromium.run(search.profile, WINDOW_SIZE, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _TextParser()
    parser.feed(dom.stdout)
    text = " ".join(parser.parts)
    assert "Node Statistics" in text
    assert "ALIVE x 1" in " ".join(text.split()), text[:2000]
    assert node_id in text
    assert "127.0.0.1 (Head)" in " ".join(text.split())

    screenshot = search.shots / "dashboard_cluster.png"
    shot = chromium.run(search.profile, WINDOW_SIZE, f"--screenshot={screenshot}", page)
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 900)
    assert len(data) > 20_000  # a blank page compresses to a few kB
    SCREENSHOT_COPY.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, SCREENSHOT_COPY / "dashboard_cluster.png")


def test_interrupted_search_exits_130(search):
    code = _stop(search.process)
    search.reader.join(timeout=30)
    stderr = "\n".join(search.reader.lines)
    assert code == 130, stderr[-3000:]
    assert "tune-rec search --resume" in stderr
