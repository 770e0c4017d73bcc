"""Fetching images from URLs without becoming an SSRF hole.

http(s): the host is resolved once, every address is checked (no loopback, private, link-local,
multicast, reserved or unspecified address, IPv4-mapped and other embedded IPv4 forms included),
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
from collections.abc import Iterable
from urllib.parse import urljoin, urlsplit

from runtime.errors import InvalidInput
from runtime.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REDIRECT_CODES = {301, 302, 303, 307, 308}
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
USER_AGENT = "image-similarity-fetcher/1"


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
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback)


class UrlFetcher:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.allowed_networks = [ipaddress.ip_network(net, strict=False) for net in settings.fetch_allow_networks]
        self._s3 = None
        self._s3_lock = threading.Lock()

    def fetch(self, url: str, field: str) -> bytes:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "s3":
            return self._fetch_s3(url, field)
        if scheme in ("http", "https"):
            deadline = time.monotonic() + self.settings.fetch_timeout_s
            return self._fetch_http(url, field, deadline, self.settings.fetch_max_redirects)
        raise _refused(f"{field}: only http://, https:// and s3:// URLs are accepted, not {scheme or 'a bare path'}")

    # --- http(s) -----------------------------------------------------------------------

    def allowed(self, ip: IpAddress) -> bool:
        if any(ip.version == net.version and ip in net for net in self.allowed_networks):
            return True
        return is_public(ip)

    def resolve(self, host: str, port: int, field: str) -> IpAddress:
        """Resolve once and return an address to connect to; refuse if any address is not public."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise _unreachable(f"{field}: the host {host!r} cannot be resolved") from exc
        addresses = _unique(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
        for ip in addresses:
            if not self.allowed(ip):
                raise _refused(f"{field}: the host {host!r} resolves to {ip}, which is not a public address")
        if not addresses:
            raise _unreachable(f"{field}: the host {host!r} has no address")
        return addresses[0]

    def _fetch_http(self, url: str, field: str, deadline: float, redirects_left: int) -> bytes:
        parts = urlsplit(url)
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
        ip = self.resolve(host, port, field)
        response, connection = self._request(parts, host, ip, port, field, deadline)
        try:
            if response.status in REDIRECT_CODES:
                location = response.getheader("Location")
                if not location:
                    raise _unreachable(f"{field}: HTTP {response.status} without a Location header")
                if redirects_left <= 0:
                    raise _unreachable(f"{field}: more than {self.settings.fetch_max_redirects} redirects")
                target = urljoin(url, location)
                if urlsplit(target).scheme.lower() not in ("http", "https"):
                    raise _refused(f"{field}: redirect to a non-http(s) URL is not followed")
                connection.close()
                return self._fetch_http(target, field, deadline, redirects_left - 1)
            if response.status != 200:
                raise _unreachable(f"{field}: the server answered HTTP {response.status}")
            return self._read_body(response, connection, field, deadline)
        finally:
            connection.close()

    def _request(self, parts, host: str, ip: IpAddress, port: int, field: str, deadline: float):
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
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
            return connection.getresponse(), connection
        except (TimeoutError, socket.timeout) as exc:
            connection.close()
            raise InvalidInput(f"{field}: the URL did not answer within {self.settings.fetch_timeout_s:g} s", code="url_timeout") from exc
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            raise _unreachable(f"{field}: the URL cannot be fetched ({exc.__class__.__name__})") from exc

    def _read_body(
        self, response: http.client.HTTPResponse, connection: http.client.HTTPConnection, field: str, deadline: float
    ) -> bytes:
        limit = self.settings.max_image_bytes
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_big(field, limit)
        chunks: list[bytes] = []
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
                chunks.append(chunk)
        except (TimeoutError, socket.timeout) as exc:
            raise _timeout(field, self.settings.fetch_timeout_s) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _unreachable(f"{field}: the download broke off ({exc.__class__.__name__})") from exc
        return b"".join(chunks)

    # --- s3 ----------------------------------------------------------------------------

    def _fetch_s3(self, url: str, field: str) -> bytes:
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
            data = obj["Body"].read(self.settings.max_image_bytes + 1)
        except ClientError as exc:
            raise _s3_error(exc, field, bucket, key) from exc
        except BotoCoreError as exc:
            raise _unreachable(f"{field}: S3 cannot be reached ({exc.__class__.__name__})") from exc
        if len(data) > self.settings.max_image_bytes:
            raise _too_big(field, self.settings.max_image_bytes)
        return data

    def _s3_client(self):
        with self._s3_lock:
            if self._s3 is None:
                import boto3
                from botocore.config import Config

                timeout = self.settings.fetch_timeout_s
                config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2})
                self._s3 = boto3.client("s3", config=config)
            return self._s3


def _s3_error(exc, field: str, bucket: str, key: str) -> InvalidInput:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound") or status == 404:
        return InvalidInput(f"{field}: s3://{bucket}/{key} does not exist", code="s3_not_found")
    if code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
        return InvalidInput(f"{field}: access to s3://{bucket}/{key} is denied", code="s3_access_denied")
    return _unreachable(f"{field}: S3 answered {code or status}")


def _too_big(field: str, limit: int) -> InvalidInput:
    return InvalidInput(f"{field}: the image is larger than {limit} bytes", code="image_too_large")


def _timeout(field: str, seconds: float) -> InvalidInput:
    return InvalidInput(f"{field}: the download took longer than {seconds:g} s", code="url_timeout")


def _unique(items: Iterable[IpAddress]) -> list[IpAddress]:
    seen: list[IpAddress] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
