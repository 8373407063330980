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
import json
import logging
import math
import os
import random
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from amlkit import io
from amlkit.azure import specs
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
    nested = spec.get("settings")
    settings: dict[str, Any] = nested if isinstance(nested, dict) else spec
    if "code_configuration" in spec and "mini_batch_size" in settings:  # `type: model` too
        return "batch_deployment"
    raise TwinError(
        "run-local runs pipeline, command and sweep jobs and batch deployments; this spec is "
        f"none of them (type {spec.get('type')!r})"
    )


class Twin:
    """Runs one spec file into an output folder.

    Args:
        spec_path: the YAML file.
        out_dir: where outputs and logs go.
        overrides: ``{"inputs.NAME": value}`` replacing input values or paths.
    """

    def __init__(self, spec_path: Path, out_dir: Path, overrides: dict[str, str] | None = None):
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

    # --- values -----------------------------------------------------------------------------

    def resolve_input(self, value: Any, name: str = "") -> str:
        """Return the local value of a job input: a literal, or the folder of a data input."""
        if isinstance(value, dict):
            if "path" not in value:
                raise TwinError(f"input {name!r} has no value or path here: {value}")
            value = value["path"]
        if isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            return str(value)
        if value.startswith("azureml:"):
            return str(self._asset(value, name))
        local = self.path.parent / value  # a local path is relative to the spec's folder
        return str(local.resolve()) if "/" in value and local.exists() else value

    def _asset(self, ref: str, name: str) -> Path:
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
        return found[version][0]

    # --- running ------------------------------------------------------------------------------

    def run_command(
        self,
        label: str,
        job: dict[str, Any],
        inputs: dict[str, str],
        outputs: dict[str, Path],
        search_space: dict[str, str] | None = None,
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
        env = {
            **os.environ,
            **{k: str(v) for k, v in (job.get("environment_variables") or {}).items()},
        }
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.pop("AMLKIT_ROOT", None)  # a step makes its own project root
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

    def run(self, trials: int = 2, seed: int = 0, data: Path | None = None) -> dict[str, Any]:
        """Run the spec; return a summary (also written to ``<out>/run.json``)."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.kind == "pipeline":
            summary = self._pipeline()
        elif self.kind == "command":
            inputs = {n: self._input(n, v) for n, v in (self.spec.get("inputs") or {}).items()}
            outputs = {n: self.out / "outputs" / n for n in self.spec.get("outputs") or {}}
            summary = {
                "steps": [self.run_command("job", self.spec, inputs, outputs)],
                "outputs": _strs(outputs),
            }
        elif self.kind == "sweep":
            summary = self._sweep(trials, seed)
        else:
            summary = self._batch(data)
        summary = {"spec": str(self.path), "kind": self.kind, **summary}
        io.write_json_atomic(self.out / "run.json", summary)
        return summary

    def _input(self, name: str, value: Any) -> str:
        override = self.overrides.get(f"inputs.{name}")
        if override is not None:
            path = Path(override).expanduser()
            return str(path.resolve()) if path.exists() else override
        return self.resolve_input(value, name)

    def _pipeline(self) -> dict[str, Any]:
        jobs = self.spec["jobs"]
        parent_inputs = {n: self._input(n, v) for n, v in (self.spec.get("inputs") or {}).items()}
        parent_outputs = {n: self.out / "outputs" / n for n in self.spec.get("outputs") or {}}
        order = graphlib.TopologicalSorter({name: _upstream(job) for name, job in jobs.items()})
        step_outputs: dict[str, dict[str, Path]] = {}
        records = []
        for name in order.static_order():
            job = _flatten_node(jobs[name])
            inputs = {}
            for port, value in (job.get("inputs") or {}).items():
                inputs[port] = self._bound(value, port, parent_inputs, parent_outputs, step_outputs)
            outputs = {}
            for port, value in (job.get("outputs") or {}).items():
                bound = _binding(value)
                outputs[port] = (
                    parent_outputs[bound[1]]
                    if bound and bound[0] == "outputs"
                    else self.out / name / port
                )
            step_outputs[name] = outputs
            records.append(self.run_command(name, job, inputs, outputs))
        return {
            "steps": records,
            "outputs": _strs(parent_outputs),
            "step_outputs": {k: _strs(v) for k, v in step_outputs.items()},
        }

    def _bound(
        self, value: Any, port: str, parent_inputs: dict, parent_outputs: dict, step_outputs: dict
    ) -> str:
        bound = _binding(value["path"] if isinstance(value, dict) and "path" in value else value)
        if bound is None:
            return self._input(port, value)
        where, ref = bound
        if where == "inputs":
            return parent_inputs[ref]
        if where == "outputs":
            return str(parent_outputs[ref])
        step, _, output = ref.partition(".outputs.")
        return str(step_outputs[step][output])

    def _sweep(self, trials: int, seed: int) -> dict[str, Any]:
        rng = random.Random(seed)
        inputs = {n: self._input(n, v) for n, v in (self.spec.get("inputs") or {}).items()}
        objective = self.spec["objective"]
        records = []
        for index in range(trials):
            sample = {
                name: sample_value(dist, rng) for name, dist in self.spec["search_space"].items()
            }
            label = f"trial_{index}"
            outputs = {n: self.out / label / n for n in self.spec.get("outputs") or {}}
            record = self.run_command(
                label, self.spec["trial"], inputs, outputs, {k: str(v) for k, v in sample.items()}
            )
            record |= {
                "search_space": sample,
                objective["primary_metric"]: _objective(outputs, objective["primary_metric"]),
            }
            records.append(record)
        scored = [r for r in records if r[objective["primary_metric"]] is not None]
        best = (
            (max if objective["goal"] == "maximize" else min)(
                scored, key=lambda r: r[objective["primary_metric"]]
            )
            if scored
            else None
        )
        return {"trials": records, "best": best["step"] if best else None, "objective": objective}

    def _batch(self, data: Path | None) -> dict[str, Any]:
        if data is None:
            raise TwinError("a batch deployment scores files: give them with --data FILE_OR_FOLDER")
        files = sorted(p for p in data.iterdir() if p.is_file()) if data.is_dir() else [data]
        model = self.overrides.get("model") or self.resolve_input(self.spec.get("model"), "model")
        code = (self.path.parent / self.spec["code_configuration"]["code"]).resolve()
        script = code / self.spec["code_configuration"]["scoring_script"]
        settings = self.spec.get("settings") or self.spec  # `type: model` nests them
        size = int(settings.get("mini_batch_size") or 10)
        batches = [[str(f) for f in files[i : i + size]] for i in range(0, len(files), size)]
        output = self.out / settings.get("output_file_name", "predictions.csv")
        env = {
            **os.environ,
            **{k: str(v) for k, v in (settings.get("environment_variables") or {}).items()},
        }
        env["AZUREML_MODEL_DIR"] = str(Path(model).resolve())
        done = subprocess.run(
            [sys.executable, "-c", BATCH_DRIVER, str(script), json.dumps(batches), str(output)],
            cwd=code,
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise TwinError(f"the batch entry script failed: {done.stderr.strip()[-2000:]}")
        return {
            "mini_batches": len(batches),
            "files": len(files),
            "output": str(output),
            **json.loads(done.stdout.strip().splitlines()[-1]),
        }


# init() once, run(mini_batch) per mini-batch, rows appended to one CSV (append_row).
BATCH_DRIVER = """
import importlib.util, json, sys
script, batches, output = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
spec = importlib.util.spec_from_file_location("batch_driver", script)
driver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(driver)
driver.init()
rows = 0
for mini_batch in batches:
    result = driver.run(mini_batch)
    result.to_csv(output, mode="a" if rows else "w", header=not rows, index=False)
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
    nested = spec.get("settings")
    batch_settings: dict[str, Any] = nested if isinstance(nested, dict) else spec
    if "output_file_name" in batch_settings:
        check_name("output file", batch_settings["output_file_name"])


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
