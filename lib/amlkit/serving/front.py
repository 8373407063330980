"""A buffering front for the local inference server: a slow client costs it a socket, not a worker.

``azmlinfsrv`` runs gunicorn's sync worker: one request at a time, read straight off the
client's socket, with the scoring timeout (``SCORING_TIMEOUT_MS``) a SIGALRM that only works
on the worker's main thread. A client that sends half a request line held that worker until
gunicorn killed it (300 s). gunicorn's answer is a buffering proxy in front (nginx); this is
that proxy, small and in the standard library, because the service's lean environment has
nothing else. Threaded workers (gthread) are no fix: each trickling connection still holds a
thread once its first byte arrives, and off the main thread the server's scoring timeout is
silently skipped.

The front listens on loopback, reads each request whole (head within ``head_timeout_s``,
body within ``body_timeout_s``), and only then hands it to the worker over a Unix socket in a
private folder, so the worker never waits on a client and nothing can reach it around the
front. A body over ``max_body_bytes`` is read and dropped (up to 64 MiB, so the client gets
its answer) and the worker is told its size in ``X-Amlkit-Body-Bytes``: the scoring script
answers the 413 and logs it as before. The worker takes one request per connection; the
front keeps a client's connection open between requests (HTTP/1.1 keep-alive, closed after
``keep_alive_s`` idle), so a client that sends many requests does not pay a TCP handshake each.

It imports nothing of amlkit's other modules, so ``_launch`` can load it by path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

BODY_BYTES_HEADER = "X-Amlkit-Body-Bytes"
MAX_HEAD_BYTES = 64 * 2**10
DRAIN_LIMIT = 64 * 2**20
# framing headers the front sets itself; the rest of the head goes to the worker as sent
HOP_HEADERS = {
    b"content-length",
    b"transfer-encoding",
    b"expect",
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"upgrade",
    BODY_BYTES_HEADER.lower().encode(),
}
REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
}


class Tally:
    """Count events and log a running count, at most one line every ``every_s`` seconds.

    A flood of refused requests then cannot fill the server log either.
    """

    def __init__(self, log: logging.Logger, what: str, every_s: float = 10.0) -> None:
        self.log, self.what, self.every_s = log, what, every_s
        self.count = 0
        self._last = -float("inf")

    def add(self, detail: str) -> None:
        """Count one event; log the count and this event's ``detail`` if the last line is old."""
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.log.warning("%s: %d so far (latest: %s)", self.what, self.count, detail)


class Refused(Exception):
    """A request the front answers itself, with ``status`` and a message naming the fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class FrontSettings:
    """Where the front listens and forwards, and how long it waits for a client."""

    port: int
    backend_socket: str
    host: str = "127.0.0.1"
    max_body_bytes: int = 2**20
    head_timeout_s: float = 10.0
    body_timeout_s: float = 5.0
    keep_alive_s: float = 5.0  # a kept-alive connection idle this long is closed


class Front:
    """The asyncio server: read a request whole, forward it, relay the whole answer."""

    def __init__(self, settings: FrontSettings) -> None:
        self.settings = settings
        self.refused = Tally(logger, "requests refused by the front")

    async def serve(self) -> asyncio.Server:
        """Start listening; return the asyncio server."""
        s = self.settings
        return await asyncio.start_server(
            self.handle, s.host, s.port, limit=MAX_HEAD_BYTES, backlog=1024, reuse_address=True
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one connection: requests one after another while the client keeps it open."""
        try:
            first = True
            while True:
                try:
                    request, keep = await self._read_request(reader, writer, first)
                except Refused as exc:
                    self.refused.add(f"{exc.status} {exc.message}")
                    await _reply(writer, exc.status, {"error": exc.message})
                    return
                if request is None:  # the client closed, or stayed idle, between requests
                    return
                answer, keep = _keep_alive(await self._forward(request), keep)
                writer.write(answer)
                async with asyncio.timeout(60):
                    await writer.drain()
                if not keep:
                    return
                first = False
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or does not read: nothing left to answer
        finally:
            writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bool = True
    ) -> tuple[bytes | None, bool]:
        """Return the request for the worker (None: nothing came) and whether to keep alive.

        The connection stays open after the answer for HTTP/1.1 without ``Connection: close``.
        """
        s = self.settings
        try:
            async with asyncio.timeout(s.head_timeout_s if first else s.keep_alive_s):
                head = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError:
            if not first:  # a kept-alive client that sends nothing more is closed, no 408
                return None, False
            raise Refused(
                408,
                f"the request head did not arrive within {s.head_timeout_s:g} s; send the "
                "request line and headers at once.",
            ) from None
        except asyncio.LimitOverrunError:
            raise Refused(
                431, f"the request head is over {MAX_HEAD_BYTES} bytes; send fewer headers."
            ) from None
        except asyncio.IncompleteReadError:
            return None, False
        line, headers = _parse_head(head)
        kept = [raw for name, raw in headers if name not in HOP_HEADERS]
        values = {name: v for name, v in ((n, raw.split(b":", 1)[1].strip()) for n, raw in headers)}
        if values.get(b"expect", b"").lower() == b"100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        deadline = time.monotonic() + s.body_timeout_s
        body, size = await self._read_body(reader, headers, deadline)
        if size > s.max_body_bytes:
            kept.append(f"{BODY_BYTES_HEADER}: {size}".encode())
            body = b""
        kept += [f"Content-Length: {len(body)}".encode(), b"Connection: close"]
        keep = line.endswith(b"HTTP/1.1") and values.get(b"connection", b"").lower() != b"close"
        return b"\r\n".join([line, *kept]) + b"\r\n\r\n" + body, keep

    async def _read_body(
        self, reader: asyncio.StreamReader, headers: list[tuple[bytes, bytes]], deadline: float
    ) -> tuple[bytes, int]:
        """Return the body (empty when over the limit) and its size; 408 when it stalls."""
        lengths = {
            raw.split(b":", 1)[1].strip() for name, raw in headers if name == b"content-length"
        }
        codings = [
            raw.split(b":", 1)[1].strip().lower() for n, raw in headers if n == b"transfer-encoding"
        ]
        if codings and lengths:
            raise Refused(400, "send either Content-Length or Transfer-Encoding, not both.")
        if codings:
            if codings != [b"chunked"]:
                named = b", ".join(codings).decode("latin-1")
                raise Refused(501, f"Transfer-Encoding {named!r} is not supported; use chunked.")
            return await self._chunked(reader, deadline)
        if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
            named = b", ".join(sorted(lengths)).decode("latin-1")
            raise Refused(400, f"Content-Length {named!r} is not one whole number of bytes.")
        declared = int(next(iter(lengths), b"0"))
        got = 0
        parts = []
        while got < declared and got < DRAIN_LIMIT:
            want = min(declared - got, 2**20)
            chunk = await self._timed(reader.read(want), deadline, got, declared)
            if not chunk:
                raise Refused(
                    400,
                    f"the body ended after {got} of the {declared} bytes its Content-Length "
                    "declared; send the whole body or fix Content-Length.",
                )
            got += len(chunk)
            if declared <= self.settings.max_body_bytes:
                parts.append(chunk)
        return b"".join(parts), declared

    async def _chunked(self, reader: asyncio.StreamReader, deadline: float) -> tuple[bytes, int]:
        parts, got = [], 0
        while True:
            size_line = await self._timed(reader.readuntil(b"\r\n"), deadline, got, None)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Refused(400, "a chunk of the chunked body has no valid size line.") from None
            if size == 0:
                while (
                    await self._timed(reader.readuntil(b"\r\n"), deadline, got, None)
                ) != b"\r\n":
                    pass  # trailers, dropped
                break
            chunk = await self._timed(reader.readexactly(size + 2), deadline, got, None)
            got += size
            if got <= self.settings.max_body_bytes:
                parts.append(chunk[:-2])
            if got >= DRAIN_LIMIT:
                break
        return (b"".join(parts) if got <= self.settings.max_body_bytes else b""), got

    async def _timed(self, read, deadline: float, got: int, declared: int | None):  # type: ignore[no-untyped-def]
        try:
            async with asyncio.timeout_at(deadline):  # the loop's clock is time.monotonic
                return await read
        except TimeoutError:
            of = f" of the {declared} bytes its Content-Length declared" if declared else ""
            raise Refused(
                408,
                f"the request body stopped after {got} bytes{of} for "
                f"{self.settings.body_timeout_s:g} s; send the whole body at once, with a "
                "Content-Length that matches it.",
            ) from None
        except asyncio.IncompleteReadError:
            raise Refused(400, f"the body ended after {got} bytes, before its end.") from None

    async def _forward(self, request: bytes) -> bytes:
        """Send a whole request to the worker; return its whole answer."""
        try:
            reader, writer = await asyncio.open_unix_connection(self.settings.backend_socket)
        except OSError:
            return _answer(502, {"error": "the scoring server is not running (yet); retry."})
        try:
            writer.write(request)
            await writer.drain()
            return await reader.read()  # the sync worker closes after each answer
        finally:
            writer.close()


def _parse_head(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Return the request line and ``(lower-case name, raw line)`` for each header."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise Refused(400, "the request line is not 'METHOD /path HTTP/1.1'.")
    headers = []
    for raw in lines[1:]:
        name, colon, _ = raw.partition(b":")
        if not colon or not name or name != name.strip():
            raise Refused(400, f"header line {raw[:80]!r} is not 'Name: value'.")
        headers.append((name.lower(), raw))
    return lines[0], headers


def _answer(status: int, body: dict[str, str]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + data


async def _reply(writer: asyncio.StreamWriter, status: int, body: dict[str, str]) -> None:
    writer.write(_answer(status, body))
    async with asyncio.timeout(10):
        await writer.drain()


def _keep_alive(answer: bytes, keep: bool) -> tuple[bytes, bool]:
    """Return the worker's answer with the connection header the client should see.

    The sync worker closes after each answer and says so; the front keeps the client's
    connection when the client asked and the answer's end is known from its Content-Length.
    """
    head, sep, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    names = [raw.split(b":", 1)[0].strip().lower() for raw in lines[1:]]
    keep = keep and bool(sep) and b"content-length" in names
    kept = [raw for raw, name in zip(lines[1:], names, strict=True) if name != b"connection"]
    connection = b"Connection: keep-alive" if keep else b"Connection: close"
    return b"\r\n".join([lines[0], *kept, connection]) + sep + body, keep
