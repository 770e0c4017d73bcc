"""What Lambda hands a handler behind API Gateway's REST API: a proxy event (v1) and a context."""

from __future__ import annotations

import base64
import json
from typing import Any

DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"


def proxy_event(
    path: str,
    body: dict[str, Any] | bytes | None,
    *,
    content_type: str | None = "application/json",
    binary: bool = True,
    method: str = "POST",
    stage: str = "prod",
    request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
) -> dict:
    """A proxy event as API Gateway sends it: a dict body as JSON; the body base64-encoded when API
    Gateway treats it as binary (``binary``), else as text; the stage in the request context."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Host": DOMAIN, "User-Agent": "python-requests/2.32"}
    if content_type:
        headers["Content-Type"] = content_type
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "domainName": DOMAIN,
            "apiId": "abc123",
            "requestId": request_id,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "python-requests/2.32"},
        },
        "body": None if data is None else base64.b64encode(data).decode() if binary else data.decode("utf-8"),
        "isBase64Encoded": data is not None and binary,
    }


class LambdaContext:
    function_name = "image-similarity"
    aws_request_id = "req-1"
    memory_limit_in_mb = 3008
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:image-similarity"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000
