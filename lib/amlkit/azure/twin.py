"""The local twin: ``amlkit azure run-local`` runs the Azure ML specs on this machine.

Not a parser of the specs but a runner: after the SDK's loader accepted the file, each step's
own ``command`` runs in ``bash`` from its ``code`` folder, in this Python's environment
(instead of the spec's ``environment``), with ``${{inputs.*}}``, ``${{outputs.*}}`` and
``${{search_space.*}}`` replaced by local values and folders:

- a pipeline job's steps run in dependency order (a step waits for the steps whose outputs
  it reads); its outputs are ``<out>/<step>/<output>/``, a pipeline output
  ``<out>/outputs/<name>/``;
- a command job runs once; a sweep job runs its trial command for ``trials`` settings sampled
  from its search space (Azure's distributions: ``loguniform`` draws the exponent,
  ``quniform`` rounds to ``q``), and reports each trial's objective as the trial's model
  recorded it (``performance_metrics.json``: ``validation_f1_macro`` is
  ``{"validation": {"f1_macro": ...}}``);
- a batch deployment's entry script gets ``init()`` once and ``run(mini_batch)`` for every
  ``mini_batch_size`` files, and the returned rows go to ``<out>/<output_file_name>``.

Data inputs named ``azureml:<asset>:<version>`` or ``azureml:<asset>@latest`` are the data
specs of the same plan (``data/*.yml`` beside ``plan.json``); ``overrides`` (``--set
inputs.NAME=VALUE``, as ``az ml job create --set``) replace input values or paths.
"""

from __future__ import annotations

import graphlib
import hashlib
import json
import logging
import math
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from amlkit import io
from amlkit.azure import specs
from amlkit.azure.twin_platform import (
    JobRun,
    Platform,
    datastore_uri,
    make_read_only,
    make_writable,
)
from amlkit.names import check_name

logger = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.([A-Za-z0-9_]+)\s*\}\}")
OPTIONAL = re.compile(r"\$\[\[(.*?)\]\]", re.S)
BINDING = re.compile(r"^\$\{\{\s*parent\.(inputs|outputs|jobs)\.([A-Za-z0-9_.]+)\s*\}\}$")


class TwinError(RuntimeError):
    """A spec cannot run here, or one of its steps failed (the message says which and why)."""


def spec_kind(spec: dict[str, Any]) -> str:
    """Return the kind of a spec file's content: pipeline, command, sweep or batch_deployment."""
    if spec.get("type") in ("pipeline", "command", "sweep"):
        return str(spec["type"])
    settings = spec.get("settings") or {}
    batch = "mini_batch_size" in spec or "mini_batch_size" in settings
    if "code_configuration" in spec and batch:
        return "batch_deployment"  # the legacy flat schema, or type: model with settings:
    raise TwinError(
        "run-local runs pipeline, command and sweep jobs and batch deployments; this spec is "
        f"none of them (type {spec.get('type')!r})"
    )


@dataclass(frozen=True)
class Blob:
    """A data input or output: a path in the datastore (a file's for a ``uri_file``)."""

    path: str
    file: bool = False


Value = str | Blob


class Twin:
    """Runs one spec file into an output folder, against the twin's platform.

    Args:
        spec_path: the YAML file.
        out_dir: where outputs and logs go (and the started stand-ins' data, ``platform/``).
        overrides: ``{"inputs.NAME": value}`` replacing input values or paths.
        tracking_uri: a running tracking server to use (default ``$AMLKIT_TWIN_TRACKING_URI``,
            else one is started).
        storage: a running Azurite's connection string (default ``$AMLKIT_TWIN_STORAGE``,
            else one is started).
    """

    def __init__(
        self,
        spec_path: Path,
        out_dir: Path,
        overrides: dict[str, str] | None = None,
        *,
        tracking_uri: str | None = None,
        storage: str | None = None,
    ):
        self.path = spec_path.resolve()
        self.spec = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        self.kind = spec_kind(self.spec)
        self.out = out_dir.resolve()
        self.overrides = dict(overrides or {})
        unknown = [k for k in self.overrides if not k.startswith(("inputs.", "model"))]
        if unknown:
            raise TwinError(f"--set takes inputs.NAME=VALUE or model=PATH; got {unknown}")
        specs.validate(self.path, self.kind)  # the SDK accepts it before anything runs
        check_spec_names(self.spec)
        self.assets = _data_index(self.path.parent)
        self.tracking_uri, self.storage = tracking_uri, storage
        self.platform: Platform | None = None
        self.experiment = str(self.spec.get("experiment_name") or "Default")

    @property
    def _platform(self) -> Platform:
        if self.platform is None:
            raise TwinError("the twin's platform is not started: call run()")
        return self.platform

    # --- values -----------------------------------------------------------------------------

    def resolve_input(self, value: Any, name: str = "") -> Value:
        """Return a job input: a literal, or the datastore copy of a data input."""
        if isinstance(value, dict):
            if "path" not in value:
                raise TwinError(f"input {name!r} has no value or path here: {value}")
            value = value["path"]
        if isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            return str(value)
        if value.startswith("azureml:"):
            asset, version, local = self._asset(value, name)
            return self._uploaded(asset, version, local)
        local = self.path.parent / value  # a local path is relative to the spec's folder
        if "/" in value and local.exists():
            return self._uploaded(f"local-{name}", _fingerprint(local), local.resolve())
        return value

    def _uploaded(self, asset: str, version: str, local: Path) -> Blob:
        return Blob(self._platform.upload_asset(asset, version, local), local.is_file())

    def _asset(self, ref: str, name: str) -> tuple[str, str, Path]:
        body = ref.removeprefix("azureml:")
        if "@" in body:  # name@latest
            asset, version = body.split("@", 1)
        else:  # name:version
            asset, _, version = body.rpartition(":") if ":" in body else (body, "", "latest")
        found = self.assets.get(asset, {})
        if version == "latest" and found:
            version = max(found, key=lambda v: found[v][1])
        if version not in found:
            known = sorted(f"{a}:{v}" for a, vs in self.assets.items() for v in vs)
            raise TwinError(
                f"input {name!r} is {ref}, which this plan has no local data for (it has: "
                f"{', '.join(known) or 'none'}). Run the stage that makes it and `amlkit azure "
                f"plan` again, or give a folder: --set inputs.{name}=PATH"
            )
        return asset, version, found[version][0]

    # --- running ------------------------------------------------------------------------------

    def run_command(
        self,
        label: str,
        job: dict[str, Any],
        inputs: dict[str, str],
        outputs: dict[str, Path],
        search_space: dict[str, str] | None = None,
        platform_env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run one job's command with its placeholders filled; return its record."""
        values = {"inputs": inputs, "outputs": {k: str(v) for k, v in outputs.items()}}
        values["search_space"] = search_space or {}
        command = substitute(job["command"], values)
        code = (self.path.parent / job.get("code", ".")).resolve()
        if not code.is_dir():
            raise TwinError(f"{label}: code folder {code} does not exist")
        for folder in outputs.values():
            folder.mkdir(parents=True, exist_ok=True)
        log = self.out / label / "user_logs" / "std_log.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = _job_env(job.get("environment_variables"), platform_env)
        if job.get("distribution"):
            logger.warning(
                "%s: runs as one process here (distribution %s)", label, job["distribution"]
            )
        started = time.perf_counter()
        with open(log, "w", encoding="utf-8") as handle:
            handle.write(f"$ {command}\n")
            handle.flush()
            done = subprocess.run(
                ["bash", "-c", command], cwd=code, env=env, stdout=handle, stderr=subprocess.STDOUT
            )
        seconds = round(time.perf_counter() - started, 1)
        record = {
            "step": label,
            "status": "ok" if done.returncode == 0 else "failed",
            "seconds": seconds,
            "log": str(log),
        }
        if done.returncode:
            tail = "\n  ".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
            raise TwinError(
                f"step {label} failed with exit code {done.returncode}; "
                f"its log {log} ends with:\n  {tail}"
            )
        return record

    def run_job(
        self,
        label: str,
        job: dict[str, Any],
        inputs: dict[str, Value],
        output_ports: list[str],
        *,
        search_space: dict[str, str] | None = None,
        parent: JobRun | None = None,
        root: JobRun | None = None,
    ) -> tuple[dict[str, Any], dict[str, Blob]]:
        """Run a job as the platform does: its run first, inputs mounted, outputs uploaded.

        Data inputs are downloaded from the datastore into ``<out>/<label>/inputs/<port>``
        and made read-only; outputs are fresh folders ``<out>/<label>/<port>``, uploaded to
        ``azureml/<run id>/<port>`` after the command. The run ends FINISHED or FAILED.
        """
        platform = self._platform
        run = platform.start_run(self.experiment, label, parent, root)
        local: dict[str, str] = {}
        mounted: dict[str, str] = {}
        try:
            for port, value in inputs.items():
                if isinstance(value, Blob):
                    folder = platform.download(
                        value.path, self.out / label / "inputs" / port, read_only=True
                    )
                    files = [p for p in folder.iterdir()] if value.file else []
                    local[port] = str(files[0] if files else folder)
                    mounted[port] = datastore_uri(value.path)
                else:
                    local[port] = value
            outputs = {port: _fresh(self.out / label / port) for port in output_ports}
            before = {port: _listing(self.out / label / "inputs" / port) for port in mounted}
            record = self.run_command(
                label, job, local, outputs, search_space, platform.job_environment(run)
            )
            for port, listing in before.items():  # root writes through permission bits
                changed = _changed(listing, _listing(self.out / label / "inputs" / port))
                if changed:
                    raise TwinError(
                        f"step {label} wrote into its input {port!r}, which Azure ML mounts "
                        f"read-only (the job fails there with 'Read-only file system'): "
                        f"{', '.join(changed[:5])}"
                    )
        except Exception:
            platform.end_run(run, ok=False)
            raise
        blobs = {port: Blob(f"azureml/{run.run_id}/{port}") for port in output_ports}
        for port, blob in blobs.items():
            platform.upload(outputs[port], blob.path)
        platform.end_run(run, ok=True)
        record |= {
            "run_id": run.run_id,
            "inputs": mounted,
            "outputs": {port: datastore_uri(b.path) for port, b in blobs.items()},
        }
        return record, blobs

    def run(self, trials: int = 2, seed: int = 0, data: Path | None = None) -> dict[str, Any]:
        """Run the spec; return a summary (also written to ``<out>/run.json``)."""
        self.out.mkdir(parents=True, exist_ok=True)
        with Platform(self.out / "platform", self.tracking_uri, self.storage) as platform:
            self.platform = platform
            try:
                if self.kind == "pipeline":
                    summary = self._pipeline()
                elif self.kind == "command":
                    summary = self._command()
                elif self.kind == "sweep":
                    summary = self._sweep(trials, seed)
                else:
                    summary = self._batch(data)
            finally:
                self.platform = None
            summary = {
                "spec": str(self.path),
                "kind": self.kind,
                "tracking_uri": platform.tracking_uri,
                "experiment": self.experiment,
                **summary,
            }
        io.write_json_atomic(self.out / "run.json", summary)
        return summary

    def _input(self, name: str, value: Any) -> Value:
        override = self.overrides.get(f"inputs.{name}")
        if override is not None:
            path = Path(override).expanduser()
            if path.exists():
                return self._uploaded(f"local-{name}", _fingerprint(path), path.resolve())
            return override
        return self.resolve_input(value, name)

    def _finish_outputs(
        self, declared: dict[str, Any], produced: dict[str, Blob], job: str
    ) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """Copy a job's outputs from the datastore to ``<out>/outputs/<name>``.

        The named ones are registered as data assets (the next version of each name).
        """
        local, registered = {}, []
        for name, blob in produced.items():
            folder = self._platform.download(blob.path, self.out / "outputs" / name)
            local[name] = str(folder)
            spec = declared.get(name)
            if isinstance(spec, dict) and spec.get("name"):
                kind = str(spec.get("type") or "uri_folder")
                registered.append(self._platform.register_data(spec["name"], blob.path, kind, job))
        return local, registered

    def _command(self) -> dict[str, Any]:
        inputs = {n: self._input(n, v) for n, v in (self.spec.get("inputs") or {}).items()}
        declared = self.spec.get("outputs") or {}
        record, blobs = self.run_job("job", self.spec, inputs, list(declared))
        outputs, registered = self._finish_outputs(declared, blobs, record["run_id"])
        return {"steps": [record], "outputs": outputs, "registered_data": registered}

    def _pipeline(self) -> dict[str, Any]:
        platform = self._platform
        jobs = self.spec["jobs"]
        declared = self.spec.get("outputs") or {}
        pipeline_run = platform.start_run(
            self.experiment, str(self.spec.get("display_name") or "pipeline")
        )
        try:
            parent_inputs = {
                n: self._input(n, v) for n, v in (self.spec.get("inputs") or {}).items()
            }
            order = graphlib.TopologicalSorter({name: _upstream(job) for name, job in jobs.items()})
            step_outputs: dict[str, dict[str, Blob]] = {}
            parent_outputs: dict[str, Blob] = {}
            records = []
            for name in order.static_order():
                job = _flatten_node(jobs[name])
                inputs = {
                    port: self._bound(value, port, parent_inputs, step_outputs)
                    for port, value in (job.get("inputs") or {}).items()
                }
                record, blobs = self.run_job(
                    name, job, inputs, list(job.get("outputs") or {}), parent=pipeline_run
                )
                records.append(record)
                step_outputs[name] = blobs
                for port, value in (job.get("outputs") or {}).items():
                    bound = _binding(value)
                    if bound and bound[0] == "outputs":
                        parent_outputs[bound[1]] = blobs[port]
        except Exception:
            platform.end_run(pipeline_run, ok=False)
            raise
        outputs, registered = self._finish_outputs(declared, parent_outputs, pipeline_run.run_id)
        platform.end_run(pipeline_run, ok=True)
        return {
            "pipeline_run_id": pipeline_run.run_id,
            "steps": records,
            "outputs": outputs,
            "registered_data": registered,
            "step_outputs": {
                step: {port: datastore_uri(b.path) for port, b in blobs.items()}
                for step, blobs in step_outputs.items()
            },
        }

    def _bound(
        self,
        value: Any,
        port: str,
        parent_inputs: dict[str, Value],
        step_outputs: dict[str, dict[str, Blob]],
    ) -> Value:
        bound = _binding(value["path"] if isinstance(value, dict) and "path" in value else value)
        if bound is None:
            return self._input(port, value)
        where, ref = bound
        if where == "inputs":
            return parent_inputs[ref]
        if where == "outputs":
            raise TwinError(f"step input {port!r} reads the pipeline output {ref!r}")
        step, _, output = ref.partition(".outputs.")
        return step_outputs[step][output]  # the datastore copy, not the producer's folder

    def _sweep(self, trials: int, seed: int) -> dict[str, Any]:
        rng = random.Random(seed)
        inputs = {n: self._input(n, v) for n, v in (self.spec.get("inputs") or {}).items()}
        objective = self.spec["objective"]
        sweep_run = self._platform.start_run(
            self.experiment, str(self.spec.get("display_name") or "sweep")
        )
        records = []
        try:
            for index in range(trials):
                sample = {
                    name: sample_value(dist, rng)
                    for name, dist in self.spec["search_space"].items()
                }
                label = f"trial_{index}"
                ports = list(self.spec.get("outputs") or {})
                record, _ = self.run_job(
                    label,
                    self.spec["trial"],
                    inputs,
                    ports,
                    search_space={k: str(v) for k, v in sample.items()},
                    parent=sweep_run,
                )
                outputs = {port: self.out / label / port for port in ports}
                record |= {
                    "search_space": sample,
                    objective["primary_metric"]: _objective(outputs, objective["primary_metric"]),
                }
                records.append(record)
        except Exception:
            self._platform.end_run(sweep_run, ok=False)
            raise
        self._platform.end_run(sweep_run, ok=True)
        scored = [r for r in records if r[objective["primary_metric"]] is not None]
        best = (
            (max if objective["goal"] == "maximize" else min)(
                scored, key=lambda r: r[objective["primary_metric"]]
            )
            if scored
            else None
        )
        return {
            "sweep_run_id": sweep_run.run_id,
            "trials": records,
            "best": best["step"] if best else None,
            "objective": objective,
        }

    def _batch(self, data: Path | None) -> dict[str, Any]:
        if data is None:
            raise TwinError("a batch deployment scores files: give them with --data FILE_OR_FOLDER")
        platform = self._platform
        settings = {**self.spec, **(self.spec.get("settings") or {})}  # new schema: settings:
        action = str(settings.get("output_action") or "append_row").lower()
        output_name = str(settings.get("output_file_name") or "predictions.jsonl")
        size = int(settings.get("mini_batch_size") or 10)
        run = platform.start_run(self.experiment, f"batch-{self.spec.get('name', 'deployment')}")
        try:
            source = self._uploaded("batch-input", _fingerprint(data), data.resolve())
            mounted = platform.download(source.path, self.out / "inputs" / "data", read_only=True)
            files = sorted(p for p in mounted.rglob("*") if p.is_file())
            model_dir = self._mount_model()
            code = (self.path.parent / self.spec["code_configuration"]["code"]).resolve()
            script = code / self.spec["code_configuration"]["scoring_script"]
            batches = [[str(f) for f in files[i : i + size]] for i in range(0, len(files), size)]
            score = _fresh(self.out / "score")
            output = score / output_name
            env = _job_env(self.spec.get("environment_variables"), platform.job_environment(run))
            env["AZUREML_MODEL_DIR"] = str(model_dir)
            done = subprocess.run(
                [sys.executable, "-c", BATCH_DRIVER, str(script), json.dumps(batches),
                 str(output), action],
                cwd=code, env=env, capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode:
                raise TwinError(f"the batch entry script failed: {done.stderr.strip()[-2000:]}")
        except Exception:
            platform.end_run(run, ok=False)
            raise
        blob = f"azureml/{run.run_id}/score"
        platform.upload(score, blob)
        platform.end_run(run, ok=True)
        return {
            "run_id": run.run_id,
            "mini_batches": len(batches),
            "files": len(files),
            "output": str(output),
            "output_uri": datastore_uri(f"{blob}/{output_name}"),
            "model_dir": str(model_dir),
            **json.loads(done.stdout.strip().splitlines()[-1]),
        }

    def _mount_model(self) -> Path:
        """Return ``AZUREML_MODEL_DIR``: the deployment's model, laid out as mounted.

        The platform mounts a model at ``azureml-models/<name>/<version>/<model folder>/``.
        """
        models = self.out / "platform" / "azureml-models"
        model = self.spec.get("model")
        local = self.overrides.get("model")
        if local is None and isinstance(model, str) and model.startswith("azureml:"):
            try:
                return self._platform.mount_model(model, models)
            except LookupError as exc:
                raise TwinError(
                    f"the deployment's model {model}: {exc}; or --set model=PATH"
                ) from exc
        if local is None and isinstance(model, dict) and "path" in model:
            local = str((self.path.parent / model["path"]).resolve())
        if local is None:
            raise TwinError(f"the deployment's model {model!r} cannot be found; --set model=PATH")
        source = Path(local).expanduser().resolve()
        declared = model if isinstance(model, dict) else {}
        name = str(declared.get("name") or source.name)
        version = str(declared.get("version") or "1")
        target = models / check_name("model", name) / check_name("version", version)
        make_writable(target)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target / source.name)
        make_read_only(target)
        return target


# init() once, run(mini_batch) per mini-batch; append_row: the rows appended to one file.
BATCH_DRIVER = """
import importlib.util, json, sys
script, batches, output, action = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
spec = importlib.util.spec_from_file_location("batch_driver", script)
driver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(driver)
driver.init()
rows = 0
for mini_batch in batches:
    result = driver.run(mini_batch)
    if action == "append_row":  # one file, each returned element appended as one line
        with open(output, "a", encoding="utf-8") as handle:
            if isinstance(result, list):
                handle.writelines(f"{line}\\n" for line in result)
            else:  # a frame: its rows, space-separated, with no header
                result.to_csv(handle, sep=" ", header=False, index=False)
    rows += len(result)
print(json.dumps({"rows": rows}))
"""


def substitute(command: str, values: dict[str, dict[str, str]]) -> str:
    """Fill ``${{inputs.X}}``, ``${{outputs.X}}``, ``${{search_space.X}}`` (shell-quoted).

    An optional part ``$[[ ... ]]`` stays (without its brackets) when every input it names
    has a value, and is dropped otherwise, as Azure ML does.

    Raises:
        TwinError: a placeholder outside an optional part names nothing.
    """

    def optional(match: re.Match[str]) -> str:
        inner = match.group(1)
        names = PLACEHOLDER.findall(inner)
        return inner if all(n in values.get(k, {}) for k, n in names) else ""

    def fill(match: re.Match[str]) -> str:
        kind, name = match.groups()
        if name not in values.get(kind, {}):
            raise TwinError(
                f"the command names ${{{{{kind}.{name}}}}}, which the job does not define"
            )
        return shlex.quote(str(values[kind][name]))

    return PLACEHOLDER.sub(fill, OPTIONAL.sub(optional, command))


def sample_value(distribution: dict[str, Any], rng: random.Random) -> Any:
    """Draw one value from an Azure ML search-space distribution, as Azure ML defines it."""
    kind = distribution["type"]
    if kind == "choice":
        return rng.choice(distribution["values"])
    if kind == "randint":
        return rng.randrange(int(distribution["upper"]))
    low, high = distribution["min_value"], distribution["max_value"]
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "loguniform":
        return math.exp(rng.uniform(low, high))
    if kind == "quniform":
        q = distribution["q"]
        return round(rng.uniform(low, high) / q) * q
    raise TwinError(f"run-local cannot sample a {kind!r} distribution yet")


def _objective(outputs: dict[str, Path], metric: str) -> float | None:
    split, _, name = metric.partition("_")
    for folder in outputs.values():
        for path in sorted(folder.rglob("performance_metrics.json")):
            value = io.read_json(path).get(split, {}).get(name)
            if value is not None:
                return float(value)
    return None


def _binding(value: Any) -> tuple[str, str] | None:
    match = BINDING.match(value) if isinstance(value, str) else None
    return match.groups() if match else None  # type: ignore[return-value]


def _upstream(job: dict[str, Any]) -> set[str]:
    found = set()
    for value in (job.get("inputs") or {}).values():
        bound = _binding(value["path"] if isinstance(value, dict) and "path" in value else value)
        if bound and bound[0] == "jobs":
            found.add(bound[1].split(".")[0])
    return found


def check_spec_names(spec: dict[str, Any]) -> None:
    """Refuse a spec whose step, output or output file names would not be plain folder names.

    They name the folders and files the twin writes under ``--out``.

    Raises:
        ValueError: naming the first bad name (:func:`amlkit.names.check_name`).
    """
    for output in spec.get("outputs") or {}:
        check_name("output", output)
    for step, job in (spec.get("jobs") or {}).items():
        check_name("step", step)
        for port in _flatten_node(job).get("outputs") or {}:
            check_name("output", port)
    if "output_file_name" in spec:
        check_name("output file", spec["output_file_name"])


def _flatten_node(job: dict[str, Any]) -> dict[str, Any]:
    """A pipeline node either holds its command or an inline ``component`` that does."""
    component = job.get("component")
    return {**component, **job} if isinstance(component, dict) else job


def _strs(folders: dict[str, Path]) -> dict[str, str]:
    return {name: str(path) for name, path in folders.items()}


def _data_index(folder: Path) -> dict[str, dict[str, tuple[Path, str]]]:
    """Return ``{asset: {version: (local path, sort key)}}`` from the plan's data specs."""
    plan_root = next((p for p in [folder, *folder.parents] if (p / "plan.json").is_file()), None)
    index: dict[str, dict[str, tuple[Path, str]]] = {}
    if plan_root is None:
        return index
    for spec_file in sorted((plan_root / "data").glob("*.yml")):
        data = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
        tags = data.get("tags") or {}
        key = str(tags.get("created") or tags.get("ingested_at") or "")
        path = (spec_file.parent / data["path"]).resolve()
        index.setdefault(data["name"], {})[str(data["version"])] = (path, key)
    return index


def _fresh(folder: Path) -> Path:
    """Return ``folder`` made anew and empty (a job's output starts empty)."""
    make_writable(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _fingerprint(path: Path) -> str:
    """Return a short version of a local file or folder: its path, sizes and times."""
    path = path.resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256(str(path).encode())
    for file in files:
        info = file.stat()
        digest.update(f"{file.relative_to(path.parent)}:{info.st_size}:{info.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


# What the twin's process environment must not pass on to a job: the platform decides these.
_PLATFORM_OWNED = ("AMLKIT_ROOT", "MLFLOW_REGISTRY_URI", "AZUREML_MODEL_DIR")


def _job_env(
    declared: dict[str, Any] | None, platform_env: dict[str, str] | None
) -> dict[str, str]:
    """Return a job process's environment: this one, the spec's variables, the platform's."""
    env = {k: v for k, v in os.environ.items() if k not in _PLATFORM_OWNED}
    env = {k: v for k, v in env.items() if not k.startswith(("MLFLOW_", "AZUREML_"))}
    env |= {k: str(v) for k, v in (declared or {}).items()}
    env |= platform_env or {}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Return ``{relative path: (size, mtime)}`` of everything under ``folder``."""
    found = {}
    for path in folder.rglob("*"):
        info = path.lstat()
        found[path.relative_to(folder).as_posix()] = (info.st_size, info.st_mtime_ns)
    return found


def _changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Return the paths added, removed or modified between two listings."""
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
