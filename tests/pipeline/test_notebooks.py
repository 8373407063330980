"""Committed notebooks: the project's kernel, and cleaning execution noise with nbstripout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import papermill as pm
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from amlkit.pipeline.notebooks import clean_notebook


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_committed_notebooks_declare_the_project_kernel(repo, project_kernelspec):
    declared = {
        nb.name: json.loads(nb.read_text(encoding="utf-8"))["metadata"].get("kernelspec")
        for nb in sorted((repo / "notebooks").glob("*.ipynb"))
    }
    assert len(declared) >= 7
    assert {name: spec for name, spec in declared.items() if spec != project_kernelspec} == {}


def test_the_project_kernel_is_registered_and_runs_this_environment(project_kernelspec):
    spec = KernelSpecManager().get_kernel_spec(project_kernelspec["name"])
    assert spec.display_name == project_kernelspec["display_name"]
    assert Path(spec.argv[0]).parent.resolve() == Path(sys.executable).parent.resolve()


def test_committed_notebooks_carry_no_execution_noise(repo, tmp_path):
    for notebook in sorted((repo / "notebooks").glob("*.ipynb")):
        copy = shutil.copy(notebook, tmp_path / notebook.name)
        assert not clean_notebook(copy), f"{notebook.name}: run `amlkit notebooks clean` on it"


@pytest.fixture(scope="module")
def executed(tmp_path_factory, make_notebook):
    """A notebook papermill ran with a parameter, as `amlkit run` leaves it in runs/."""
    folder = tmp_path_factory.mktemp("executed")
    source = make_notebook(
        folder / "source.ipynb",
        "print(n * 2)",
        "n + 1",
        parameters="n: int = 1  # a parameter",
    )
    output = folder / "executed.ipynb"
    pm.execute_notebook(str(source), str(output), parameters={"n": 20}, progress_bar=False)
    nb = json.loads(output.read_text(encoding="utf-8"))
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb["cells"][-1]["metadata"]["scrolled"] = True
    output.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return output


def test_clean_keeps_outputs_counts_ids_and_the_parameters_tag(executed, tmp_path):
    before = _cells(executed)
    notebook = shutil.copy(executed, tmp_path / "nb.ipynb")

    assert clean_notebook(notebook)

    after = _cells(notebook)
    injected = [c for c in before if "injected-parameters" in c["metadata"]["tags"]]
    kept = [c for c in before if c not in injected]
    assert len(injected) == 1 and len(after) == len(kept) == 3
    assert [c["source"] for c in after] == [c["source"] for c in kept]
    assert [c["id"] for c in after] == [c["id"] for c in kept]
    assert [c["execution_count"] for c in after] == [c["execution_count"] for c in kept]
    assert [c["outputs"] for c in after] == [c["outputs"] for c in kept]
    assert after[1]["outputs"][0]["text"] == ["40\n"]
    assert [c["metadata"] for c in after] == [{"tags": ["parameters"]}, {}, {}]


def test_clean_drops_papermill_metadata_timestamps_and_widget_state(executed, tmp_path):
    notebook = shutil.copy(executed, tmp_path / "nb.ipynb")

    clean_notebook(notebook)

    text = Path(notebook).read_text(encoding="utf-8")
    metadata = json.loads(text)["metadata"]
    assert set(metadata) == {"kernelspec", "language_info"}
    for noise in ("papermill", "start_time", "iopub.", "widget-state", "scrolled"):
        assert noise not in text
    assert not clean_notebook(notebook)


def test_notebooks_clean_command_reports_what_it_cleaned(executed, tmp_path):
    notebook = shutil.copy(executed, tmp_path / "nb.ipynb")
    command = [sys.executable, "-m", "amlkit.cli", "notebooks", "clean", str(notebook)]

    first = subprocess.run(command, capture_output=True, text=True, check=True)
    second = subprocess.run(command, capture_output=True, text=True, check=True)

    assert first.stdout == f"cleaned {Path(notebook).resolve()}\n"
    assert second.stdout == ""
