"""One rule for every name that becomes a folder: model, service, endpoint, data set, run id.

The rule lives in amlkit.names; each place that joins a name to a project folder applies it,
so a name like ``../trained_models`` or ``$(x)`` is refused with the same message everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amlkit import names, paths

BAD_NAMES = [
    "../../data/external/victim",
    "../trained_models",
    "..",
    ".",
    ".hidden",
    "a/b",
    "a\\b",
    "/abs",
    "a;touch x",
    "$(x)",
    "`x`",
    "a b",
    "a\nb",
    "",
    "x" * 129,
    "-leading-dash",
    "caf\u00e9",
]
GOOD_NAMES = ["penguins", "penguins-classification", "digits16-cnn", "a.b_c-1", "7", "x" * 128]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_check_name_refuses_names_that_are_not_one_plain_folder_name(name):
    with pytest.raises(ValueError) as caught:
        names.check_name("service", name)
    message = str(caught.value)
    assert message.startswith(f"service name {name!r} is not allowed: ")
    assert "letters, digits, '.', '_' or '-'" in message and "1-128" in message


@pytest.mark.parametrize("value", [None, 42, b"penguins", ["penguins"]])
def test_check_name_refuses_what_is_not_a_string(value):
    with pytest.raises(ValueError, match=r"^model name .* is not allowed"):
        names.check_name("model", value)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_check_name_returns_plain_names_unchanged(name):
    assert names.check_name("data set", name) == name
    assert names.is_name(name)


def _places() -> dict[str, tuple[str, Callable[[str], Any]]]:
    from amlkit.data import ingest, preprocess
    from amlkit.monitoring import monitor
    from amlkit.pipeline import runner
    from amlkit.registry import store
    from amlkit.serving import auth, package

    return {
        "registry folder": ("model", store.model_dir),
        "raw data folder": ("data set", ingest.list_versions),
        "processed data folder": ("data set", preprocess.list_processed),
        "endpoint state folder": ("endpoint", auth.endpoint_dir),
        "request log folder": ("endpoint", monitor.request_log_dir),
        "monitoring report folder": ("endpoint", monitor.report_dir),
        "service folder": ("service", package.service_target),
        "run folder": ("run id", lambda name: runner.run_pipeline(run_id=name, progress=False)),
    }


@pytest.mark.parametrize("place", sorted(_places()))
@pytest.mark.parametrize("name", ["../trained_models", "a;touch x", "$(x)", "a/b"])
def test_every_folder_named_by_a_name_refuses_it_with_the_one_message(project, place, name):
    kind, make_path = _places()[place]
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    with pytest.raises(ValueError, match=rf"^{kind} name .* is not allowed: use 1-128 letters"):
        make_path(name)
    created = sorted(p.relative_to(project) for p in project.rglob("*"))
    assert [p for p in created if p not in before and not str(p).startswith(".amlkit")] == []


@pytest.mark.parametrize(
    ("parameter", "kind"),
    [("dataset", "data set"), ("model_name", "model"), ("service", "service")],
)
def test_a_bad_notebook_parameter_fails_before_any_notebook_runs(project, parameter, kind):
    from amlkit.pipeline import runner

    stage = {"dataset": "01", "model_name": "04", "service": "06"}[parameter]
    with pytest.raises(ValueError, match=rf"^{kind} name '\.\./x' is not allowed"):
        runner.run_pipeline([stage], {parameter: "../x"}, run_id="bad", progress=False)
    assert not (paths.runs_dir() / "bad").exists()


def test_check_inside_names_the_link_that_leads_out_and_its_target(project, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (project / "data").mkdir()
    (project / "data" / "raw").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError) as caught:
        paths.check_inside(paths.raw_dir() / "penguins")
    message = str(caught.value)
    assert f"{project / 'data' / 'raw'} is a symbolic link to {outside}" in message
    assert "replace the link by a folder" in message


def test_check_inside_accepts_a_link_that_stays_in_the_project(project):
    (project / "data" / "store").mkdir(parents=True)
    (project / "data" / "raw").symlink_to(project / "data" / "store", target_is_directory=True)
    assert paths.check_inside(paths.raw_dir() / "penguins") == paths.raw_dir() / "penguins"


def test_check_inside_refuses_a_path_that_climbs_out(project):
    with pytest.raises(ValueError, match="lies outside"):
        paths.check_inside(Path(paths.deployed_models_dir(), "..", "..", ".."))
