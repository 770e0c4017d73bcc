"""Limits applied before a request reaches the app: body size, JSON size, requests in flight."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.bodies import JSON, body_kind, content_type_of
from runtime.errors import ApiError, BadRequest, Overloaded, PayloadTooLarge

RETRY_AFTER_S = 1


class BodySizeLimit:
    """Answers 413 when a body is (or declares itself) larger than ``max_bytes``.

    The body is read here, up to the cap, and replayed to the app, so nothing downstream ever
    holds more than ``max_bytes`` of a request. With ``max_json_values``, a body that may hold
    more JSON values than that is a 400 before anything parses it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_json_values: int = 0):
        self.app = app
        self.max_bytes = max_bytes
        self.max_json_values = max_json_values

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; let the app see it
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        # Only bodies read as JSON are bounded here; an upload's JSON text parts are bounded where they are read.
        read_as_json = body_kind(content_type_of(scope)) == JSON
        if self.max_json_values and read_as_json and json_values_bound(body) > self.max_json_values:
            error = BadRequest(
                f"request body: more than {self.max_json_values} JSON values; no request to this API needs that many",
                code="json_too_large",
            )
            await send_error(send, error)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        await send_error(send, PayloadTooLarge(f"request body: larger than {self.max_bytes} bytes"))


class InFlightLimit:
    """Answers 503 with ``Retry-After`` at once when ``max_requests`` requests are already in flight.

    A burst larger than the server can work through then fails fast, and a client (or API Gateway)
    retries, instead of every request waiting in an unbounded queue and timing out. Refused
    requests are answered before their bodies are read. ``exempt`` paths (the health check) are
    neither counted nor refused.
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
            await send_error(send, error, [(b"retry-after", str(RETRY_AFTER_S).encode())])
            return
        self.in_flight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


def json_values_bound(body: bytes) -> int:
    """An upper bound on the number of values in a JSON document, found without parsing it.

    Every value after the first in an array or object follows a comma, and every array or object
    opens with a bracket; commas and brackets inside strings only make the bound looser.
    """
    return body.count(b",") + body.count(b"[") + body.count(b"{") + 1


async def send_error(send: Send, error: ApiError, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(error.body()).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": error.status_code, "headers": head})
    await send({"type": "http.response.body", "body": body})
