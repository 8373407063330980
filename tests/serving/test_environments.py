"""A service imports nothing outside its lean environment: each backend's scoring script runs
in a fresh Python where every installed package outside the environment (its packages and
their dependencies) is blocked, as if absent, and must still answer; and every module it
loads must come from the environment."""

from __future__ import annotations

import json
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement


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
        if name not in found:
            found.add(name)
            todo += [Requirement(r) for r in dist.requires or []]
    return found


def _pip(folder: Path) -> list[str]:
    spec = yaml.safe_load((folder / "environment.yml").read_text())
    return next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))


def _top_level(file: str, site: set[str]) -> str | None:
    """The top-level package of site-packages a loaded module's file lies in, else None.

    By file, not by name: compiled extensions register modules under names of their own.
    Modules without a file (built-ins, namespace packages, Cython's runtime) and files
    outside site-packages (the standard library, the service folder) are not attributed.
    """
    for folder in site:
        if file and Path(file).is_relative_to(folder):
            return Path(file).relative_to(folder).parts[0].removesuffix(".py").split(".")[0]
    return None


def score_in_environment(score_isolated, folder: Path, payload, workdir: Path):
    """Score with every package outside the service's environment blocked; return the
    response status and the packages it loaded from outside the environment (none)."""
    allowed = _closure(_pip(folder))
    owners = metadata.packages_distributions()
    normal = {top: {d.lower().replace("_", "-") for d in dists} for top, dists in owners.items()}
    blocked = [top for top, dists in normal.items() if top != "amlkit" and not dists & allowed]
    result = score_isolated(folder, payload, workdir, blocked)
    site = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    tops = {_top_level(file, site) for file in result["files"]} - {None}
    outside = sorted(
        f"{top} ({sorted(normal.get(top, []))})"
        for top in tops
        if not normal.get(top, set()) & allowed
    )
    return result["status"], outside


@pytest.fixture(scope="module")
def services(tmp_path_factory, new_project, penguins_frame, make_version):
    from sklearn.linear_model import LogisticRegression

    from amlkit.serving.package import package_service

    with pytest.MonkeyPatch.context() as mp:
        root = new_project(tmp_path_factory.mktemp("envs") / "root", mp)
        version = make_version(root / "models" / "trained_models", LogisticRegression(max_iter=500))
        yield {
            "onnx": package_service(version, service="onnx", parity_rows=penguins_frame.head(60)),
            "sklearn": package_service(version, service="pickle", fast_path=False),
        }


@pytest.mark.parametrize("backend", ["onnx", "sklearn"])
def test_scoring_script_imports_only_its_environment(
    services, backend, tmp_path, penguins_frame, penguin_features, score_isolated
):
    folder = services[backend]
    assert json.loads((folder / "service_metadata.json").read_text())["backend"] == backend
    rows = json.loads(penguins_frame[penguin_features].head(3).to_json(orient="records"))
    status, outside = score_in_environment(score_isolated, folder, rows, tmp_path)
    assert status == 200
    assert outside == []


def test_onnx_environment_holds_no_training_library(services):
    pip = _pip(services["onnx"])
    names = {Requirement(r).name for r in pip}
    assert names == {
        "azureml-inference-server-http",
        "orjson",
        "onnxruntime",
        "numpy",
        "azureml-ai-monitoring",
    }
    assert not _closure(pip) & {"scikit-learn", "tensorflow", "mlflow", "jupyterlab", "scipy"}


@pytest.mark.slow
def test_keras_scoring_script_imports_only_its_environment(
    tmp_path, digits_service, score_isolated
):
    from amlkit.deep import images

    x, _ = images.load_images()
    payload = {"images": x[:2, :, :, 0].tolist()}
    status, outside = score_in_environment(score_isolated, digits_service.folder, payload, tmp_path)
    assert status == 200
    assert outside == []
