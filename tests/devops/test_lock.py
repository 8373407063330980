"""uv.lock, pyproject.toml and environment.yml agree, and .venv is what the lock says.

``python3 dev.py lock`` refreshes uv.lock after a change of dependencies; ``dev.py setup``
installs from it with ``uv sync --locked``, which refuses a lock older than pyproject.toml.
"""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


@pytest.fixture(scope="module")
def lock(repo) -> dict:
    return tomllib.loads((repo / "uv.lock").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def locked(lock) -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for package in lock["package"]:
        versions.setdefault(canonicalize_name(package["name"]), set()).add(package["version"])
    return versions


def _key(name: str, specifier: str, marker: str | None) -> tuple[str, str, str]:
    return canonicalize_name(name), str(Requirement(f"x{specifier}").specifier), marker or ""


def test_the_lock_was_made_from_this_pyproject(repo, lock):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    wanted = {
        _key(r.name, str(r.specifier), None) for r in map(Requirement, project["dependencies"])
    }
    for extra, requirements in project["optional-dependencies"].items():
        for r in map(Requirement, requirements):
            wanted.add(_key(r.name, str(r.specifier), f"extra == '{extra}'"))
    root = next(p for p in lock["package"] if p["name"] == project["name"])
    recorded = {
        _key(d["name"], d.get("specifier", ""), d.get("marker"))
        for d in root["metadata"]["requires-dist"]
    }
    assert recorded == wanted, "uv.lock is older than pyproject.toml: run `python3 dev.py lock`"
    assert lock["requires-python"].replace(" ", "") == project["requires-python"]


def test_every_environment_yml_requirement_is_met_by_a_locked_version(repo, locked):
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    unmet = {}
    for requirement in map(Requirement, pip):
        versions = locked.get(canonicalize_name(requirement.name), set())
        if not any(requirement.specifier.contains(v, prereleases=True) for v in versions):
            unmet[str(requirement)] = sorted(versions)
    assert unmet == {}


def test_every_locked_package_from_the_registry_carries_hashes(lock):
    unhashed = [
        p["name"]
        for p in lock["package"]
        if "registry" in p["source"]
        and not all(f.get("hash") for f in [*p.get("wheels", []), p.get("sdist", {"hash": 1})])
    ]
    assert unhashed == []


def test_the_environment_holds_exactly_the_locked_versions(lock, locked):
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    different = {
        name: (installed[name], sorted(versions))
        for name, versions in locked.items()
        if name in installed and installed[name] not in versions
    }
    assert different == {}, "run `python3 dev.py setup` to install from uv.lock"
    dev = next(p for p in lock["package"] if p["name"] == "amlkit")["optional-dependencies"]["dev"]
    assert {canonicalize_name(d["name"]) for d in dev} <= set(installed)
