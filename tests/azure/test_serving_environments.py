"""A service imports nothing outside its lean environment: each backend's scoring script runs
in a fresh Python where every installed package outside the environment (its packages and
their dependencies) is blocked, as if absent, and must still answer; and every module it
loads must come from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

# init() and run() of the service's scoring script, amlkit not importable (python -S: no .pth
# file) and the packages named in argv[3] blocked; prints every module loaded, with its file.
SCORE_AND_LIST = """
import importlib.util, json, sys
from pathlib import Path

folder, body, blocked = Path(sys.argv[1]), sys.argv[2].encode(), set(json.loads(sys.argv[3]))


class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Absent())
spec = importlib.util.spec_from_file_location("scoring_script", folder / "scoring_script.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
script.init()
from flask import Request
from werkzeug.test import EnvironBuilder

environ = EnvironBuilder(method="POST", data=body, content_type="application/json")
response = script.run(Request(environ.get_environ()))
print(json.dumps({
    "status": response.status_code,
    "modules": {name: getattr(module, "__file__", None) for name, module in sys.modules.items()},
}))
"""


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install: themselves and their dependencies."""
    todo = [Requirement(r) for r in requirements]
    found: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # not installed here, so none of its modules can be loaded either
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in found:
            continue
        found.add(name)
        todo += [Requirement(r) for r in dist.requires or []]
    return found


def _loaded_outside(folder: Path, payload, workdir: Path) -> tuple[int, list[str]]:
    site = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sorted(site)),
        "AZUREML_MODEL_DIR": str(folder / "model"),
        "AMLKIT_AUTH": "endpoint",
        "AMLKIT_REQUEST_LOG_DIR": str(workdir / "logs"),
    }
    spec = yaml.safe_load((folder / "environment.yml").read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    allowed = _closure(pip)
    owners = metadata.packages_distributions()
    blocked = sorted(
        top
        for top, dists in owners.items()
        if top != "amlkit" and not {d.lower().replace("_", "-") for d in dists} & allowed
    )
    args = [str(folder), json.dumps(payload), json.dumps(blocked)]
    done = subprocess.run(
        [sys.executable, "-S", "-c", SCORE_AND_LIST, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    outside = set()
    for file in result["modules"].values():
        top = _top_level(file, site)
        if top is None:
            continue
        dists = {d.lower().replace("_", "-") for d in owners.get(top, [])}
        if not dists & allowed:
            outside.add(f"{top} (from {sorted(dists) or 'no distribution'})")
    return result["status"], sorted(outside)


def _top_level(file: str | None, site: set[str]) -> str | None:
    """The top-level package of site-packages a loaded module's file lies in, else None.

    By file, not by name: compiled extensions register modules under names of their own.
    Modules without a file (built-ins, namespace packages, Cython's runtime) and files
    outside site-packages (the standard library, the service folder) are not attributed.
    """
    for folder in site:
        if file and Path(file).is_relative_to(folder):
            return Path(file).relative_to(folder).parts[0].removesuffix(".py").split(".")[0]
    return None


@pytest.fixture(scope="module")
def services(tmp_path_factory, new_project, penguins_frame, make_version):
    from sklearn.linear_model import LogisticRegression

    from amlkit.serving.package import package_service

    with pytest.MonkeyPatch.context() as mp:
        root = new_project(tmp_path_factory.mktemp("envs") / "root", mp)
        models = root / "models" / "trained_models"
        version = make_version(models, LogisticRegression(max_iter=500))
        rows = penguins_frame.head(60)
        yield {
            "onnx": package_service(version, service="onnx", parity_rows=rows),
            "sklearn": package_service(version, service="pickle", fast_path=False),
        }


@pytest.mark.parametrize("backend", ["onnx", "sklearn"])
def test_scoring_script_imports_only_its_environment(
    services, backend, tmp_path, penguins_frame, penguin_features
):
    folder = services[backend]
    assert json.loads((folder / "service_metadata.json").read_text())["backend"] == backend
    rows = json.loads(penguins_frame[penguin_features].head(3).to_json(orient="records"))
    status, outside = _loaded_outside(folder, rows, tmp_path)
    assert status == 200
    assert outside == [], outside


def test_onnx_environment_holds_no_training_library(services):
    spec = yaml.safe_load((services["onnx"] / "environment.yml").read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    names = {Requirement(r).name for r in pip}
    assert names == {
        "azureml-inference-server-http",
        "onnxruntime",
        "numpy",
        "azureml-ai-monitoring",
    }
    assert not _closure(pip) & {"scikit-learn", "tensorflow", "mlflow", "jupyterlab", "scipy"}


@pytest.mark.slow
def test_keras_scoring_script_imports_only_its_environment(
    tmp_path, tmp_path_factory, new_project, digit_splits, digit_classifier
):
    from amlkit.deep import images, workflow
    from amlkit.serving.package import package_service

    model, history = digit_classifier
    with pytest.MonkeyPatch.context() as mp:
        new_project(tmp_path_factory.mktemp("keras-env") / "root", mp)
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
    x, _ = images.load_images()
    status, outside = _loaded_outside(folder, {"images": x[:2, :, :, 0].tolist()}, tmp_path)
    assert status == 200
    assert outside == [], outside
