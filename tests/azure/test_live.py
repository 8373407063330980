"""The live paths need a workspace and credentials; without them they skip and say why."""

from __future__ import annotations

import pytest

from amlkit.config import AzureConfig

WORKSPACE = AzureConfig.load().workspace_configured
needs_workspace = pytest.mark.skipif(
    not WORKSPACE,
    reason="needs a live Azure ML workspace and credentials: config/azure_config.json names "
    "none, and this machine cannot reach Azure",
)


def test_connect_refuses_without_a_workspace_and_says_what_to_fill():
    from amlkit.azure import live

    with pytest.raises(live.Skipped, match="fill subscription_id, resource_group and workspace"):
        live.connect(AzureConfig())


@pytest.mark.azure
@needs_workspace
def test_training_pipeline_completes_on_the_workspace(tmp_path):
    from amlkit.azure import live
    from amlkit.azure.plan import write_plan

    write_plan(tmp_path / "plan")
    job = live.submit(tmp_path / "plan", "training-pipeline", wait=True)
    assert job["status"] == "Completed", job


@pytest.mark.azure
@needs_workspace
def test_champion_is_read_from_the_workspace_registry():
    from amlkit.azure import live

    found = live.champion("penguins-classification")
    assert found["champion_version"] is not None


class _Poller:
    def result(self):
        return None


class _Computes:
    """Stands in for ``MLClient.compute`` (a workspace we cannot reach): records the calls."""

    def __init__(self, existing=(), refuse=None):
        self.existing, self.refuse, self.calls = set(existing), refuse, []

    def get(self, name):
        from azure.core.exceptions import ResourceNotFoundError

        self.calls.append(("get", name))
        if name not in self.existing:
            raise ResourceNotFoundError(f"compute {name} not found")
        return name

    def begin_create_or_update(self, cluster):
        self.calls.append(("begin_create_or_update", cluster.name))
        if self.refuse:
            raise self.refuse
        self.existing.add(cluster.name)
        return _Poller()


class _Client:
    def __init__(self, compute):
        self.compute = compute


def _cluster():
    from amlkit.azure import compute

    return compute.cluster(AzureConfig.load())


def test_submit_uses_an_existing_cluster_as_it_is_and_never_updates_it():
    from amlkit.azure import live

    cluster = _cluster()
    computes = _Computes(existing={cluster.name})
    assert live.ensure_compute(_Client(computes), cluster) == "exists"
    assert computes.calls == [("get", cluster.name)]


def test_submit_creates_the_cluster_only_when_it_is_missing():
    from amlkit.azure import live

    cluster = _cluster()
    computes = _Computes()
    client = _Client(computes)
    assert live.ensure_compute(client, cluster) == "created"
    assert live.ensure_compute(client, cluster) == "exists"
    assert [call for call, _ in computes.calls] == ["get", "begin_create_or_update", "get"]


def test_create_prerequisites_leaves_an_existing_cluster_alone(tmp_path):
    from amlkit.azure import live, specs
    from amlkit.azure.plan import Entry

    cluster = _cluster()
    rel = f"compute/{cluster.name}.yml"
    specs.write(specs.entity_dict(cluster, tmp_path / "compute"), tmp_path / rel, "compute")
    computes = _Computes(existing={cluster.name})
    live.create_prerequisites(_Client(computes), tmp_path, [Entry(cluster.name, "compute", rel)])
    assert ("begin_create_or_update", cluster.name) not in computes.calls


def test_a_refused_cluster_creation_names_the_role_it_needs():
    from azure.core.exceptions import HttpResponseError

    from amlkit.azure import live

    refused = HttpResponseError(
        message="(AuthorizationFailed) The client 'ci' does not have authorization to perform "
        "action 'Microsoft.MachineLearningServices/workspaces/computes/write'"
    )
    refused.status_code = 403
    cluster = _cluster()
    with pytest.raises(PermissionError, match=r"Contributor or AzureML Compute Operator") as err:
        live.ensure_compute(_Client(_Computes(refuse=refused)), cluster)
    assert repr(cluster.name) in str(err.value) and "compute_cluster" in str(err.value)


class _Job:
    def __init__(self, status):
        self.name, self.status, self.studio_url = "job-1", status, "https://ml.azure.com/x"


class _Jobs:
    """Stands in for ``MLClient.jobs``: the statuses a job goes through, one per poll."""

    def __init__(self, statuses):
        self.statuses, self.polls = list(statuses), 0

    def get(self, name):
        status = self.statuses[min(self.polls, len(self.statuses) - 1)]
        self.polls += 1
        return _Job(status)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.mark.parametrize(
    ("statuses", "status", "finished", "polls"),
    [
        (["Preparing", "Running", "Completed"], "Completed", True, 3),
        (["Running", "Failed"], "Failed", True, 2),
        (["Running"] * 50, "Running", False, 11),
    ],
    ids=["completes", "fails", "still_running"],
)
def test_wait_for_job_polls_in_short_calls_until_the_job_ends_or_time_runs_out(
    statuses, status, finished, polls
):
    from amlkit.azure import live

    jobs, clock = _Jobs(statuses), _Clock()
    client = type("Client", (), {"jobs": jobs})()
    found = live.wait_for_job(
        client, "job-1", timeout_s=300, poll_s=30, clock=clock, sleep=clock.sleep
    )
    assert (found["status"], found["finished"], jobs.polls) == (status, finished, polls)
    assert clock.now <= 300
