"""Write Azure ML specs as YAML files with relative paths, and check them with the SDK's loaders.

Every spec ``amlkit azure plan`` writes goes through here. Two kinds of content arrive:

- azure-ai-ml entities (``Environment``, ``AmlCompute``, ``Data``, endpoints, deployments,
  ``MonitorSchedule``): :func:`entity_dict` takes the SDK's own serialisation and turns the
  local paths it makes absolute back into paths relative to the spec's folder, so a plan
  written on one machine runs from any checkout;
- job specs (command, pipeline and sweep jobs, job schedules) as the dictionaries of the YAML
  form ``az ml job create`` documents (steps with their ``command`` and ``code``). The SDK's
  dump of a job inlines anonymous components and mangles local code paths
  (``azureml:../code``), so these are written as authored; the loader turns them into the
  ``CommandJob``, ``PipelineJob`` and ``SweepJob`` entities that ``submit`` sends.

:func:`validate` loads a written file with the loader of its kind (``load_job``,
``load_environment``, ... and ``load_schedule``, which azure-ai-ml keeps in
``azure.ai.ml.entities._load_functions``); :func:`round_trip` also dumps the loaded entity and
loads it again, and compares the two.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger(__name__)

EXPERIMENTAL_LOGGER = "azure.ai.ml._utils._experimental"
PATH_KEYS = ("path", "code", "conda_file", "model")
"""Keys whose string values the SDK writes as local paths."""
SCHEMAS = {
    "command": "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json",
    "pipeline": "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json",
    "sweep": "https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json",
    "environment": "https://azuremlschemas.azureedge.net/latest/environment.schema.json",
    "compute": "https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json",
    "data": "https://azuremlschemas.azureedge.net/latest/data.schema.json",
    "batch_endpoint": "https://azuremlschemas.azureedge.net/latest/batchEndpoint.schema.json",
    "batch_deployment": (
        "https://azuremlschemas.azureedge.net/latest/modelBatchDeployment.schema.json"
    ),
    "online_endpoint": (
        "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"
    ),
    "online_deployment": (
        "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json"
    ),
    "schedule": "https://azuremlschemas.azureedge.net/latest/schedule.schema.json",
}
"""The ``$schema`` of each kind, for editors' completion; loaders ignore it."""


@contextlib.contextmanager
def quiet_sdk() -> Iterator[None]:
    """Hide azure-ai-ml's notices that are not news to our users.

    Its "experimental class" messages (the data collector, monitoring entities) on every
    use, and the deprecation notice of ``BatchDeployment``, which the SDK's internals still
    raise around ``ModelBatchDeployment`` (``type: model``, the batch deployment we build).
    """
    sdk = logging.getLogger(EXPERIMENTAL_LOGGER)
    old = sdk.level
    sdk.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="This class is intended as a base class")
            yield
    finally:
        sdk.setLevel(old)


class _Folded(str):
    """A long command line, written as a folded block (``>-``) that reads back unchanged."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Folded, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, ">")
)


def _fold_commands(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: _Folded(v) if k == "command" and isinstance(v, str) else _fold_commands(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_fold_commands(item) for item in obj]
    return obj


def loaders() -> dict[str, Any]:
    """Return ``{kind: azure-ai-ml loader}`` for every kind of spec the plan writes."""
    from azure.ai.ml import (
        load_batch_endpoint,
        load_compute,
        load_data,
        load_environment,
        load_job,
        load_online_deployment,
        load_online_endpoint,
    )
    from azure.ai.ml.entities._load_functions import load_model_batch_deployment, load_schedule

    return {
        "command": load_job,
        "pipeline": load_job,
        "sweep": load_job,
        "environment": load_environment,
        "compute": load_compute,
        "data": load_data,
        "batch_endpoint": load_batch_endpoint,
        "batch_deployment": load_model_batch_deployment,  # `type: model`, `settings:`
        "online_endpoint": load_online_endpoint,
        "online_deployment": load_online_deployment,
        "schedule": load_schedule,
    }


def relative_to(value: str, folder: Path) -> str:
    """Return a local path as seen from ``folder`` (POSIX separators); leave other values."""
    if value.startswith(("azureml:", "http://", "https://", "wasbs:", "abfss:")):
        return value
    if not os.path.isabs(value):
        return value
    return Path(os.path.relpath(value, folder)).as_posix()


def _relativize(obj: Any, folder: Path) -> Any:
    if isinstance(obj, dict):
        return {
            key: relative_to(value, folder)
            if key in PATH_KEYS and isinstance(value, str)
            else _relativize(value, folder)
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [_relativize(item, folder) for item in obj]
    return obj


def as_job(entity: Any) -> Any:
    """Return the job form of an entity.

    ``load_job`` gives a command job as a pipeline node (``Command``), whose own dump only a
    pipeline reads; its ``_to_job()`` is the ``CommandJob`` the SDK submits.
    """
    from azure.ai.ml.entities import Command

    return entity._to_job() if isinstance(entity, Command) else entity


def plain_dict(entity: Any, folder: Path) -> dict[str, Any]:
    """Return an entity's SDK serialisation (``_to_dict``) as plain JSON values.

    Args:
        entity: an azure-ai-ml entity.
        folder: the folder its spec lies in. A job's local ``code`` is resolved against the
            working directory when serialised (the job form forgets the spec's folder), so
            serialisation happens from there.
    """
    with quiet_sdk(), contextlib.chdir(folder):
        return json.loads(json.dumps(as_job(entity)._to_dict()))


def entity_dict(entity: Any, folder: Path) -> dict[str, Any]:
    """Return an azure-ai-ml entity's YAML content with local paths relative to ``folder``."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return _relativize(plain_dict(entity, folder), folder)


def write(content: dict[str, Any], path: Path, kind: str) -> Path:
    """Write a spec's content as YAML (``$schema`` first) to ``path``, atomically.

    Args:
        content: the spec, as :func:`entity_dict` or a job builder returns it.
        path: the file to write; its folder is created.
        kind: a key of :data:`SCHEMAS`.

    Raises:
        ValueError: the content still holds an absolute local path (the spec would only
            work on this machine).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    absolute = [v for v in _path_values(content) if os.path.isabs(v)]
    if absolute:
        raise ValueError(
            f"{path.name} would hold the absolute path {absolute[0]!r}; specs hold paths "
            "relative to their folder. Build it with paths relative to the spec's folder."
        )
    document = _fold_commands({"$schema": SCHEMAS[kind], **content})
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=96)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def _path_values(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in PATH_KEYS and isinstance(value, str) and not value.startswith("azureml:"):
                yield value
            else:
                yield from _path_values(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _path_values(item)


def validate(path: str | Path, kind: str) -> Any:
    """Load a written spec with the SDK loader of its kind and return the entity.

    Raises:
        ValueError: the SDK refuses the file; the message names the file and the SDK's reason.
    """
    loader = loaders()[kind]
    try:
        with quiet_sdk():
            return loader(source=str(path))
    except Exception as exc:  # marshmallow ValidationError, ValidationException, ...
        raise ValueError(
            f"{Path(path).name} is not a valid Azure ML {kind} spec: {exc}. Fix the setting "
            "it comes from in config/ (the plan prints which) and run `amlkit azure plan` again."
        ) from exc


def round_trip(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load a spec, dump the entity as the SDK writes it, load that again: both as dicts.

    Returns:
        ``(first, second)``: the ``_to_dict()`` of the entity loaded from ``path`` and of the
        one loaded from its dump; equal when the spec survives the SDK both ways.
    """
    first = validate(path, kind)
    # The dump sits beside the original: relative paths the SDK keeps verbatim (``code``)
    # then resolve to the same place as they did from the original.
    folder = Path(path).parent
    again = folder / f".{Path(path).stem}.roundtrip.yml"
    job = again.with_suffix(".job.yml")
    try:
        content = entity_dict(first, folder)
        if isinstance(content.get("create_job"), dict):  # a JobSchedule dumps its job inline
            # in a form its loader refuses: write it apart
            job.write_text(yaml.safe_dump(entity_dict(first.create_job, folder)))
            content["create_job"] = f"./{job.name}"
        again.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
        second = validate(again, kind)
        return plain_dict(first, folder), plain_dict(second, folder)
    finally:
        again.unlink(missing_ok=True)
        job.unlink(missing_ok=True)
