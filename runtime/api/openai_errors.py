"""Errors of the OpenAI-compatible routes (``/v1/...``) in OpenAI's shape.

Every error this API answers is ``{"message", "code"}``, made wherever it happens (a route, a body
limit, the in-flight limit). OpenAI's SDKs read ``{"error": {"message", "type", "param", "code"}}``, so
one middleware rewrites the error bodies of ``/v1/`` paths on their way out: the status, the message
and the code stay this API's, and no error is made twice.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.openai_schemas import OPENAI_PREFIX

# "input[2].image: ..." -> "input[2].image": the field the message names, when it starts with one.
LEADING_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


def openai_error(body: dict[str, Any], status: int) -> dict[str, Any]:
    message = str(body.get("message", ""))
    field = LEADING_FIELD.match(message)
    return {
        "error": {
            "message": message,
            "type": _error_type(status),
            "param": field.group(1) if field and field.group(1) != "request body" else None,
            "code": body.get("code"),
        }
    }


def _error_type(status: int) -> str:
    if status in (401, 403):
        return "authentication_error"
    return "server_error" if status >= 500 else "invalid_request_error"


class OpenAIErrorShape:
    """Rewrites the JSON error bodies of ``/v1/`` paths into OpenAI's shape (see the module's doc)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(OPENAI_PREFIX):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}

        async def reshape(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held["start"], held["chunks"] = message, []
                return
            if "start" not in held:
                await send(message)
                return
            held["chunks"].append(message.get("body", b""))
            if not message.get("more_body", False):
                await _send_reshaped(send, held["start"], b"".join(held["chunks"]))

        await self.app(scope, receive, reshape)


async def _send_reshaped(send: Send, start: Message, body: bytes) -> None:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "message" in parsed:
        body = json.dumps(openai_error(parsed, start["status"])).encode()
    headers = [(name, value) for name, value in start["headers"] if name.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
