"""Blue/green on the local twin endpoint: real inference servers started from the plan's code
folder and the packaged model registered in a real MLflow registry (the project's SQLite
store), laid out under AZUREML_MODEL_DIR as Azure ML mounts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from amlkit.monitoring import traffic

pytestmark = pytest.mark.slow


@pytest.fixture
def packaged(root, make_version, penguins_frame):
    """Two penguins versions packaged and registered as penguins-packaged 1 and 2."""
    from amlkit.serving.package import package_service, service_info

    models = root / "models" / "trained_models"
    found = []
    for number in (1, 2):
        folder = package_service(
            make_version(models, version=number),
            service="amlkit-penguins" if number == 1 else "other",
            parity_rows=penguins_frame.head(40),
            register=True,
        )
        found.append(service_info(folder)["registered"])
    return [f"{r['name']}:{r['version']}" for r in found]


@pytest.fixture
def smoke(penguins_frame, penguin_features):
    return json.loads(traffic.request_body(penguins_frame.head(3), penguin_features))


def test_packaging_registers_the_service_from_runs_and_reuses_the_version(root, packaged):
    from mlflow import MlflowClient

    from amlkit.serving.package import package_service, service_info
    from amlkit.serving.packaged_model import find_packaged

    assert packaged == ["penguins-packaged:1", "penguins-packaged:2"]
    version = MlflowClient().get_model_version("penguins-packaged", "1")
    assert version.source.startswith("runs:/") and version.source.endswith("/service")
    assert version.tags["amlkit.source_model"] == "penguins"
    assert version.tags["amlkit.source_version"] == "1"
    folder = root / "models" / "deployed_models" / "amlkit-penguins"
    again = package_service(
        root / "models" / "trained_models" / "penguins" / "1",
        service="amlkit-penguins",
        fast_path=False,
        register=True,
    )
    # another packaging (no ONNX) of the same source version is another content: version 3;
    # packaging that content again reuses version 3
    assert service_info(again)["registered"]["version"] == 3
    package_service(folder.parent.parent / "trained_models" / "penguins" / "1",
                    service="amlkit-penguins", fast_path=False, register=True)  # fmt: skip
    assert service_info(folder)["registered"]["version"] == 3
    assert len(MlflowClient().search_model_versions("name = 'penguins-packaged'")) == 3
    assert find_packaged("penguins", 1).version == 3


def test_plan_deployments_use_the_generic_code_and_the_exact_version(root, packaged, tmp_path):
    import yaml

    from amlkit.azure.plan import write_plan
    from amlkit.serving.packaged_model import get_packaged

    # a service is packaged here (amlkit-penguins, version 1): the plan still uses code/online
    write_plan(tmp_path / "plan", packaged=get_packaged(packaged[1]))
    online = tmp_path / "plan" / "endpoints" / "online"
    for name in ("blue", "green"):
        spec = yaml.safe_load((online / f"{name}.yml").read_text())
        assert spec["model"] == "azureml:penguins-packaged:2"
        code = (online / spec["code_configuration"]["code"]).resolve()
        assert code == (tmp_path / "plan" / "code" / "online").resolve()
        assert not (code / "service_metadata.json").exists()
    batch = yaml.safe_load((tmp_path / "plan" / "endpoints/batch/deployment.yml").read_text())
    assert batch["model"] == "azureml:penguins-packaged:2"


def test_plan_names_the_version_a_service_registered_here(root, packaged, tmp_path):
    import yaml

    from amlkit.azure.plan import write_plan

    write_plan(tmp_path / "plan")
    blue = yaml.safe_load((tmp_path / "plan/endpoints/online/blue.yml").read_text())
    assert blue["model"] == "azureml:penguins-packaged:1"  # never a local path and version


SCORE_IN_CODE_FOLDER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("scoring_script", sys.argv[1])
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
script.init()
print(json.dumps(script.STATE["model"]))
"""


def test_init_finds_service_metadata_in_the_mounted_registered_model(root, packaged, tmp_path):
    """The plan's code folder has no service_metadata.json: the registered model brings it."""
    import mlflow

    from amlkit.config import DeploymentConfig
    from amlkit.serving.package import write_service_code

    code = tmp_path / "code"
    write_service_code(
        code, "onnx", DeploymentConfig.load().resolved().to_dict(), service="amlkit-penguins"
    )
    mounted = tmp_path / "azureml-models" / "penguins-packaged" / "2"
    mlflow.artifacts.download_artifacts(
        "models:/penguins-packaged/2", dst_path=str(mounted / "service")
    )
    env = {
        **os.environ,
        "AZUREML_MODEL_DIR": str(mounted),
        "AMLKIT_AUTH": "endpoint",
        "AMLKIT_REQUEST_LOG_DIR": str(tmp_path / "logs"),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCORE_IN_CODE_FOLDER, str(code / "scoring_script.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "name": "penguins",
        "version": 2,
        "backend": "onnx",
    }


def test_blue_green_on_the_twin_endpoint(root, packaged, smoke, tmp_path):
    from amlkit.azure import rollout
    from amlkit.azure.plan import write_plan
    from amlkit.azure.twin_endpoint import TwinEndpoint
    from amlkit.serving.packaged_model import get_packaged

    first_model, second_model = packaged
    plan = tmp_path / "plan"
    write_plan(plan, packaged=get_packaged(first_model))
    folder = tmp_path / "twin"
    with TwinEndpoint(folder, "amlkit-penguins-test", smoke_payload=smoke) as twin:
        first = rollout.deploy(twin, plan, model=first_model, share=10)
        assert (first.action, first.deployment, first.traffic) == ("first", "blue", {"blue": 100})
        assert first.monitored == "blue" and "a canary of 10% has nothing" in first.message
        status, answer, served_by = twin.score(smoke)
        assert (status, served_by, answer["model"]["version"]) == (200, "blue", 1)
        assert len(answer["predictions"]) == 3
        # the spec's data collector is on: the platform's sidecar writes both collections,
        # and the monitor's reader joins each request's outputs to its inputs
        collected = _collected_rows(twin, "blue", rows=3 + 3)  # the smoke test, then ours
        assert collected["prediction"].tolist()[-3:] == answer["predictions"]
        column = smoke["input_data"]["columns"].index("bill_length_mm")
        assert collected["bill_length_mm"].tolist()[-3:] == [
            row[column] for row in smoke["input_data"]["data"]
        ]
        again = rollout.deploy(twin, plan, model=first_model)  # CD's switch after a first run
        assert (again.action, again.deployment, again.traffic) == (
            "unchanged",
            "blue",
            {"blue": 100},
        )

        canary = rollout.deploy(twin, plan, model=second_model, share=10)
        assert (canary.action, canary.deployment) == ("canary", "green")
        assert canary.traffic == {"blue": 90, "green": 10} and canary.monitored == "blue"
        status, answer, _ = twin.score(smoke, deployment="green")
        assert (status, answer["model"]["version"]) == (200, 2)

        switch = rollout.deploy(twin, plan, model=second_model, share=100)  # finds green again
        assert (switch.action, switch.deployment, switch.traffic) == (
            "switch",
            "green",
            {"green": 100},
        )
        assert switch.retired == ["blue"] and switch.monitored == "green"
        assert twin.running() == ["green"]  # blue is deleted: one instance is paid for

        nothing = rollout.rollback(twin)
        assert nothing.action == "nothing_to_roll_back" and nothing.traffic == {"green": 100}

    # another process sees the endpoint: the state file, servers started again from it
    with TwinEndpoint(folder, "amlkit-penguins-test", smoke_payload=smoke) as again:
        assert again.state()["monitored"] == "green"
        status, answer, served_by = again.score(smoke)
        assert (status, served_by, answer["model"]["version"]) == (200, "green", 2)
        mounted = Path(again.state()["deployments"]["green"]["model_dir"])
        assert (mounted / "service" / "service_metadata.json").is_file()
        assert mounted.parts[-3:] == ("azureml-models", "penguins-packaged", "2")

        canary = rollout.deploy(again, plan, model=first_model, share=20)
        assert canary.traffic == {"green": 80, "blue": 20}
        back = rollout.rollback(again)
        assert (back.action, back.traffic, back.retired) == ("rollback", {"green": 100}, ["blue"])
        assert back.monitored == "green"
    shutil.rmtree(folder)


def _collected_rows(twin, deployment: str, rows: int, timeout_s: float = 60.0):
    """Wait for the collector sidecar to hold ``rows`` rows of both collections; read them."""
    import time

    from amlkit.monitoring.collected import read_collected

    folder = twin.collected(deployment).parent  # model_inputs and model_outputs
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = {c: list((folder / c).rglob("*.jsonl")) for c in ("model_inputs", "model_outputs")}
        if all(files.values()):
            frame = read_collected(folder)
            if len(frame) >= rows and frame["prediction"].notna().sum() >= rows:
                return frame
        time.sleep(0.5)
    raise AssertionError(f"the collector wrote fewer than {rows} rows to {folder} in time")


def test_a_deploy_refuses_a_model_without_an_exact_version(tmp_path):
    from amlkit.azure import rollout

    with pytest.raises(ValueError, match="is not NAME:VERSION"):
        rollout.deploy(None, tmp_path, model="penguins-packaged@latest")  # type: ignore[arg-type]


def test_cli_deploys_to_the_local_twin_and_rolls_back_only_with_somewhere_to_go(
    root, packaged, tmp_path
):
    env = {**os.environ, "AMLKIT_ROOT": str(root)}

    def azure(*args: str) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "amlkit.cli", "azure", *args, "--target", "local", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    nothing = azure("deploy", "--deployment", "idle", "--rollback")
    assert nothing["action"] == "nothing_to_roll_back" and nothing["traffic"] == {}
    first = azure("deploy", "--model", packaged[0], "--traffic", "10", "--out", str(tmp_path / "p"))
    assert (first["action"], first["traffic"]) == ("first", {"blue": 100})
