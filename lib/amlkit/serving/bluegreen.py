"""Local blue/green: a loopback router with a traffic split in front of two deployments.

An Azure managed online endpoint has one stable address and several deployments behind it
(``blue``, ``green``) with a traffic split in percent. :class:`Router` is the local
stand-in: a threaded HTTP/1.1 server on 127.0.0.1 that forwards each request to one
deployment chosen by the weights, over keep-alive upstream connections (a small pool per
deployment). A client may pin a deployment with the ``azureml-model-deployment`` header, as
on Azure; every answer carries that header naming the deployment that served it.

Switching is atomic: :meth:`Router.set_traffic` swaps one immutable routing table, so each
request sees the old split or the new one, never a mix. :meth:`Router.drain` then waits
until requests already in flight on a deployment have finished, and only then may it be
stopped. A request that fails on a reused keep-alive connection (the server closed it
between requests) is retried once on a fresh connection; nothing else is retried.

:func:`switch_traffic` runs the whole sequence: start the new deployment, smoke-test it,
move the traffic, drain and stop the old one.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEPLOYMENT_HEADER = "azureml-model-deployment"
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host"}
POOL_SIZE = 8


@dataclass
class _Upstream:
    name: str
    port: int
    pool: queue.LifoQueue
    in_flight: int = 0


class Router:
    """A loopback reverse proxy with weighted deployments (use as a context manager).

    Args:
        port: the port to listen on (0: a free one).
        timeout_s: upstream socket timeout per request.
        headers: headers for clients (``headers()``), e.g. the endpoint key.
    """

    def __init__(
        self, port: int = 0, *, timeout_s: float = 30.0, headers: Mapping[str, str] | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self._client_headers = {"Content-Type": "application/json", **(headers or {})}
        self._lock = threading.Condition()
        self._upstreams: dict[str, _Upstream] = {}
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

            def do_POST(self) -> None:
                router._forward(self)

        self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        logger.info("router listening at %s", self.url)

    @property
    def port(self) -> int:
        """The port the router listens on."""
        return self._server.server_address[1]

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
            if name in self._upstreams:
                raise ValueError(f"deployment {name!r} exists; remove it first or pick a name")
            self._upstreams[name] = _Upstream(name, port, queue.LifoQueue(POOL_SIZE))
            self.served.setdefault(name, 0)

    def remove_deployment(self, name: str) -> None:
        """Forget a deployment that has no traffic (drain it first) and close its pool."""
        with self._lock:
            if name in self._table:
                raise ValueError(f"deployment {name!r} still has traffic; set_traffic first")
            upstream = self._upstreams.pop(name)
        _close_pool(upstream.pool)

    def traffic(self) -> dict[str, int]:
        """Return the current split in percent, ``{deployment: share}``."""
        table = self._table
        return {name: table.count(name) for name in self._upstreams if name in table} | {
            name: 0 for name in self._upstreams if name not in table
        }

    def set_traffic(self, weights: Mapping[str, int]) -> None:
        """Switch the split atomically; weights are percentages summing to 100.

        Raises:
            ValueError: an unknown deployment, a negative weight, or a sum other than 100.
        """
        weights = {k: int(v) for k, v in weights.items() if int(v) != 0}
        with self._lock:
            unknown = sorted(set(weights) - set(self._upstreams))
            if unknown:
                raise ValueError(f"unknown deployments {unknown}; known: {list(self._upstreams)}")
            if any(v < 0 for v in weights.values()) or sum(weights.values()) != 100:
                raise ValueError(f"traffic {weights} must be percentages >= 0 that sum to 100")
            # interleave the slots so that e.g. 90/10 sends every tenth request to the 10
            slots = sorted(
                (i * 100 / share, name)
                for name, share in sorted(weights.items())
                for i in range(share)
            )
            self._table = tuple(name for _, name in slots)
            self._lock.notify_all()
        logger.info("traffic set to %s", weights)

    def in_flight(self, name: str) -> int:
        """Requests being served by deployment ``name`` now."""
        with self._lock:
            return self._upstreams[name].in_flight

    def drain(self, name: str, timeout_s: float = 30.0) -> bool:
        """Wait until ``name`` has no traffic share and no request in flight.

        Returns:
            True when drained, False when ``timeout_s`` ran out first.
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while name in self._table or self._upstreams[name].in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def _pick(self, pinned: str | None) -> _Upstream:
        with self._lock:
            if pinned:
                if pinned not in self._upstreams:
                    raise LookupError(f"no deployment {pinned!r}; known: {list(self._upstreams)}")
                upstream = self._upstreams[pinned]
            else:
                table = self._table
                if not table:
                    raise LookupError("no deployment has traffic; call set_traffic")
                upstream = self._upstreams[table[next(self._counter) % len(table)]]
            upstream.in_flight += 1
            return upstream

    def _release(self, upstream: _Upstream) -> None:
        with self._lock:
            upstream.in_flight -= 1
            self.served[upstream.name] = self.served.get(upstream.name, 0) + 1
            self._lock.notify_all()

    def _send(self, upstream: _Upstream, method: str, path: str, body: bytes, headers: dict):
        """Send one request upstream; retry once on a fresh connection if a reused one died."""
        for attempt in (0, 1):
            conn, reused = None, False
            if attempt == 0:
                with contextlib.suppress(queue.Empty):
                    conn, reused = upstream.pool.get_nowait(), True
            if conn is None:
                conn = http.client.HTTPConnection(LOOPBACK, upstream.port, timeout=self.timeout_s)
            try:
                conn.request(method, path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                if reused and attempt == 0:
                    continue
                raise
            if resp.will_close:
                conn.close()
            else:
                try:
                    upstream.pool.put_nowait(conn)
                except queue.Full:
                    conn.close()
            return resp.status, resp.getheaders(), data
        raise RuntimeError("unreachable")  # pragma: no cover

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            upstream = self._pick(handler.headers.get(DEPLOYMENT_HEADER))
        except LookupError as exc:
            _reply_error(handler, 503, str(exc))
            return
        try:
            status, up_headers, data = self._send(
                upstream, handler.command, handler.path, body, headers
            )
        except (OSError, http.client.HTTPException) as exc:
            logger.warning("deployment %s failed: %s", upstream.name, exc)
            _reply_error(handler, 502, f"deployment {upstream.name}: {exc}")
            return
        finally:
            self._release(upstream)
        extra = {k: v for k, v in up_headers if k.lower() not in HOP_HEADERS | {"content-length"}}
        _reply(handler, status, data, extra | {DEPLOYMENT_HEADER: upstream.name})

    def close(self) -> None:
        """Stop listening and close every upstream connection."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        with self._lock:
            upstreams = list(self._upstreams.values())
        for upstream in upstreams:
            _close_pool(upstream.pool)

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_pool(pool: queue.LifoQueue) -> None:
    while True:
        try:
            pool.get_nowait().close()
        except queue.Empty:
            return


def _reply(
    handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: Mapping[str, str]
) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _reply_error(handler: BaseHTTPRequestHandler, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    _reply(handler, status, body, {"Content-Type": "application/json"})


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
        return dict(self.__dict__)


def other_color(name: str) -> str:
    """Return ``green`` for ``blue`` and ``blue`` for anything else (Azure's convention)."""
    return "green" if name == "blue" else "blue"


def switch_traffic(
    router: Router,
    *,
    old: str,
    old_endpoint: Any,
    new: str,
    new_service_dir: str | Path,
    smoke_payload: Any,
    start: Callable[..., Any] | None = None,
    drain_timeout_s: float = 30.0,
) -> tuple[Any, SwitchResult]:
    """Deploy ``new_service_dir`` beside ``old`` and move all traffic to it (blue/green).

    Steps: start the new deployment on a free loopback port; smoke-test it directly (the
    answer must be 200 with one prediction per row); add it to the router; switch 100% of
    the traffic to it atomically; drain the old deployment; remove and stop it. If the smoke
    test fails, the new deployment is stopped and the old one keeps all traffic.

    Args:
        router: the router in front of the endpoint.
        old: the deployment name that has the traffic now.
        old_endpoint: its handle (anything with ``stop()``).
        new: the new deployment's name.
        new_service_dir: the packaged service folder to deploy.
        smoke_payload: a scoring request body for the smoke test.
        start: starts a server for a folder (default :func:`amlkit.serving.server.start_server`).
        drain_timeout_s: how long to wait for in-flight requests on the old deployment.

    Returns:
        (the new deployment's handle, the :class:`SwitchResult`)

    Raises:
        RuntimeError: the smoke test failed (nothing switched).
    """
    if start is None:
        from amlkit.serving.server import start_server

        start = start_server
    endpoint = start(new_service_dir, port=0)
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
