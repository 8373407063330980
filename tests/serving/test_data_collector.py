"""The scoring script's data collector path, run for real with azureml-ai-monitoring.

On Azure ML the platform switches the collector on (``AZUREML_MDC_ENABLED``) and runs a
sidecar on loopback that takes what ``Collector.collect`` posts and writes the
``model_inputs`` / ``model_outputs`` files the monitor reads. The sidecar cannot run here;
a loopback HTTP server takes its place and records each post.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

SCORE_ONCE = """
import importlib.util, json, sys, time
from pathlib import Path
from flask import Request
from werkzeug.test import EnvironBuilder

folder, body = Path(sys.argv[1]), sys.argv[2].encode()
spec = importlib.util.spec_from_file_location("scoring_script", folder / "scoring_script.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
script.init()
environ = EnvironBuilder(method="POST", data=body, content_type="application/json")
response = script.run(Request(environ.get_environ()))
time.sleep(3)  # the collector's worker threads send in the background
print(json.dumps({"status": response.status_code, "answer": json.loads(response.get_data())}))
"""


@pytest.fixture
def sidecar():
    """A loopback stand-in for Azure ML's data collector sidecar: records every post."""
    posts: list[dict] = []

    class Sidecar(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            headers = {k.lower(): v for k, v in self.headers.items()}
            posts.append({"path": self.path, "headers": headers, "body": self.rfile.read(length)})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sidecar)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, posts
    server.shutdown()


def test_scoring_script_hands_rows_and_predictions_to_the_data_collector(
    penguins_service, tmp_path, sidecar, penguins_frame, penguin_features
):
    pytest.importorskip("azureml.ai.monitoring")
    port, posts = sidecar
    rows = json.loads(penguins_frame[penguin_features].head(3).to_json(orient="records"))
    env = {
        **os.environ,
        "AZUREML_MDC_ENABLED": "true",
        "AZUREML_MDC_HOST": "127.0.0.1",
        "AZUREML_MDC_PORT": str(port),
        "AZUREML_MODEL_DIR": str(penguins_service.folder / "model"),
        "AMLKIT_AUTH": "endpoint",
        "AMLKIT_REQUEST_LOG_DIR": str(tmp_path / "logs"),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCORE_ONCE, str(penguins_service.folder), json.dumps(rows)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200
    kinds = {p["headers"]["ce-type"]: p for p in posts}
    assert set(kinds) == {"azureml.inference.model_inputs", "azureml.inference.model_outputs"}
    inputs = json.loads(kinds["azureml.inference.model_inputs"]["body"])
    outputs = json.loads(kinds["azureml.inference.model_outputs"]["body"])
    assert [row["bill_length_mm"] for row in inputs] == [r["bill_length_mm"] for r in rows]
    # the prediction goes under the target's name, which the monitor's prediction drift reads
    # against the training split's target column
    assert [row["species"] for row in outputs] == answer["answer"]["predictions"]
    ids = {p["headers"].get("ce-x-request-id") for p in posts}
    assert len(ids) == 1 and None not in ids  # outputs joined to their inputs
