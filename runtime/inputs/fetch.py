"""Fetching images from URLs without becoming an SSRF hole.

http(s): the host is resolved once (in a worker, within the fetch deadline), every address is
checked against the IANA special-purpose registries (``special_addresses``: anything not globally
reachable is refused, IPv4-mapped and other embedded IPv4 forms included),
the connection goes to the checked address (no second resolution), each redirect is checked the
same way, and time and bytes are capped. s3://: boto3 with the caller's own role.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import closing, contextmanager
from urllib.parse import SplitResult, quote, urljoin, urlsplit

from runtime.errors import InvalidInput
from runtime.inputs.special_addresses import not_reachable_block
from runtime.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Sink = Callable[[bytes], object]
REDIRECT_CODES = {301, 302, 303, 307, 308}
PATH_SAFE = "/%:@!$&'()*+,;=-._~"
QUERY_SAFE = PATH_SAFE + "?"
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
USER_AGENT = "image-similarity-fetcher/1"
# Name lookups of every request; one stuck on a slow resolver holds a worker until the system
# resolver gives up, never a request past its deadline.
_RESOLVERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="dns")

MAX_HOST_NAME = 253
"""The longest name DNS can hold (RFC 1035), dots included."""


def _refused(message: str) -> InvalidInput:
    return InvalidInput(message, code="url_refused")


def _unreachable(message: str) -> InvalidInput:
    return InvalidInput(message, code="url_unreachable")


def embedded_ipv4(ip: IpAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IpAddress) -> bool:
    """Globally reachable by the IANA registries, and so is any IPv4 address it carries."""
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return False
    return not_reachable_block(ip) is None


def refusal_reason(ip: IpAddress) -> str:
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return f"it carries {inner}, {refusal_reason(inner)}"
    block = not_reachable_block(ip)
    return f"which is not globally reachable ({block.network}: {block.name})" if block else "which is public"


class UrlFetcher:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.allowed_networks = [ipaddress.ip_network(net, strict=False) for net in settings.fetch_allow_networks]
        self.ports = set(settings.fetch_ports)
        self._s3 = None
        self._s3_lock = threading.Lock()

    def fetch(self, url: str, field: str, deadline: float | None = None) -> bytes:
        """The URL's bytes. ``deadline`` (``time.monotonic()``) bounds the whole request's fetches."""
        chunks: list[bytes] = []
        self.fetch_to(url, field, chunks.append, deadline)
        return b"".join(chunks)

    def fetch_to(self, url: str, field: str, sink: Sink, deadline: float | None = None) -> None:
        """The URL's bytes, chunk by chunk (64 KiB at most), handed to ``sink`` as they arrive (a
        manifest written to a file is never whole in memory); the same rules and limits as ``fetch``."""
        scheme = _split(url, field).scheme.lower()
        if scheme == "s3":
            return self._fetch_s3(url, field, sink)
        if scheme in ("http", "https"):
            own = time.monotonic() + self.settings.fetch_timeout_s
            deadline = own if deadline is None else min(own, deadline)
            return self._fetch_http(url, field, deadline, self.settings.fetch_max_redirects, sink)
        raise _refused(f"{field}: only http://, https:// and s3:// URLs are accepted, not {scheme or 'a bare path'}")

    # --- http(s) -----------------------------------------------------------------------

    def in_allowed_network(self, ip: IpAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)

    def allowed(self, ip: IpAddress) -> bool:
        return self.in_allowed_network(ip) or is_public(ip)

    def resolve(self, host: str, port: int, field: str, deadline: float | None = None) -> IpAddress:
        """Resolve once and return an address to connect to; refuse if any address is not public.

        The system resolver cannot be interrupted, so it runs in a worker and the fetch stops
        waiting for it at the deadline (the worker finishes on its own, its answer unused).
        """
        if len(host) > MAX_HOST_NAME:  # no resolver can answer; IDNA-encoding it could outlast the deadline
            raise _unreachable(f"{field}: the host name has {len(host)} characters; DNS names have at most 253")
        lookup = _RESOLVERS.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            infos = lookup.result(timeout=wait)
        except FutureTimeout as exc:
            lookup.cancel()
            raise InvalidInput(
                f"{field}: resolving {host!r} took longer than the fetch deadline "
                f"({self.settings.fetch_timeout_s:g} s)",
                code="url_timeout",
            ) from exc
        except (socket.gaierror, UnicodeError) as exc:
            raise _unreachable(f"{field}: the host {host!r} cannot be resolved") from exc
        addresses = _unique(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
        for ip in addresses:
            if not self.allowed(ip):
                raise _refused(f"{field}: the host {host!r} resolves to {ip}, {refusal_reason(ip)}")
        if not addresses:
            raise _unreachable(f"{field}: the host {host!r} has no address")
        return addresses[0]

    def _fetch_http(self, url: str, field: str, deadline: float, redirects_left: int, sink: Sink) -> None:
        parts = _split(url, field)
        if parts.username is not None or parts.password is not None:
            raise _refused(f"{field}: URLs with credentials (user:password@) are not accepted")
        host = parts.hostname
        if not host:
            raise _refused(f"{field}: the URL has no host")
        if "%" in host:
            raise _refused(f"{field}: IPv6 zone identifiers are not accepted")
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError as exc:
            raise _refused(f"{field}: the URL's port is not valid") from exc
        ip = self.resolve(host, port, field, deadline)
        if self.ports and port not in self.ports and not self.in_allowed_network(ip):
            accepted = ", ".join(str(p) for p in sorted(self.ports))
            raise _refused(f"{field}: port {port} is not accepted (only {accepted})")
        connection = self._connection(parts, host, ip, port, deadline)
        with _shut_at(deadline, connection):
            try:
                response = self._request(connection, parts, field, deadline)
                if response.status in REDIRECT_CODES:
                    location = response.getheader("Location")
                    if not location:
                        raise _unreachable(f"{field}: HTTP {response.status} without a Location header")
                    if redirects_left <= 0:
                        raise _unreachable(f"{field}: more than {self.settings.fetch_max_redirects} redirects")
                    target = _join(url, location, field)
                    if _split(target, field).scheme.lower() not in ("http", "https"):
                        raise _refused(f"{field}: redirect to a non-http(s) URL is not followed")
                    connection.close()
                    return self._fetch_http(target, field, deadline, redirects_left - 1, sink)
                if response.status != 200:
                    raise _unreachable(f"{field}: the server answered HTTP {response.status}")
                return self._read_body(response, connection, field, deadline, sink)
            finally:
                connection.close()

    def _connection(self, parts, host: str, ip: IpAddress, port: int, deadline: float) -> http.client.HTTPConnection:
        timeout = max(0.01, deadline - time.monotonic())
        if parts.scheme.lower() == "https":
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        # Connect to the address that was checked, never to a second resolution of the name;
        # the Host header and TLS server name still carry the host name.
        connection._create_connection = lambda _addr, t, src=None: socket.create_connection(  # type: ignore[attr-defined]
            (str(ip), port), t, src
        )
        return connection

    def _request(
        self, connection: http.client.HTTPConnection, parts, field: str, deadline: float
    ) -> http.client.HTTPResponse:
        # http.client sends the request line as ASCII: percent-encode what is not (猫.png, ?q=猫),
        # leaving escapes that are already there as they are.
        path = quote(parts.path or "/", safe=PATH_SAFE)
        if parts.query:
            path += "?" + quote(parts.query, safe=QUERY_SAFE)
        try:
            connection.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
            response = connection.getresponse()
        except TimeoutError as exc:
            seconds = self.settings.fetch_timeout_s
            raise InvalidInput(f"{field}: the URL did not answer within {seconds:g} s", code="url_timeout") from exc
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= deadline:  # cut by _shut_at
                raise _timeout(field, self.settings.fetch_timeout_s) from exc
            raise _unreachable(f"{field}: the URL cannot be fetched ({exc.__class__.__name__})") from exc
        if time.monotonic() >= deadline:  # headers cut short by _shut_at read as complete
            raise _timeout(field, self.settings.fetch_timeout_s)
        return response

    def _read_body(
        self,
        response: http.client.HTTPResponse,
        connection: http.client.HTTPConnection,
        field: str,
        deadline: float,
        sink: Sink,
    ) -> None:
        limit = self.settings.max_image_bytes
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_big(field, limit)
        size = 0
        try:
            while True:
                if time.monotonic() > deadline:
                    raise _timeout(field, self.settings.fetch_timeout_s)
                if connection.sock is not None:
                    connection.sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = response.read1(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise _too_big(field, limit)
                sink(chunk)
        except TimeoutError as exc:
            raise _timeout(field, self.settings.fetch_timeout_s) from exc
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= deadline:  # cut by _shut_at
                raise _timeout(field, self.settings.fetch_timeout_s) from exc
            raise _unreachable(f"{field}: the download broke off ({exc.__class__.__name__})") from exc
        if time.monotonic() >= deadline:  # the body was cut by _shut_at
            raise _timeout(field, self.settings.fetch_timeout_s)

    # --- s3 ----------------------------------------------------------------------------

    def _fetch_s3(self, url: str, field: str, sink: Sink) -> None:
        parts = urlsplit(url)
        bucket, key = parts.netloc, parts.path.lstrip("/")
        if not bucket or not key:
            raise InvalidInput(f"{field}: an S3 URL is s3://bucket/key", code="invalid_url")
        allowed = self.settings.s3_allowed_buckets
        if allowed and bucket not in allowed:
            raise _refused(f"{field}: bucket {bucket!r} is not one this deployment may read")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            obj = self._s3_client().get_object(Bucket=bucket, Key=key)
            if obj.get("ContentLength", 0) > self.settings.max_image_bytes:
                raise _too_big(field, self.settings.max_image_bytes)
            size = 0
            with closing(obj["Body"]):
                for chunk in obj["Body"].iter_chunks(64 * 1024):
                    size += len(chunk)
                    if size > self.settings.max_image_bytes:
                        raise _too_big(field, self.settings.max_image_bytes)
                    sink(chunk)
        except ClientError as exc:
            raise _s3_error(exc, field, bucket, key) from exc
        except BotoCoreError as exc:
            raise _unreachable(f"{field}: S3 cannot be reached ({exc.__class__.__name__})") from exc

    def _s3_client(self):
        with self._s3_lock:
            if self._s3 is None:
                import boto3
                from botocore.config import Config

                timeout = self.settings.fetch_timeout_s
                config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2})
                self._s3 = boto3.client("s3", config=config)
            return self._s3


S3_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
S3_DENIED_CODES = frozenset({"AccessDenied", "403", "AllAccessDisabled"})
"""S3's error codes for a missing object or bucket, and for refused access (a HEAD answers with the bare status)."""


def _s3_error(exc, field: str, bucket: str, key: str) -> InvalidInput:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in S3_MISSING_CODES or status == 404:
        return InvalidInput(f"{field}: s3://{bucket}/{key} does not exist", code="s3_not_found")
    if code in S3_DENIED_CODES or status == 403:
        return InvalidInput(f"{field}: access to s3://{bucket}/{key} is denied", code="s3_access_denied")
    return _unreachable(f"{field}: S3 answered {code or status}")


def _split(url: str, field: str) -> SplitResult:
    try:
        return urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed or invalid [IPv6] host
        raise InvalidInput(f"{field}: the URL is not valid ({exc})", code="invalid_url") from exc


def _join(url: str, location: str, field: str) -> str:
    try:
        return urljoin(url, location)
    except ValueError as exc:
        raise _unreachable(f"{field}: the redirect's Location is not a valid URL ({exc})") from exc


def _too_big(field: str, limit: int) -> InvalidInput:
    return InvalidInput(f"{field}: the image is larger than {limit} bytes", code="image_too_large")


def _timeout(field: str, seconds: float) -> InvalidInput:
    return InvalidInput(f"{field}: the download took longer than {seconds:g} s", code="url_timeout")


@contextmanager
def _shut_at(deadline: float, connection: http.client.HTTPConnection) -> Iterator[None]:
    """Shut the connection's socket down when the deadline passes.

    Socket timeouts bound each read, not the whole exchange: http.client reads the status line,
    headers and chunk sizes line by line, so a server trickling a byte per second would hold a
    fetch for as long as it likes. Shutting the socket down ends any read in progress.
    """

    def shut() -> None:
        sock = connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), shut)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _unique(items: Iterable[IpAddress]) -> list[IpAddress]:
    seen: list[IpAddress] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
