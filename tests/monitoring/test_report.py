import base64
import fnmatch
import io
import json
import re
import shutil
import subprocess
import tomllib
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from amlkit.config import MonitoringConfig
from amlkit.monitoring import drift, monitor, performance, quality, report, trends, verdict
from amlkit.monitoring.usage import usage_summary

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed; install it with "
    "`apt-get update && apt-get install -y chromium` to run the page-rendering test",
)


def _inputs():
    rng = np.random.default_rng(1)
    n = 400
    ref = pd.DataFrame(
        {
            "length": rng.normal(40, 5, n),
            "mass": rng.normal(4000, 500, n),
            "year": rng.integers(2007, 2010, n).astype(float),
            "island": rng.choice(["Biscoe", "Dream"], n),
        }
    )
    cur = pd.DataFrame(
        {
            "length": rng.normal(45, 5, n),
            "mass": rng.normal(4000, 500, n),
            "year": rng.integers(2007, 2010, n).astype(float),
            "island": rng.choice(["Biscoe", "Dream", "<Torgersen & co>"], n),
        }
    )
    kinds = {"length": "numeric", "mass": "numeric", "year": "integer", "island": "categorical"}
    drift_result = drift.compute_drift(ref, cur, kinds)
    checks = quality.compute_quality(cur, {"columns": quality.build_profile(ref, kinds)})
    return ref, cur, drift_result, checks


WINDOW = {"start": "2024-05-01T00:00:00+00:00", "end": "2024-05-02T06:00:00+00:00"}
SENTENCE = "Retraining recommended: 2 of 4 inputs shifted significantly"


def _verdict(drift_result, checks):
    decision = monitor.decide_retraining(
        drift_result, checks, n_rows=400, config=MonitoringConfig(), ranking=[]
    )
    watched = verdict.Watched("penguins-classification", 3, {"blue": 100}, "retrained")
    return {
        "sentence": decision.verdict,
        "retrain": decision.retrain,
        "checks": decision.checks,
        "facts": verdict.facts(watched, WINDOW, 400, 400),
        "note": verdict.drift_note(decision.checks, drift_result),
        "quality_limits": {"null_value_rate": (0.0, 0.1)},
        "model": "penguins-classification",
        "version": 3,
        "window": WINDOW,
        "action": "retrained",
        "reference_rows": 400,
    }


def _performance():
    rng = np.random.default_rng(3)
    classes = np.array(["a", "b"])
    proba = rng.dirichlet([1.0, 1.0], 200)
    truth = classes[(rng.random(200) < proba[:, 1]).astype(int)]
    pred = classes[proba.argmax(axis=1)]
    calibration = performance.calibrate(proba[:100], truth[:100], classes)
    return {
        "task": "classification",
        "baseline": {"accuracy": 0.97, "f1_macro": 0.96},
        "realized": performance.realized(truth[100:], pred[100:], "classification"),
        "estimated": performance.estimate(calibration, proba[100:]),
        "frames": {"truth": truth[100:], "pred": pred[100:]},
    }


def _trends():
    def line(end, drift_value):
        perf = {"estimated": 0.8, "estimated_std": 0.02, "realized": 0.75}
        return {
            "window": {"start": end, "end": end},
            "requests": 120,
            "errors": 12,
            "latency_ms": {"p50": 60.5, "p90": 108.1, "p99": 118.8},
            "drift": {"length": drift_value},
            "prediction_drift": 0.01,
            "performance": perf,
        }

    lines = [line("2024-05-01T06:00:00Z", 0.05), line("2024-05-02T06:00:00Z", 0.9)]
    return trends.trend_charts(lines, metric="accuracy", baseline=0.97)


@pytest.fixture(scope="module")
def written(tmp_path_factory, request_log):
    ref, cur, drift_result, checks = _inputs()
    folder = tmp_path_factory.mktemp("report")
    paths = report.write_report(
        folder / "monitoring" / "report.html",
        drift=drift_result,
        quality=checks,
        usage=usage_summary(request_log(), predictions=["a", "b"] * 60),
        reference=ref,
        current=cur,
        verdict=_verdict(drift_result, checks),
        title="Penguins <monitoring>",
        performance=_performance(),
        trends=_trends(),
    )
    return paths, drift_result


def test_report_writes_html_and_json_summary_beside_it(written):
    (html_path, json_path), drift_result = written
    assert json_path == html_path.with_suffix(".json")
    summary = json.loads(json_path.read_text())
    assert summary["sentence"].startswith(SENTENCE)
    assert summary["model"] == "penguins-classification" and summary["version"] == 3
    assert summary["window"] == WINDOW and summary["reference_rows"] == 400
    assert summary["action"] == "retrained"
    assert summary["performance"]["estimated"]["accuracy"] > 0.5
    assert summary["performance"]["realized"]["metrics"]["f1_macro"] > 0.5
    assert summary["performance"]["realized"]["n"] == 100
    assert summary["summary"]["status"] == "alert"
    assert summary["summary"]["drifted_features"] == list(
        drift_result.loc[drift_result["drifted"], "column"]
    )
    assert "length" in summary["summary"]["drifted_features"]
    assert summary["summary"]["decision"]["retrain"] is True
    assert summary["usage"]["error_rate"] == pytest.approx(0.1)
    assert [row["column"] for row in summary["quality"]] == ["length", "mass", "year", "island"]
    assert not list(html_path.parent.glob(".*.tmp"))


def test_report_page_is_self_contained_with_valid_embedded_plots(written):
    (html_path, _), _ = written
    page = html_path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script" not in page
    assert "<title>Penguins &lt;monitoring&gt;</title>" in page
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) >= 10  # 4 trends, confusion, drift bars, 2+ distributions, 3 usage
    for data in images:
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_report_without_usage_or_data_still_renders(tmp_path):
    _, _, drift_result, checks = _inputs()
    html_path, json_path = report.write_report(
        tmp_path / "r.html", drift=drift_result, quality=checks
    )
    assert "Service usage" not in html_path.read_text()
    assert json.loads(json_path.read_text())["usage"] is None


class _Page(HTMLParser):
    """The parts of a page the tests look at: tag names, image alt texts, and cell texts."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.alts, self.cells, self._cell = [], [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.alts.append(dict(attrs).get("alt"))
        if tag == "td":
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == "td":
            self.cells.append(self._cell)
            self._cell = None


def test_report_images_have_alt_texts_that_say_what_they_show(written):
    (html_path, _), drift_result = written
    alts = _Page(html_path.read_text()).alts
    drifted = drift_result.sort_values("value", ascending=False)
    drifted = list(drifted.loc[drifted["drifted"], "column"])
    assert alts[0].startswith("Drift per hour over 2 time points: in the latest, 1 of 1 inputs")
    assert alts[1].startswith("Requests per hour: 240 in 2 time points")
    assert alts[3].startswith("accuracy per hour: estimated 0.800 first")
    assert alts[4].startswith("Confusion matrix of 100 labelled rows: ")
    at = alts.index(
        f"Drift per feature: {len(drifted)} of {len(drift_result)} above the threshold "
        f"({', '.join(drifted)})"
    )
    assert alts[at + 1].startswith(f"{drifted[0]}, reference against current")
    assert "above the threshold 0.1" in alts[at + 1]
    assert "Requests per hour: 120 requests, 12 failed" in alts
    assert "Latency per request, histogram: p50 60.5 ms, p90 108.1 ms, p99 118.8 ms" in alts
    assert "Predictions served, share per class: a 50%, b 50%" in alts
    assert all(alt and alt != "plot" for alt in alts)


def test_report_shows_markup_in_the_data_as_text(tmp_path):
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"<script>": rng.normal(0, 1, 200)})
    cur = pd.DataFrame({"<script>": rng.normal(3, 1, 200)})
    drift_result = drift.compute_drift(ref, cur, {"<script>": "numeric"})
    checks = quality.compute_quality(
        cur, {"columns": quality.build_profile(ref, {"<script>": "numeric"})}
    )
    html_path, _ = report.write_report(
        tmp_path / "r.html",
        drift=drift_result,
        quality=checks,
        reference=ref,
        current=cur,
        verdict={"sentence": "<b>why</b>", "facts": [("model", "<img src=x onerror=alert(1)>")]},
        title="<i>title</i>",
    )
    text = html_path.read_text()
    page = _Page(text)
    assert "script" not in page.tags and "i" not in page.tags
    assert page.tags.count("img") == 2  # the drift chart and one distribution, nothing injected
    assert page.cells.count("<script>") == 2  # drift table and data-quality table
    assert page.alts[1].startswith("<script>, reference against current")
    assert 'alt="&lt;script&gt;, reference against current' in text
    assert "&lt;b&gt;why&lt;/b&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_report_templates_are_packaged(repo):
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["amlkit"]
    package = repo / "lib" / "amlkit"
    templates = sorted((package / "monitoring" / "templates").iterdir())
    assert templates
    for path in templates:
        name = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(name, p) for p in patterns), f"{name} is not package data"


# Added to a copy of the page under test (the report itself has no script): once the page has
# loaded, count the images that did not decode and write them into the DOM that is dumped.
PROBE = """<script>addEventListener("load", () => {
  const broken = [...document.images].filter((i) => !(i.complete && i.naturalWidth > 0));
  document.body.dataset.brokenImages = broken.length + ":" + broken.map((i) => i.alt).join("|");
});</script>"""


def _render(chromium, page, tmp_path):
    """Load a probed copy of ``page`` in headless Chromium; return (DOM, console lines)."""
    probed = page.with_name(f"probed-{page.name}")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def _broken_images(dom):
    found = re.search(r'data-broken-images="([^"]*)"', dom)
    assert found, "the probe did not run"
    return found.group(1)


@needs_chromium
def test_console_capture_catches_script_errors_and_broken_images(tmp_path):
    bad = tmp_path / "bad.html"
    good = "data:image/png;base64," + base64.b64encode(_png()).decode()
    bad.write_text(
        "<html><body><script>missingFunction()</script>"
        f'<img alt="fine" src="{good}"><img alt="gone" src="missing.png"></body></html>'
    )
    dom, console = _render(CHROMIUM, bad, tmp_path)
    assert any("missingFunction is not defined" in line for line in console)
    assert _broken_images(dom) == "1:gone"


def _png():
    buffer = io.BytesIO()
    mpimg.imsave(buffer, np.zeros((4, 4)), format="png")
    return buffer.getvalue()


@needs_chromium
def test_report_renders_in_headless_chromium_with_verdict_trends_and_no_broken_images(
    written, tmp_path
):
    (html_path, _), _ = written
    dom, console = _render(CHROMIUM, html_path, tmp_path)
    assert console == []
    assert _broken_images(dom) == "0:"
    page = _Page(dom)
    assert "<h1>Penguins &lt;monitoring&gt;</h1>" in dom
    assert re.search(r'<p class="verdict">' + re.escape(SENTENCE), dom)
    assert "<dd>penguins-classification version 3</dd>" in dom
    assert "Trends over time" in dom
    assert any(alt.startswith("Drift per hour over 2 time points") for alt in page.alts)
    assert "Data quality" in dom and "Service usage" in dom and "Per class" in dom
    assert len(page.alts) >= 10
    for alt in page.alts:  # every image says what it shows, with its numbers
        assert alt and len(alt) > 30 and re.search(r"\d", alt), alt


def test_regression_report_shows_errors_beside_the_training_score_and_residuals(tmp_path):
    _, _, drift_result, checks = _inputs()
    truth, pred = np.array([10.0, 12.0, 15.0, 20.0]), np.array([11.0, 12.5, 13.0, 21.0])
    html_path, json_path = report.write_report(
        tmp_path / "r.html",
        drift=drift_result,
        quality=checks,
        performance={
            "task": "regression",
            "baseline": {"mae": 0.8},
            "realized": performance.realized(truth, pred, "regression"),
            "estimated": None,
            "frames": {"truth": truth, "pred": pred},
        },
    )
    page = _Page(html_path.read_text())
    assert "Residuals of 4 labelled rows against the prediction: mean -0.125" in page.alts[0]
    at = page.cells.index("mae")
    assert page.cells[at : at + 4] == ["mae", "0.8", "1.125", "0.325"]
    assert json.loads(json_path.read_text())["performance"]["realized"]["metrics"]["mae"] == 1.125
