"""The report page in headless Chromium: every figure renders and no JavaScript error occurs.

Set CHROMIUM to the browser's executable to use one that is not on PATH. The screenshot is kept
in the test's tmp dir and copied to benchmarks/out/report_screenshot.png.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tune_rec.report import write_report
from tune_rec.report.figures import n_figures

pytestmark = pytest.mark.browser

SCREENSHOT_COPY = Path(__file__).resolve().parents[2] / "benchmarks" / "out"
WIDTH = 1400
MIN_HEIGHT = 4000

# Records uncaught errors, rejected promises and console.error calls on the <html> element, so
# that --dump-dom shows them, and the page height once the figures have rendered.
ERROR_HOOK = """<script>
(function () {
  var root = document.documentElement, errors = [];
  function record(message) {
    errors.push(String(message));
    root.setAttribute("data-errors", JSON.stringify(errors));
  }
  root.setAttribute("data-errors", "[]");
  window.addEventListener("error", function (event) { record("Uncaught " + event.message); });
  window.addEventListener("unhandledrejection", function (event) {
    record("Unhandled rejection " + event.reason);
  });
  var consoleError = console.error;
  console.error = function () {
    record(Array.prototype.join.call(arguments, " "));
    consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    setTimeout(function () {
      root.setAttribute("data-height", String(document.body.scrollHeight));
    }, 1000);
  });
})();
</script>"""


# Chromium logs the page's console to stderr with these, for the JavaScript error check.
CONSOLE_LOGGING = ("--enable-logging=stderr", "--v=0")


@pytest.fixture(scope="module")
def rendered(write_experiment, chromium, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Render a finished search of 4 schedule types, with seed repeats and a pruning audit, and
    return its DOM, log, figure count and paths."""
    tmp_path = tmp_path_factory.mktemp("browser")
    experiment = write_experiment(
        tmp_path / "experiment",
        n_trials=40,
        max_epochs=20,
        schedules=("fixed", "increase", "decrease", "cosine"),
        n_confirm=3,
        n_audit=2,
    )
    report = write_report(experiment)
    html = report.read_text(encoding="utf-8")
    hooked = tmp_path / "hooked.html"
    hooked.write_text(html.replace("<head>", "<head>" + ERROR_HOOK, 1), encoding="utf-8")

    dump = chromium.run(
        tmp_path / "profile-dom",
        *CONSOLE_LOGGING,
        f"--window-size={WIDTH},{MIN_HEIGHT}",
        "--dump-dom",
        hooked.as_uri(),
    )
    return {
        "dom": dump.stdout,
        "log": dump.stderr,
        "returncode": dump.returncode,
        "n_figures": n_figures(html),
        "report": report,
        "hooked": hooked,
    }


class _ClassCounter(HTMLParser):
    """Count the elements of each CSS class, ignoring text such as inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "class" and value:
                self.counts.update(set(value.split()))


def _count_classes(dom: str) -> Counter[str]:
    parser = _ClassCounter()
    parser.feed(dom)
    return parser.counts


def _root_attribute(dom: str, name: str) -> str | None:
    match = re.search(rf'<html[^>]*\s{name}="([^"]*)"', dom)
    return match.group(1).replace("&quot;", '"') if match else None


def test_browser_renders_every_figure(rendered: dict) -> None:
    counts = _count_classes(rendered["dom"])
    assert rendered["returncode"] == 0, rendered["log"][-2000:]
    # Loss grid, metric per epoch, parallel coordinates, importances and seed repeats.
    assert rendered["n_figures"] == 5
    assert counts["js-plotly-plot"] == rendered["n_figures"]
    assert counts["svg-container"] == rendered["n_figures"]
    assert counts["main-svg"] >= rendered["n_figures"]


def test_browser_logs_no_javascript_error(rendered: dict) -> None:
    errors = _root_attribute(rendered["dom"], "data-errors")
    assert errors is not None, "the error hook did not run"
    assert json.loads(errors) == []
    console_errors = [
        line
        for line in rendered["log"].splitlines()
        if "Uncaught" in line or ("CONSOLE" in line and "ERROR" in line)
    ]
    assert console_errors == []


def test_browser_screenshot_is_written(rendered: dict, chromium, tmp_path: Path) -> None:
    height = int(_root_attribute(rendered["dom"], "data-height") or MIN_HEIGHT)
    screenshot = tmp_path / "report_screenshot.png"
    result = chromium.run(
        tmp_path / "profile-shot",
        *CONSOLE_LOGGING,
        f"--window-size={WIDTH},{max(height, MIN_HEIGHT)}",
        f"--screenshot={screenshot}",
        rendered["report"].as_uri(),
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert screenshot.is_file()
    assert screenshot.stat().st_size > 50_000
    SCREENSHOT_COPY.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshot, SCREENSHOT_COPY / screenshot.name)


def test_error_hook_records_uncaught_error(chromium, tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><head>" + ERROR_HOOK + "</head><body>"
        "<script>undefinedFunction();</script></body></html>",
        encoding="utf-8",
    )

    dump = chromium.run(tmp_path / "profile", *CONSOLE_LOGGING, "--dump-dom", page.as_uri())

    errors = json.loads(_root_attribute(dump.stdout, "data-errors") or "[]")
    assert len(errors) == 1
    assert "undefinedFunction" in errors[0]
