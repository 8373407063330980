"""Fixtures of the serving tests: a packaged penguins service, and scoring a service folder
in a Python that cannot import the installed amlkit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

# Runs in `python -S` with only site-packages on the path: the editable install of amlkit
# (a .pth file) is not read, so the scoring script can only use the folder's own copy.
ISOLATED = """
import importlib.util, json, sys
from pathlib import Path

folder, body = Path(sys.argv[1]), sys.argv[2].encode()
installed = importlib.util.find_spec("amlkit")
spec = importlib.util.spec_from_file_location("scoring_script", folder / "scoring_script.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
script.init()
from flask import Request
from werkzeug.test import EnvironBuilder

environ = EnvironBuilder(method="POST", data=body, content_type="application/json")
response = script.run(Request(environ.get_environ()))
import amlkit

print(json.dumps({
    "installed_amlkit": None if installed is None else installed.origin,
    "amlkit": amlkit.__file__,
    "loaded": sorted(name for name in sys.modules if name.split(".")[0] == "amlkit"),
    "status": response.status_code,
    "answer": json.loads(response.get_data()),
}))
"""


@pytest.fixture(scope="session")
def score_isolated() -> Callable[[Path, Any, Path], dict[str, Any]]:
    """Score ``payload`` with a service folder's scoring script, amlkit not installed.

    ``score_isolated(folder, payload, workdir)`` runs ``init()`` and ``run()`` in a fresh
    ``python -S`` whose path holds site-packages but not the installed amlkit, and returns
    ``{installed_amlkit, amlkit, loaded, status, answer}``: what could be imported before,
    the amlkit that was used, the amlkit modules loaded, and the response.
    """

    def run(folder: Path, payload: Any, workdir: Path) -> dict[str, Any]:
        site = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sorted(site)),
            "AZUREML_MODEL_DIR": str(folder / "model"),
            "AMLKIT_AUTH": "endpoint",
            "AMLKIT_REQUEST_LOG_DIR": str(workdir / "logs"),
        }
        done = subprocess.run(
            [sys.executable, "-S", "-c", ISOLATED, str(folder), json.dumps(payload)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture(scope="module")
def penguins_service(tmp_path_factory, penguins_frame, make_version, new_project):
    """A packaged penguins service (ONNX) in its own project root: root, version, folder."""
    from amlkit.serving.package import package_service

    with pytest.MonkeyPatch.context() as mp:
        root = new_project(tmp_path_factory.mktemp("service") / "root", mp)
        version = make_version(root / "models" / "trained_models")
        folder = package_service(version, service="svc", parity_rows=penguins_frame.head(60))
        yield SimpleNamespace(root=root, version=version, folder=folder)


@pytest.fixture(scope="module")
def endpoint(penguins_service):
    """The penguins service served by azmlinfsrv on loopback, one worker (per module)."""
    from amlkit.serving.server import serve

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        with serve(penguins_service.folder, port=0, workers=1, startup_timeout_s=60) as handle:
            yield handle
