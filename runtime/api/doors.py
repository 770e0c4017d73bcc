"""The local server's doors: which Host it answers, which browser pages may write, and its API key.

A server on 127.0.0.1 is reachable from every web page its user opens: a page may send "simple"
cross-site POSTs without a preflight, and DNS rebinding (a name of the attacker's that resolves to
127.0.0.1) lets it read the answers too. So the local server (``python -m runtime serve``, which
passes the address it listens on to ``create_app``) answers only:

- requests whose ``Host`` is one of its names (setting ``allowed_hosts``, plus the address it is
  bound to; ``*``: any): a rebinding page's requests carry the attacker's name (400 ``invalid_host``);
- writes (any method but GET, HEAD, OPTIONS) that no browser marks as coming from another site:
  ``Sec-Fetch-Site`` other than ``same-origin`` or ``none``, or an ``Origin`` that is not this server
  (``http://`` + its Host) nor the ``cors_origin`` setting, is a 403 ``cross_site_request``. The
  API Explorer, served by this server, is same-origin; clients that are not browsers send neither header;
- with an API key (setting ``api_key``), requests carrying it in ``x-api-key`` (the header API
  Gateway's API-key mode reads, so a client works against both), ``GET /ping`` and the API
  Explorer's own files aside (401 ``invalid_api_key``).

The deployed API (Lambda behind API Gateway) and the SageMaker container have their own front door
and never install these checks.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.api.middleware import send_error
from runtime.api.routes.explorer import EXPLORER_PATH
from runtime.api.routes.library_page import PAGE_PATH as LIBRARY_PAGE_PATH
from runtime.errors import ApiError, BadRequest
from runtime.settings import Settings

ANY_HOST = "*"
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
BROWSER_SAME_SITE = ("same-origin", "none")
"""``Sec-Fetch-Site`` values of a request the user made on this server's own pages (or typed in)."""
API_KEY_HEADER = "x-api-key"
KEYLESS_PATHS = ("/ping", EXPLORER_PATH, LIBRARY_PAGE_PATH)
"""Answered without the key (GET): the health check, the explorer's and the library page's pages and assets
(a browser cannot add a header to a page it navigates to; the page's "Authorize" then sends the key)."""


@dataclass(frozen=True)
class Doors:
    hosts: frozenset[str] | None
    """Host names answered (lower case, no port); None: any."""
    api_key: str | None
    trusted_origin: str | None
    """An origin other than this server's whose pages may write (setting ``cors_origin``; ``*``: any)."""


def local_doors(settings: Settings, bound_host: str) -> Doors:
    names = {name.lower() for name in settings.allowed_hosts}
    if bound_host not in WILDCARD_ADDRESSES:
        names.add(bound_host.lower())
    hosts = None if ANY_HOST in names else frozenset(names)
    return Doors(hosts, settings.api_key, settings.cors_origin)


class LocalDoors:
    """Refuses what ``Doors`` does not let in, before the body is read."""

    def __init__(self, app: ASGIApp, doors: Doors):
        self.app = app
        self.doors = doors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = refusal_of(self.doors, scope["method"], scope["path"], Headers(scope=scope))
            if refusal is not None:
                await send_error(send, refusal)
                return
        await self.app(scope, receive, send)


def refusal_of(doors: Doors, method: str, path: str, headers: Headers) -> ApiError | None:
    host = headers.get("host", "")
    if doors.hosts is not None and host_name(host) not in doors.hosts:
        names = ", ".join(sorted(doors.hosts))
        return BadRequest(
            f"Host: {host[:200]!r} is not a name of this server (setting allowed_hosts: {names})", code="invalid_host"
        )
    if method not in SAFE_METHODS and is_cross_site(headers, host, doors.trusted_origin):
        return ApiError(
            "Origin: a page of another site may not write to this server (its own pages, and clients that are "
            "not browsers, may; setting cors_origin names one more origin)",
            code="cross_site_request",
            status_code=403,
        )
    if doors.api_key is not None and not is_keyless(method, path):
        given = headers.get(API_KEY_HEADER)
        if given is None or not hmac.compare_digest(given.encode(), doors.api_key.encode()):
            reason = "missing" if given is None else "not this server's key"
            return ApiError(
                f"{API_KEY_HEADER}: {reason}; this server requires its API key (setting api_key) in the "
                f"{API_KEY_HEADER} header",
                code="invalid_api_key",
                status_code=401,
            )
    return None


def host_name(host: str) -> str:
    """``Host``'s name, without the port, in lower case (``[::1]:8080`` is ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.rstrip(".")


def is_cross_site(headers: Headers, host: str, trusted_origin: str | None) -> bool:
    origin = headers.get("origin")
    if origin is not None and trusted_origin in (ANY_HOST, origin):
        return False
    if headers.get("sec-fetch-site", "none") not in BROWSER_SAME_SITE:
        return True
    return origin is not None and not is_same_origin(origin, host)


def is_same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc.lower() == host.strip().lower()


def is_keyless(method: str, path: str) -> bool:
    if method == "OPTIONS":
        return True  # a CORS preflight carries no headers of the request it asks about
    return method in ("GET", "HEAD") and any(path == p or path.startswith(p + "/") for p in KEYLESS_PATHS)
