"""`amlkit package/serve/keys/score/deploy` as real subprocesses, on a really trained model.

The module fixture runs the real stage notebooks 01, 03 and 04 in a temporary project root
(ingest penguins, preprocess, train with a short search, register, champion gate), so the
packaged model is the pipeline notebook 04 registers.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

MODEL = "penguins-classification"


@pytest.fixture(scope="module")
def root(tmp_path_factory, repo, processed_penguins_data):
    from amlkit.pipeline import runner

    root = tmp_path_factory.mktemp("cli") / "root"
    shutil.copytree(repo / "config", root / "config")
    shutil.copytree(processed_penguins_data, root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(root))
        small = {"dataset": "penguins", "search_iterations": 2, "cv_folds": 3}
        runner.run_pipeline(["04"], small, run_id="train", progress=False)
        yield root


def amlkit(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "AMLKIT_ROOT": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "amlkit.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def service(root):
    proc = amlkit(root, "package", MODEL, "--service", "svc")
    assert proc.returncode == 0, proc.stderr
    return root / "models" / "deployed_models" / "svc", proc.stdout


def test_package_reports_folder_and_onnx_backend(service):
    folder, out = service
    assert "folder   models/deployed_models/svc" in out
    assert "backend  onnx (ONNX parity check passed)" in out
    meta = json.loads((folder / "service_metadata.json").read_text())
    assert meta["model"]["name"] == MODEL and meta["parity"]["max_probability_diff"] <= 1e-5
    for name in ("scoring_script.py", "environment.yml", "deployment_config.json"):
        assert (folder / name).is_file()


def test_package_unknown_model_exits_2_naming_it(root):
    proc = amlkit(root, "package", "no-such-model")
    assert proc.returncode == 2
    assert "no model named 'no-such-model'" in proc.stderr


def stdout_lines(proc: subprocess.Popen) -> queue.Queue[str]:
    """Return a queue that a thread fills with the process's stdout lines (no blocking)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def read_until(lines: queue.Queue[str], text: str, timeout: float) -> list[str]:
    """Return the lines up to the one holding ``text``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
        if text in seen[-1]:
            return seen
    raise AssertionError(f"{text!r} not printed within {timeout}s; got {seen}")


def test_serve_answers_with_key_and_stops_on_sigint(root, service):
    env = {**os.environ, "AMLKIT_ROOT": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "amlkit.cli", "serve", "svc", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        out = stdout_lines(proc)
        lines = read_until(out, "Ctrl-C", 90)
        url = next(w for line in lines for w in line.split() if w.startswith("http://"))
        assert url.startswith("http://127.0.0.1:") and url.endswith("/score")
        assert any("amlkit keys amlkit-penguins" in line for line in lines)
        port = int(url.split(":")[2].split("/")[0])
        keys = amlkit(root, "keys", "amlkit-penguins").stdout
        key = next(line.split()[1] for line in keys.splitlines() if line.startswith("primary"))
        row = {
            "island": "Biscoe",
            "bill_length_mm": 46.1,
            "bill_depth_mm": 13.2,
            "flipper_length_mm": 211.0,
            "body_mass_g": 4500.0,
            "sex": "female",
            "year": 2007,
        }
        for auth, status in ((f"Bearer {key}", 200), (None, 401)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"Content-Type": "application/json"} | (
                {"Authorization": auth} if auth else {}
            )
            conn.request("POST", "/score", body=json.dumps([row]), headers=headers)
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
            assert resp.status == status, body
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        more = read_until(out, "stopped", 10)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 0
    assert more[-1].strip() == "stopped"
    from amlkit.serving.server import listening_addresses

    assert listening_addresses(port) == []


def test_serve_unknown_service_exits_2(root):
    proc = amlkit(root, "serve", "nope")
    assert proc.returncode == 2 and "no packaged service 'nope'" in proc.stderr


def test_keys_shows_and_regenerates_one_key(root, service):
    first = amlkit(root, "keys", "amlkit-penguins")
    assert first.returncode == 0, first.stderr
    before = dict(line.split()[:2] for line in first.stdout.splitlines()[1:3])
    again = amlkit(root, "keys", "amlkit-penguins", "--regenerate", "secondary")
    after = dict(
        line.split()[:2]
        for line in again.stdout.splitlines()
        if line.startswith(("primary", "secondary"))
    )
    assert after["primary"] == before["primary"]
    assert after["secondary"] != before["secondary"] and len(after["secondary"]) >= 40
    assert ".amlkit/endpoints/amlkit-penguins/keys.json" in again.stdout
    unknown = amlkit(root, "keys", "nope")
    assert unknown.returncode == 2 and "amlkit-penguins" in unknown.stderr


@pytest.mark.parametrize("which", ["--service=svc", f"--model={MODEL}:1"])
def test_score_writes_predictions_beside_inputs(root, service, tmp_path, which):
    from amlkit.serving.runtime import Scorer

    test = next((root / "data" / "processed" / "penguins").glob("*/test.parquet"))
    src = tmp_path / "rows.csv"
    pd.read_parquet(test).to_csv(src, index=False)
    proc = amlkit(root, "score", str(src), which, "--chunk-rows", "25", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "rows_predictions.csv")
    frame = pd.read_parquet(test)
    assert len(out) == len(frame) and list(out.columns[: frame.shape[1]]) == list(frame.columns)
    scorer = Scorer(service[0] / "model", backend="sklearn")
    expected, _ = scorer.predict_frame(frame[scorer.feature_columns])
    assert out["prediction"].tolist() == expected
    assert {"probability_Adelie", "probability_Chinstrap", "probability_Gentoo"} <= set(out)


def test_deploy_dry_run_validates_specs_and_live_deploy_needs_workspace(root, service):
    dry = amlkit(root, "deploy", "svc", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing sent to Azure" in dry.stdout
    for name in ("endpoint", "blue", "green"):
        assert (service[0] / "azure" / f"{name}.yml").is_file()
    live = amlkit(root, "deploy", "svc")  # `amlkit azure deploy --model <its version>`
    assert live.returncode == 3, live.stderr
    last = live.stdout.splitlines()[-1]
    assert last.startswith("skipped: ") and "no workspace" in last and "--target local" in last
