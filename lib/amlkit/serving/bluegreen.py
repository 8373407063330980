"""Local blue/green: a loopback router with a traffic split in front of two deployments.

:class:`Router` stands in for an Azure managed online endpoint: one address on 127.0.0.1,
requests forwarded by percent weights or to the deployment pinned by the
``azureml-model-deployment`` header, which every answer carries. A traffic switch swaps one
immutable routing table, so no request sees a mix. Each request opens its own upstream
connection: azmlinfsrv's gunicorn sync workers close every connection anyway.
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from amlkit.serving.server import LOOPBACK, LocalEndpoint, start_server

logger = logging.getLogger(__name__)

DEPLOYMENT_HEADER = "azureml-model-deployment"
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host"}


class Router:
    """A loopback reverse proxy with weighted deployments (use as a context manager).

    ``headers`` are what :meth:`headers` gives clients (e.g. the endpoint key).
    """

    def __init__(
        self, port: int = 0, *, timeout_s: float = 30.0, headers: Mapping[str, str] | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self._client_headers = {"Content-Type": "application/json", **(headers or {})}
        self._lock = threading.Condition()
        self._ports: dict[str, int] = {}
        self._in_flight: Counter[str] = Counter()
        self._table: tuple[str, ...] = ()  # 100 slots, one deployment name each
        self._counter = itertools.count()
        self.served: dict[str, int] = {}
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("router: " + format, *args)

            def do_GET(self) -> None:
                router._forward(self)

            do_POST = do_GET

        self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        logger.info("router listening at %s", self.url)

    @property
    def port(self) -> int:
        """The port the router listens on."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The stable scoring URL."""
        return f"http://{LOOPBACK}:{self.port}/score"

    def headers(self) -> dict[str, str]:
        """Headers for a scoring call through the router."""
        return dict(self._client_headers)

    def add_deployment(self, name: str, port: int) -> None:
        """Register a deployment (a server on loopback ``port``) with no traffic yet."""
        with self._lock:
            if name in self._ports:
                raise ValueError(f"deployment {name!r} exists; remove it first or pick a name")
            self._ports[name] = port
            self.served.setdefault(name, 0)

    def move_deployment(self, name: str, port: int) -> None:
        """Point deployment ``name`` at a new server on ``port`` (an update in place)."""
        with self._lock:
            if name not in self._ports:
                raise ValueError(f"no deployment {name!r}; add it first")
            self._ports[name] = port

    def remove_deployment(self, name: str) -> None:
        """Forget a deployment that has no traffic (drain it first)."""
        with self._lock:
            if name in self._table:
                raise ValueError(f"deployment {name!r} still has traffic; set_traffic first")
            del self._ports[name]

    def traffic(self) -> dict[str, int]:
        """Return the current split in percent, ``{deployment: share}``."""
        shares = {name: self._table.count(name) for name in self._ports}
        return dict(sorted(shares.items(), key=lambda item: item[1] == 0))

    def set_traffic(self, weights: Mapping[str, int]) -> None:
        """Switch the split atomically; weights are percentages summing to 100 (else ValueError)."""
        weights = {k: int(v) for k, v in weights.items() if int(v) != 0}
        with self._lock:
            unknown = sorted(set(weights) - set(self._ports))
            if unknown:
                raise ValueError(f"unknown deployments {unknown}; known: {list(self._ports)}")
            if any(v < 0 for v in weights.values()) or sum(weights.values()) != 100:
                raise ValueError(f"traffic {weights} must be percentages >= 0 that sum to 100")
            # interleave the slots so that e.g. 90/10 sends every tenth request to the 10
            slots = sorted(
                (i * 100 / w, name) for name, w in sorted(weights.items()) for i in range(w)
            )
            self._table = tuple(name for _, name in slots)
            self._lock.notify_all()
        logger.info("traffic set to %s", weights)

    def in_flight(self, name: str) -> int:
        """Requests being served by deployment ``name`` now."""
        with self._lock:
            return self._in_flight[name]

    def drain(self, name: str, timeout_s: float = 30.0) -> bool:
        """Wait until ``name`` has no traffic and no request in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while name in self._table or self._in_flight[name]:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
        name = handler.headers.get(DEPLOYMENT_HEADER)
        with self._lock:
            table, port = self._table, self._ports.get(name or "")
            if name and port is None:
                error = f"no deployment {name!r}; known: {list(self._ports)}"
            elif not name and not table:
                error = "no deployment has traffic; call set_traffic"
            else:
                error, name = "", name or table[next(self._counter) % len(table)]
                port = self._ports[name]
                self._in_flight[name] += 1
        if error or name is None or port is None:
            _reply(handler, 503, {"error": error})
            return
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=self.timeout_s)
        try:
            conn.request(handler.command, handler.path, body=body, headers=headers)
            resp = conn.getresponse()
            status, up_headers, data = resp.status, resp.getheaders(), resp.read()
        except (OSError, http.client.HTTPException) as exc:
            logger.warning("deployment %s failed: %s", name, exc)
            _reply(handler, 502, {"error": f"deployment {name}: {exc}"})
            return
        finally:
            conn.close()
            with self._lock:
                self._in_flight[name] -= 1
                self.served[name] = self.served.get(name, 0) + 1
                self._lock.notify_all()
        extra = {k: v for k, v in up_headers if k.lower() not in HOP_HEADERS | {"content-length"}}
        _reply(handler, status, data, extra | {DEPLOYMENT_HEADER: name})

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reply(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes | dict[str, str],
    headers: Mapping[str, str] | None = None,
) -> None:
    """Answer ``data`` (bytes, or a dict sent as JSON) with ``headers``."""
    if isinstance(data, dict):
        data, headers = json.dumps(data).encode(), {"Content-Type": "application/json"}
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@dataclass
class SwitchResult:
    """What :func:`switch_traffic` did."""

    old: str
    new: str
    smoke_status: int
    smoke_predictions: int
    drained: bool
    traffic: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a plain dict."""
        return dataclasses.asdict(self)


def switch_traffic(
    router: Router,
    *,
    old: str,
    old_endpoint: Any,
    new: str,
    new_service_dir: str | Path,
    smoke_payload: Any,
    drain_timeout_s: float = 30.0,
) -> tuple[LocalEndpoint, SwitchResult]:
    """Start ``new_service_dir`` as ``new``, smoke-test it, move all traffic to it, stop ``old``.

    The smoke test needs status 200 and one prediction per row of ``smoke_payload``; when it
    fails, RuntimeError is raised and ``old`` keeps all traffic.
    """
    endpoint = start_server(new_service_dir, port=0)
    status, answer = endpoint.score(smoke_payload)
    rows = len((smoke_payload.get("input_data") or {}).get("data") or [])
    predictions = len(answer.get("predictions") or []) if isinstance(answer, dict) else 0
    if status != 200 or predictions != rows:
        endpoint.stop()
        raise RuntimeError(
            f"smoke test of {new} failed (status {status}, {predictions} of {rows} "
            f"predictions): {answer}; traffic stays on {old}"
        )
    router.add_deployment(new, endpoint.port)
    router.set_traffic({new: 100})
    drained = router.drain(old, drain_timeout_s)
    if not drained:
        logger.warning("%s still had requests in flight after %ss", old, drain_timeout_s)
    router.remove_deployment(old)
    old_endpoint.stop()
    result = SwitchResult(old, new, status, predictions, drained, router.traffic())
    logger.info("blue/green: %s", result.to_dict())
    return endpoint, result
