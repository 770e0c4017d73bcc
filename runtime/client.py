"""A small client of the Image Similarity API, for scripts and for the CLI's ``import --api``.

JSON requests and multipart uploads, signed with SigV4 for a deployment with ``AWS_IAM``
authorization, sent with an API key for ``API_KEY``; a server that cannot be reached is one
``Unreachable`` exception naming the URL, never a traceback of the HTTP library::

    from runtime.client import Client

    with Client("https://abc123.execute-api.eu-west-1.amazonaws.com/prod", sigv4=True) as api:
        answer = api.call("POST", "/libraries/products/search", {"text": "red shoes", "top_k": 5})
        print(answer.status_code, answer.json())
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpx

API_KEY_HEADER = "x-api-key"
NDJSON_MEDIA_TYPE = "application/x-ndjson"


class Unreachable(Exception):
    """No answer from the server: nothing listens there, the name does not resolve, or it timed out."""


class Client:
    def __init__(
        self,
        base_url: str,
        *,
        sigv4: bool = False,
        region: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60,
    ):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout_s)
        self._signer = SigV4(region) if sigv4 else None
        self._api_key = api_key

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """A request with a JSON body (or none); the answer, whatever its status."""
        content = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else {}
        return self._send(httpx.Request(method, self.base_url + path, content=content, headers=headers))

    def upload(self, path: str, image: bytes, fields: dict[str, str], *, filename: str = "image") -> httpx.Response:
        """A multipart/form-data POST: the image as the ``img`` file part, ``fields`` as text parts."""
        files = {"img": (filename, image, "application/octet-stream")}
        return self._send(httpx.Request("POST", self.base_url + path, data=fields, files=files))

    def post_lines(self, path: str, lines: bytes, params: dict[str, Any] | None = None) -> httpx.Response:
        """A POST of JSONL (``application/x-ndjson``): a restore's part of an export."""
        headers = {"content-type": NDJSON_MEDIA_TYPE}
        return self._send(httpx.Request("POST", self.base_url + path, content=lines, headers=headers, params=params))

    @contextmanager
    def streamed(self, path: str) -> Iterator[httpx.Response]:
        """A GET whose answer is read as it arrives (``iter_bytes``): an export, never held whole."""
        request = self._prepared(httpx.Request("GET", self.base_url + path))
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise Unreachable(f"{self.base_url}: no answer ({describe(exc)})") from exc
        try:
            yield response
        except httpx.TransportError as exc:
            raise Unreachable(f"{self.base_url}: the answer stopped ({describe(exc)})") from exc
        finally:
            response.close()

    def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return self._http.send(self._prepared(request))
        except httpx.TransportError as exc:
            raise Unreachable(f"{self.base_url}: no answer ({describe(exc)})") from exc

    def _prepared(self, request: httpx.Request) -> httpx.Request:
        request.read()  # the body is signed whole
        if self._api_key is not None:
            request.headers[API_KEY_HEADER] = self._api_key
        if self._signer is not None:
            self._signer.sign(request)
        return request

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class SigV4:
    """Signs each request for API Gateway (``execute-api``) with the caller's AWS credentials."""

    def __init__(self, region: str | None):
        import boto3

        session = boto3.Session(region_name=region)
        self.credentials = session.get_credentials()
        self.region = session.region_name
        if self.credentials is None or not self.region:
            raise ValueError("--sigv4: no AWS credentials or Region found (aws configure, or --region)")

    def sign(self, request: httpx.Request) -> None:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        headers = {name: value for name, value in request.headers.items() if name.lower() != "content-length"}
        signed = AWSRequest(method=request.method, url=str(request.url), data=request.content, headers=headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(signed)
        request.headers.update(dict(signed.headers.items()))


def describe(error: httpx.TransportError) -> str:
    """What went wrong, in a few words: the deepest cause's message (``[Errno 111] Connection refused``)."""
    cause: BaseException = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    text = str(cause) or cause.__class__.__name__
    return text if isinstance(error, httpx.ConnectError) else f"{error.__class__.__name__}: {text}"
