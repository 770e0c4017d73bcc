"""One log line and the request metrics for every request: route, method, status, latency, error code.

The outermost middleware, so it sees every answer, the 413s and 503s of the limits included. It
reads an error answer's ``code`` from its (small) JSON body; it never logs a body, a header or a
query string.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.observability import record_request

log = logging.getLogger("runtime.requests")

UNMATCHED_ROUTE = "unmatched"
"""The route of a request that matched none (so a scan of random paths makes one metric, not many)."""
MAX_ERROR_BODY = 64 * 1024


class RequestLog:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        error_body = bytearray()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400 and len(error_body) < MAX_ERROR_BODY:
                error_body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except BaseException:
            status, error_body[:] = 500, b'{"code": "internal_error"}'
            raise
        finally:
            self._report(scope, status, error_code(status, bytes(error_body)), started)

    @staticmethod
    def _report(scope: Scope, status: int, code: str | None, started: float) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        route = route_of(scope)
        outcome = code or ("ok" if status < 400 else f"http_{status}")
        record_request(route, outcome, status, latency_ms)
        fields = {
            "request_id": request_id_of(scope),
            "route": route,
            "method": scope.get("method", ""),
            "status": status,
            "latency_ms": round(latency_ms, 3),
            "code": code,
        }
        level = logging.ERROR if status >= 500 else logging.INFO
        line = f"{fields['method']} {route} {status} in {latency_ms:.1f} ms" + (f" ({code})" if code else "")
        log.log(level, line, extra=fields)


def route_of(scope: Scope) -> str:
    """The route's template (``/libraries/{name}/images``), never the path with its values."""
    route = scope.get("route")
    return getattr(route, "path", None) or UNMATCHED_ROUTE


def request_id_of(scope: Scope) -> str:
    """API Gateway's request id on Lambda (the id in its access log), a fresh one elsewhere."""
    event = scope.get("aws.event") or {}
    return (event.get("requestContext") or {}).get("requestId") or uuid.uuid4().hex


def error_code(status: int, body: bytes) -> str | None:
    """The ``code`` of an error answer (``{"message", "code"}``), or None."""
    if status < 400 or not body:
        return None
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None
