"""Connection time limits of the HTTP server (uvicorn): slow or idle clients cannot hold it.

uvicorn closes a keep-alive connection that stays idle after an answer (``keep_alive_timeout_s``),
but waits forever for the first request's headers, and a client that sends a byte now and then
keeps any connection open. ``header_timeout_s`` is a deadline, not reset by arriving bytes: from
the moment a connection opens or finishes an answer, its next request's headers must be complete
within it, or the connection is closed. Bodies have their own deadline (``body_timeout_s``, in
``runtime.api.middleware.BodySizeLimit``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from runtime.settings import Settings


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request's headers are in: its body has its own deadline
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's connection options for these settings (``uvicorn.run(app, **server_options(...))``)."""
    protocol = type("DeadlineH11Protocol", (DeadlineH11Protocol,), {"header_timeout_s": settings.header_timeout_s})
    return {"http": protocol, "timeout_keep_alive": settings.keep_alive_timeout_s}
