"""environment.yml (Azure ML / conda) and pyproject.toml must list the same dependencies."""

import tomllib

import yaml


def _pyproject_deps(repo):
    data = tomllib.loads((repo / "pyproject.toml").read_text())
    return sorted(data["project"]["dependencies"])


def _environment_pip_deps(repo):
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip = [d for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip: section"
    return sorted(pip[0]["pip"])


def test_environment_yml_matches_pyproject(repo):
    missing = set(_pyproject_deps(repo)) - set(_environment_pip_deps(repo))
    extra = set(_environment_pip_deps(repo)) - set(_pyproject_deps(repo))
    assert not missing, f"in pyproject.toml but not environment.yml: {sorted(missing)}"
    assert not extra, f"in environment.yml but not pyproject.toml: {sorted(extra)}"


def test_environment_python_matches_requires_python(repo):
    env = yaml.safe_load((repo / "environment.yml").read_text())
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    requires = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == ["python=3.11"]
    assert ">=3.11" in requires
