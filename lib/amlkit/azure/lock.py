"""The exact versions of ``uv.lock``, for the environments Azure ML builds.

The project's tests run in the environment ``uv.lock`` describes. An Azure ML environment
built from lower bounds (``pandas>=2.2``) resolves on the day it is built, to other versions
than the lock's; so the planned environments list every package they need, their
dependencies included, pinned to the lock's version for the platform Azure ML compute runs
(Linux, x86-64, CPython of the environment's Python). Packages the lock does not hold (such
as ``azureml-core`` of batch deployments) keep their own bounds.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from packaging.markers import Marker

LOCK_FILE = "uv.lock"


def canonical(name: str) -> str:
    """Return a package name as the lock spells it (lower case, runs of ``-_.`` as ``-``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_env(python: str) -> dict[str, str]:
    return {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": ".".join(python.split(".")[:2]),
        "python_full_version": python,
        "extra": "",
    }


@cache
def _read(path: Path) -> dict[str, list[dict[str, Any]]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    packages: dict[str, list[dict[str, Any]]] = {}
    for package in data.get("package", []):
        packages.setdefault(package["name"], []).append(package)
    return packages


def lock_path(root: Path | None = None) -> Path:
    """Return the project's ``uv.lock`` (the repository's when ``root`` has none)."""
    here = (root or Path.cwd()) / LOCK_FILE
    return here if here.is_file() else Path(__file__).resolve().parents[3] / LOCK_FILE


def pins(roots: list[str], lock: Path, *, python: str = "3.11.11") -> dict[str, str]:
    """Return ``{package: version}`` of ``roots`` and everything they need, from the lock.

    Args:
        roots: the packages an environment lists (names as anyone spells them).
        lock: the ``uv.lock`` file.
        python: the Python the environment runs, for the lock's markers.

    Returns:
        The pinned closure; a root the lock does not hold is left out.
    """
    packages, env = _read(lock), _marker_env(python)
    found: dict[str, str] = {}
    todo = [(canonical(name), None) for name in roots]
    while todo:
        name, version = todo.pop()
        candidates = packages.get(name, [])
        if version is not None:
            candidates = [p for p in candidates if p["version"] == version]
        if not candidates or name in found:
            continue
        package = candidates[0]
        found[name] = package["version"]
        for dep in package.get("dependencies", []):
            if "marker" in dep and not Marker(dep["marker"]).evaluate(env):
                continue
            todo.append((canonical(dep["name"]), dep.get("version")))
    return found


def pinned_requirements(
    requirements: list[str], lock: Path, *, python: str = "3.11.11"
) -> list[str]:
    """Return ``requirements`` and their dependencies as ``name==version`` of the lock.

    A requirement the lock does not hold keeps its bound, listed after the pins.
    """
    names = [re.split(r"[<>=!~; \[]", r.strip(), maxsplit=1)[0] for r in requirements]
    locked = pins(names, lock, python=python)
    outside = [r for n, r in zip(names, requirements, strict=True) if canonical(n) not in locked]
    return [f"{name}=={version}" for name, version in sorted(locked.items())] + outside
