"""The twin's data collector: what Azure ML's collector sidecar does for an online deployment.

A deployment whose spec enables ``data_collector`` collections runs, on Azure ML, beside a
sidecar on loopback that takes what the scoring script's ``azureml.ai.monitoring.Collector``
posts (``POST /modeldata/log``, a CloudEvent in headers, the rows as the JSON body) and writes
it to the workspace's blob store as JSON lines, one record a post, under
``modelDataCollector/<endpoint>/<deployment>/<collection>/<yyyy>/<MM>/<dd>/<HH>/``. Each
record carries the rows in ``data`` and the request's ``correlationid``, which joins a
request's ``model_outputs`` to its ``model_inputs``: the files Azure ML model monitoring and
``amlkit monitor --production`` read.

:class:`CollectorSidecar` is that sidecar, on loopback, writing into a local folder laid out
the same way. The deployment's server gets ``AZUREML_MDC_ENABLED``, ``AZUREML_MDC_HOST`` and
``AZUREML_MDC_PORT``, as the platform sets them (:meth:`CollectorSidecar.environment`).
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOG_PATH = "/modeldata/log"
EVENT_PREFIX = "azureml.inference."
COLLECTIONS_ROOT = "modelDataCollector"


def collection_folder(root: Path, endpoint: str, deployment: str, collection: str) -> Path:
    """Return where a deployment's collection lands under a datastore folder ``root``."""
    return Path(root) / COLLECTIONS_ROOT / endpoint / deployment / collection


def record(headers: dict[str, str], body: bytes, source: str) -> dict[str, Any]:
    """Return the JSON-lines record the platform writes for one collector post."""
    data = json.loads(body or b"null")
    return {
        "specversion": "1.0",
        "id": headers.get("trace-id") or str(uuid.uuid4()),
        "source": source,
        "type": headers.get("ce-type", ""),
        "datacontenttype": headers.get("content-type", "application/json"),
        "time": headers.get("ce-time") or datetime.now(UTC).isoformat(),
        "data": data,
        "correlationid": headers.get("ce-x-request-id"),
        "xrequestid": headers.get("ce-x-request-id"),
        "modelversion": headers.get("ce-model-version", "default"),
        "collectdatatype": headers.get("ce-collect-data-type"),
        "agent": headers.get("ce-agent"),
    }


class CollectorSidecar:
    """A loopback data collector writing a deployment's collections under ``root``.

    Args:
        root: the datastore folder (``modelDataCollector/...`` goes under it).
        endpoint: the endpoint's name.
        deployment: the deployment's name.
    """

    def __init__(self, root: str | Path, endpoint: str, deployment: str) -> None:
        self.root = Path(root)
        self.endpoint, self.deployment = endpoint, deployment
        self.source = f"/onlineEndpoints/{endpoint}/deployments/{deployment}"
        self._lock = threading.Lock()
        self.records = 0
        sidecar = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path != LOG_PATH or not headers.get("ce-type", "").startswith(EVENT_PREFIX):
                    self.send_response(400)
                    self.end_headers()
                    return
                sidecar.write(record(headers, body, sidecar.source))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("collector sidecar: " + format, *args)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The loopback port the scoring script's collector posts to."""
        return int(self._server.server_address[1])

    def environment(self) -> dict[str, str]:
        """Return the variables that switch the scoring script's collector on, to here."""
        return {
            "AZUREML_MDC_ENABLED": "true",
            "AZUREML_MDC_HOST": "127.0.0.1",
            "AZUREML_MDC_PORT": str(self.port),
        }

    def folder(self, collection: str) -> Path:
        """Return the folder a collection's files go to."""
        return collection_folder(self.root, self.endpoint, self.deployment, collection)

    def write(self, entry: dict[str, Any]) -> None:
        """Append one record to its collection's file of the current hour."""
        collection = entry["type"].removeprefix(EVENT_PREFIX)
        now = datetime.now(UTC)
        hour = self.folder(collection) / now.strftime("%Y/%m/%d/%H")
        with self._lock:
            hour.mkdir(parents=True, exist_ok=True)
            with open(hour / "data.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self.records += 1

    def close(self) -> None:
        """Stop taking posts."""
        self._server.shutdown()
        self._server.server_close()
