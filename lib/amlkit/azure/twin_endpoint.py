"""The local twin of a managed online endpoint: a blue/green :mod:`~amlkit.azure.rollout` target.

A :class:`TwinEndpoint` is a folder holding ``endpoint.json`` (its deployments, the model each
runs, the traffic, the monitored deployment), so successive ``amlkit azure deploy --target
local`` calls, each a process of its own, see one endpoint. Each deployment is made as Azure
ML makes it, from the plan's spec:

- the spec's ``code_configuration.code`` folder is copied (Azure uploads a snapshot) to
  ``<folder>/<deployment>/code``;
- the model ``NAME:VERSION`` is downloaded from the MLflow registry (``models:/NAME/VERSION``,
  the registry MLflow is configured for) to ``<folder>/azureml-models/NAME/VERSION/service``,
  and ``AZUREML_MODEL_DIR`` is ``<folder>/azureml-models/NAME/VERSION``, as the platform
  mounts a model registered from ``runs:/<run>/service``;
- ``azmlinfsrv`` runs the spec's scoring script with the spec's environment variables, its
  request log in ``<folder>/<deployment>/logs``;
- when the spec enables ``data_collector`` collections, a collector sidecar
  (:mod:`amlkit.azure.twin_collector`) takes what the scoring script collects and writes it
  as the platform does, under ``<folder>/datastore/modelDataCollector/...``
  (:meth:`TwinEndpoint.collected`).

The servers run while the object is open (a ``with`` block) and stop when it closes; the next
process starts them again from ``endpoint.json`` when it needs them (a smoke test, or
:meth:`TwinEndpoint.serve`). Scoring goes through :class:`amlkit.serving.bluegreen.Router`,
one loopback address with the state's traffic split, as the endpoint's address does. The
router checks no key: the platform's key check is not reproduced (the servers run with
``AMLKIT_AUTH=endpoint``, as the spec sets it).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import yaml

from amlkit import io
from amlkit.azure.rollout import SmokeTestFailed
from amlkit.azure.twin_collector import CollectorSidecar, collection_folder
from amlkit.serving.packaged_model import ARTIFACT_PATH

logger = logging.getLogger(__name__)

STATE_FILE = "endpoint.json"
DATASTORE = "datastore"  # the workspace blob store's stand-in: the collectors write here


class TwinEndpoint:
    """A local online endpoint in ``folder`` (see the module); use it as a context manager.

    Args:
        folder: where the endpoint's state, code snapshots, models and logs live.
        endpoint: the endpoint's name (recorded at the first use of the folder).
        env: more environment variables for every deployment's server.
        smoke_payload: the smoke test's request; default the model's ``input_example.json``.
    """

    def __init__(
        self,
        folder: str | Path,
        endpoint: str,
        *,
        env: dict[str, str] | None = None,
        smoke_payload: Any = None,
    ) -> None:
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.smoke_payload = smoke_payload
        self._servers: dict[str, Any] = {}
        self._sidecars: dict[str, CollectorSidecar] = {}
        self._router: Any = None
        state = self._read()
        if state.get("endpoint") not in (None, endpoint):
            raise ValueError(
                f"{self.folder} holds endpoint {state['endpoint']!r}, not {endpoint!r}; "
                "choose another folder for this endpoint"
            )
        self.endpoint = endpoint
        if not state:
            self._write({"endpoint": endpoint, "deployments": {}, "traffic": {}, "monitored": None})

    # -- state -------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        path = self.folder / STATE_FILE
        return io.read_json(path) if path.is_file() else {}

    def _write(self, state: dict[str, Any]) -> None:
        io.write_json_atomic(self.folder / STATE_FILE, state)

    def state(self) -> dict[str, Any]:
        """Return ``endpoint.json``: ``endpoint``, ``deployments``, ``traffic``, ``monitored``."""
        return self._read()

    # -- the rollout target --------------------------------------------------------------
    def traffic(self) -> dict[str, int]:
        """Return the traffic split (``{}`` before the first deployment)."""
        return dict(self._read().get("traffic") or {})

    def deployed_model(self, name: str) -> str | None:
        """Return the ``NAME:VERSION`` deployment ``name`` runs, or None."""
        return (self._read()["deployments"].get(name) or {}).get("model")

    def create_or_update(self, name: str, spec: Path, endpoint_spec: Path, model: str) -> None:
        """Make deployment ``name`` from the plan's ``spec`` with ``model`` and start it.

        Like Azure ML, the deployment exists only once its server started (``init()`` ran);
        RuntimeError with the server log's tail otherwise, and the state is unchanged.
        """
        spec = Path(spec)
        body = yaml.safe_load(spec.read_text(encoding="utf-8"))
        code_cfg = body.get("code_configuration") or {}
        source = (spec.parent / code_cfg["code"]).resolve()
        if code_cfg.get("scoring_script", "scoring_script.py") != "scoring_script.py":
            raise ValueError(f"{spec}: the twin runs scoring_script.py, not {code_cfg}")
        model_dir = self._download(model)
        self._stop(name)
        code = self.folder / name / "code"
        if code.exists():
            shutil.rmtree(code)
        shutil.copytree(source, code, ignore=shutil.ignore_patterns("__pycache__"))
        record = {
            "model": model,
            "code": str(code),
            "model_dir": str(model_dir),
            "env": {str(k): str(v) for k, v in (body.get("environment_variables") or {}).items()},
            "logs": str(self.folder / name / "logs"),
            "collector": _collector_settings(body),
        }
        self._start(name, record)
        state = self._read()
        state["deployments"][name] = record
        state["traffic"].setdefault(name, 0)
        self._write(state)
        logger.info("twin %s: %s runs %s", self.endpoint, name, model)

    def smoke_test(self, name: str) -> dict[str, Any]:
        """Score the smoke request on ``name`` alone; SmokeTestFailed unless every row is scored."""
        server = self._ensure(name)
        payload = self.smoke_payload or self._input_example(name)
        rows = len((payload.get("input_data") or {}).get("data") or [])
        status, answer = server.score(payload)
        predictions = len(answer.get("predictions") or []) if isinstance(answer, dict) else 0
        if status != 200 or predictions != rows or not rows:
            raise SmokeTestFailed(
                f"smoke test of {self.endpoint}/{name} failed (status {status}, {predictions} of "
                f"{rows} predictions): {str(answer)[:300]}; traffic unchanged"
            )
        return {"status": status, "rows": rows}

    def set_traffic(self, split: dict[str, int]) -> None:
        """Set the split (percentages of existing deployments summing to 100)."""
        state = self._read()
        unknown = sorted(set(split) - set(state["deployments"]))
        if unknown:
            raise ValueError(f"no deployments {unknown} on {self.endpoint}")
        if sum(split.values()) != 100:
            raise ValueError(f"traffic {split} must sum to 100")
        state["traffic"] = {name: int(split.get(name, 0)) for name in state["deployments"]}
        if self._router is not None:
            for name, share in state["traffic"].items():
                if share:
                    self._ensure(name)
            self._router.set_traffic({k: v for k, v in state["traffic"].items() if v})
        self._write(state)

    def delete(self, name: str) -> None:
        """Stop and forget deployment ``name`` (it must have no traffic)."""
        state = self._read()
        if state["traffic"].get(name):
            raise ValueError(f"{name} still has {state['traffic'][name]}% of the traffic")
        if self._router is not None and name in self._router.traffic():
            self._router.drain(name)
            self._router.remove_deployment(name)
        self._stop(name)
        state["deployments"].pop(name, None)
        state["traffic"].pop(name, None)
        self._write(state)
        shutil.rmtree(self.folder / name / "code", ignore_errors=True)

    def monitor(self, name: str) -> None:
        """Record ``name`` as the deployment the monitor reads (its ``logs`` folder)."""
        state = self._read()
        state["monitored"] = name
        self._write(state)

    # -- serving ---------------------------------------------------------------------------
    def serve(self) -> str:
        """Start the router and every deployment with traffic; return the scoring URL."""
        from amlkit.serving.bluegreen import Router

        if self._router is None:
            self._router = Router()
            for name, server in self._servers.items():
                self._router.add_deployment(name, server.port)
        for name in self._read()["deployments"]:
            self._ensure(name)
        traffic = {name: share for name, share in self.traffic().items() if share}
        if traffic and traffic != {k: v for k, v in self._router.traffic().items() if v}:
            self._router.set_traffic(traffic)
        return str(self._router.url)

    def score(self, payload: Any, *, deployment: str | None = None) -> tuple[int, Any, str]:
        """POST ``payload`` through the endpoint; return status, JSON answer and deployment."""
        import http.client

        from amlkit.serving.bluegreen import DEPLOYMENT_HEADER

        self.serve()
        headers = {"Content-Type": "application/json"}
        if deployment:
            headers[DEPLOYMENT_HEADER] = deployment
        conn = http.client.HTTPConnection("127.0.0.1", self._router.port, timeout=30)
        try:
            conn.request("POST", "/score", body=json.dumps(payload), headers=headers)
            resp = conn.getresponse()
            answer = json.loads(resp.read() or b"null")
            return resp.status, answer, resp.getheader(DEPLOYMENT_HEADER) or ""
        finally:
            conn.close()

    def collected(self, name: str, collection: str = "model_inputs") -> Path:
        """Return the folder where deployment ``name``'s data collector writes ``collection``."""
        return collection_folder(self.folder / DATASTORE, self.endpoint, name, collection)

    def running(self) -> list[str]:
        """Return the deployments whose servers run in this process."""
        return sorted(name for name, server in self._servers.items() if server.alive())

    def close(self) -> None:
        """Stop the router and every server this object started."""
        if self._router is not None:
            self._router.close()
            self._router = None
        for name in list(self._servers):
            self._stop(name)
        for sidecar in self._sidecars.values():  # after the servers: nothing posts any more
            sidecar.close()
        self._sidecars.clear()

    def __enter__(self) -> TwinEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------------
    def _download(self, model: str) -> Path:
        """Return ``azureml-models/NAME/VERSION`` with the registered files in ``service/``."""
        import mlflow

        name, _, version = model.partition(":")
        root = self.folder / "azureml-models" / name / version
        if not (root / ARTIFACT_PATH).is_dir():
            partial = root.with_name(f".{version}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            mlflow.artifacts.download_artifacts(
                f"models:/{name}/{version}", dst_path=str(partial / ARTIFACT_PATH)
            )
            shutil.rmtree(root, ignore_errors=True)
            partial.rename(root)
        return root

    def _start(self, name: str, record: dict[str, Any]) -> Any:
        from amlkit.serving.server import start_server

        env = {
            **record["env"],
            **self.env,
            "AMLKIT_REQUEST_LOG_DIR": record["logs"],
            "AMLKIT_DEPLOYMENT": record["env"].get("AMLKIT_DEPLOYMENT", name),
        }
        if record.get("collector") is not None:  # the platform's sidecar, and its variables
            sidecar = self._sidecars.get(name)
            if sidecar is None:
                sidecar = CollectorSidecar(self.folder / DATASTORE, self.endpoint, name)
                self._sidecars[name] = sidecar
            env |= sidecar.environment() | record["collector"]
        server = start_server(record["code"], port=0, env=env, model_dir=record["model_dir"])
        self._servers[name] = server
        if self._router is not None:  # the endpoint's address now reaches the new server
            if name in self._router.traffic():
                self._router.move_deployment(name, server.port)
            else:
                self._router.add_deployment(name, server.port)
        return server

    def _ensure(self, name: str) -> Any:
        server = self._servers.get(name)
        if server is not None and server.alive():
            return server
        record = self._read()["deployments"].get(name)
        if record is None:
            raise ValueError(f"no deployment {name!r} on {self.endpoint}")
        return self._start(name, record)

    def _stop(self, name: str) -> None:
        server = self._servers.pop(name, None)
        if server is not None:
            server.stop()

    def _input_example(self, name: str) -> dict[str, Any]:
        record = self._read()["deployments"][name]
        example = next(Path(record["model_dir"]).rglob("input_example.json"), None)
        if example is None:
            raise SmokeTestFailed(
                f"{record['model']} holds no input_example.json to smoke-test {name} with"
            )
        return {"input_data": json.loads(example.read_text(encoding="utf-8"))}


def _collector_settings(spec: dict[str, Any]) -> dict[str, str] | None:
    """Return the collector variables a spec's ``data_collector`` asks for, or None (off)."""
    collector = spec.get("data_collector") or {}
    collections = collector.get("collections") or {}
    if not any(str((c or {}).get("enabled", "")).lower() == "true" for c in collections.values()):
        return None
    rate = float(collector.get("sampling_rate", 1.0))
    return {"AZUREML_MDC_SAMPLE_RATE": str(round(rate * 100))}
