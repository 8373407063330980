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
# (a .pth file) is not read, so the scoring script can only use the folder's own copy. The
# top-level packages listed in argv[3] cannot be imported, as if they were not installed.
ISOLATED = """
import importlib.util, json, sys
from pathlib import Path

folder, body, blocked = Path(sys.argv[1]), sys.argv[2].encode(), set(json.loads(sys.argv[3]))


class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Absent())
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
    "files": sorted({getattr(m, "__file__", None) or "" for m in list(sys.modules.values())}),
    "status": response.status_code,
    "answer": json.loads(response.get_data()),
}))
"""


@pytest.fixture(scope="session")
def score_isolated() -> Callable[..., dict[str, Any]]:
    """Score ``payload`` with a service folder's scoring script, amlkit not installed.

    ``score_isolated(folder, payload, workdir, blocked=())`` runs ``init()`` and ``run()`` in
    a fresh ``python -S`` whose path holds site-packages but not the installed amlkit, where
    the top-level packages ``blocked`` cannot be imported, and returns ``{installed_amlkit,
    amlkit, loaded, files, status, answer}``: what could be imported before, the amlkit that
    was used, the amlkit modules loaded, the files of every module loaded, and the response.
    """

    def run(folder: Path, payload: Any, workdir: Path, blocked: Any = ()) -> dict[str, Any]:
        site = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sorted(site)),
            "AZUREML_MODEL_DIR": str(folder / "model"),
            "AMLKIT_AUTH": "endpoint",
            "AMLKIT_REQUEST_LOG_DIR": str(workdir / "logs"),
        }
        args = [str(folder), json.dumps(payload), json.dumps(sorted(blocked))]
        done = subprocess.run(
            [sys.executable, "-S", "-c", ISOLATED, *args],
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
    """The penguins service served by azmlinfsrv on loopback, one worker (per module).

    Its front waits 1 s for a stalled body (5 s by default), so the tests of one stay short.
    """
    from amlkit.serving.server import serve

    quick = {"AMLKIT_FRONT_BODY_TIMEOUT_S": "1"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMLKIT_ROOT", str(penguins_service.root))
        with serve(penguins_service.folder, port=0, workers=1, env=quick) as handle:
            yield handle


@pytest.fixture(scope="session")
def digits_service(tmp_path_factory, new_project, digit_splits, digit_classifier):
    """The digits CNN registered as notebook 05 does and packaged (keras) in its own root.

    A namespace of ``root``, ``folder`` (the service), ``model`` and ``splits``.
    """
    from amlkit.deep import workflow
    from amlkit.registry import tracking
    from amlkit.serving.package import package_service

    model, history = digit_classifier
    with pytest.MonkeyPatch.context() as mp:
        root = new_project(tmp_path_factory.mktemp("keras") / "root", mp)
        tracking.configure_tracking()  # as notebook 05's setup does: this project's store
        version, _ = workflow.track_and_register(
            model,
            history,
            digit_splits,
            {},
            name="digits-cnn",
            data={"dataset": "digits", "version": "bundled", "sha256": ""},
            hyperparameters={"epochs": 3},
        )
        folder = package_service(version.path, service="digits")
    return SimpleNamespace(root=root, folder=folder, model=model, splits=digit_splits)
