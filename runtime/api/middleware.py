"""Limits applied before a request reaches the app: body size and time, JSON size, requests in flight.

The byte-level JSON checks themselves are in ``runtime.api.json_limits``.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.bodies import JSON, body_kind, content_type_of
from runtime.api.json_limits import json_refusal
from runtime.contract import JSON_MEDIA_TYPE
from runtime.errors import ApiError, BadRequest, Overloaded, PayloadTooLarge


class BodySizeLimit:
    """Answers 413 when a body is (or declares itself) larger than ``max_bytes``, 408 when it has
    not arrived whole within ``timeout_s``.

    The body is read here, up to the cap, and replayed to the app, so nothing downstream ever
    holds more than ``max_bytes`` of a request. With ``max_json_values``, a body that may hold
    more JSON values than that is a 400 before anything parses it. This middleware sits outside
    the in-flight limit: a client trickling its body holds no slot.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_values: int = 0, timeout_s: float | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_values = max_json_values
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await self._read(receive)
        except TimeoutError:
            error = ApiError(
                f"request body: not received within {self.timeout_s:g} s (setting body_timeout_s)",
                code="request_timeout",
                status_code=408,
            )
            await send_error(send, error, [(b"connection", b"close")])
            return
        if body is None:
            await self._refuse(send)
            return
        # Only bodies read as JSON are checked here; an upload's JSON text parts are bounded where they are read.
        refusal = json_refusal(body, self.max_json_values) if body_kind(content_type_of(scope)) == JSON else None
        if refusal is not None:
            await send_error(send, refusal)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None when it is larger than ``max_bytes``."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; let the app see it
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refuse(self, send: Send) -> None:
        # The rest of the body is never read: closing the connection keeps a client from
        # trickling it forever on a connection that no deadline watches any more.
        error = PayloadTooLarge(f"request body: larger than {self.max_bytes} bytes")
        await send_error(send, error, [(b"connection", b"close")])


class InFlightLimit:
    """Answers 503 with ``Retry-After`` at once when ``max_requests`` requests are already in flight.

    A burst larger than the server can work through then fails fast, and a client (or API Gateway)
    retries, instead of every request waiting in an unbounded queue and timing out. It sits inside
    ``BodySizeLimit``, so a request counts from the moment its whole body has arrived: clients
    trickling bodies cannot hold the slots. ``exempt`` paths (the health check) are neither
    counted nor refused.
    """

    def __init__(self, app: ASGIApp, max_requests: int, exempt: tuple[str, ...] = ("/ping",)):
        self.app = app
        self.max_requests = max_requests
        self.exempt = exempt
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_requests <= 0 or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_requests:
            error = Overloaded(f"the server is busy ({self.max_requests} requests in flight); retry shortly")
            await send_error(send, error)
            return
        self.in_flight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class EncodedSlashRefusal:
    """Answers 400 ``invalid_path`` for a path whose segment holds an encoded slash (``%2F``).

    The server decodes the path before routing, so ``/libraries/a%2Fb`` would be routed as
    ``/libraries/a/b``; no library name or image id can hold a slash, so the request is refused.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"%2f" in (scope.get("raw_path") or b"").lower():
            error = BadRequest(
                "path: an encoded slash (%2F) in a path segment is not accepted; names and ids cannot hold '/'",
                code="invalid_path",
            )
            await send_error(send, error)
            return
        await self.app(scope, receive, send)


async def send_error(send: Send, error: ApiError, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(error.body()).encode()
    own = [(name.lower().encode(), value.encode()) for name, value in (error.headers() or {}).items()]
    head = [
        (b"content-type", JSON_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *own,
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": error.status_code, "headers": head})
    await send({"type": "http.response.body", "body": body})
