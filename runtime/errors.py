"""The error model: every failure the API reports is an ``ApiError``.

The HTTP body is ``{"message": str, "code": str}``; library writes add ``"status": -1``.
Messages name the field at fault and the reason, so a caller can fix the request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

MAX_MESSAGE_CHARS = 1000


def shortened(message: str) -> str:
    """A message that echoes a huge value (a 30 MB URL, a 1 MB name) is cut in the middle: the
    field at the start and the reason at the end stay, the answer stays small."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[:600]} ...({len(message) - 900} characters left out)... {message[-300:]}"


class ApiError(Exception):
    status_code = 400
    code = "invalid_request"
    body_status: int | None = None
    """Library writes set -1 (the AI Solution Kit's convention): the body then carries ``"status"``."""
    retry_after_s: int | None = None
    """Sent as ``Retry-After``: the failure is temporary and the same request may succeed then."""

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None):
        message = shortened(message)
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.body_status is not None:
            body["status"] = self.body_status
        return body


class BadRequest(ApiError):
    """The request itself is malformed (JSON, fields, slots)."""


class InvalidInput(ApiError):
    """An input value (image, URL, text) cannot be used."""


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class QuotaExceeded(ApiError):
    status_code = 409
    code = "quota_exceeded"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class Overloaded(ApiError):
    status_code = 503
    code = "overloaded"
    retry_after_s = 1


class StorageFull(ApiError):
    """The disk under the store is full: nothing was written, everything acknowledged before stays,
    and the same write succeeds once space is freed."""

    status_code = 507
    code = "storage_full"


def storage_full(path: object, reason: str) -> StorageFull:
    return StorageFull(
        f"{path}: the disk is full ({reason}); nothing was written and everything acknowledged before is kept. "
        "Free space on the disk and retry"
    )


class StoreUnavailable(ApiError):
    """The store cannot serve now (its folder in use by another process, its file damaged or
    read-only); the message names the file and what to do."""

    status_code = 503
    code = "store_unavailable"


class ModelUnavailable(Exception):
    """The model's weights cannot be loaded; raised at start-up, never for a request."""


class SettingsError(ValueError):
    """A setting or flag cannot be used; the message is one line naming it, its value and what is
    allowed. Raised at start-up, never for a request: the CLI prints it and exits with code 2."""


class UpstreamError(ApiError):
    """A backend the runtime depends on (SageMaker, S3 Vectors) failed."""

    status_code = 502
    code = "upstream_error"


# Codes that code branches on (a caller's decision, not only a message), named once.
LIBRARY_NOT_FOUND = "library_not_found"
LIBRARIES_DISABLED = "libraries_disabled"
IMAGE_EXISTS = "image_exists"
TOO_MANY_IMPORTS = "too_many_imports"
"""As many imports run as the server or the library allows (settings ``import_max_running*``)."""
DUPLICATE_ID = "duplicate_id"
"""An import's item whose id an earlier item of its batch has: that item's failure."""
IMAGE_QUOTA_EXCEEDED = "image_quota_exceeded"
MODEL_VERSION_MISMATCH = "model_version_mismatch"
NOT_AN_IMAGE = "not_an_image"
MODEL_NOT_FOUND = "model_not_found"
SCAN_TOO_LARGE = "scan_too_large"
"""A count, delete by filter or ``order_by`` listing of a library larger than ``max_scan_images``."""
JOB_STOPPING_CODES = frozenset({LIBRARY_NOT_FOUND, LIBRARIES_DISABLED, IMAGE_QUOTA_EXCEEDED, MODEL_VERSION_MISMATCH})
"""An import that meets one of these stops (the next item would fail the same way), whichever way it runs."""

VALIDATION_CODES = {
    "json_invalid": "invalid_json",
    "extra_forbidden": "unknown_field",
    "missing": "missing_field",
    "model_attributes_type": "invalid_json",
    **dict.fromkeys(
        ("dict_type", "int_type", "float_type", "bool_type", "string_type", "list_type", "int_from_float"),
        "invalid_type",
    ),
}

# Every code the API answers with, by status: docs/api.md's Errors table and the OpenAPI document's
# error model list them all (tests/runtime/api/test_error_contract.py checks both against the source).
ERROR_CODES: dict[int, tuple[str, ...]] = {
    400: (
        "invalid_json",
        "json_too_large",
        "unknown_field",
        "missing_field",
        "invalid_type",
        "invalid_value",
        "invalid_request",
        "invalid_path",
        "missing_input",
        "ambiguous_input",
        "batch_too_large",
        "duplicate_part",
        "invalid_part",
        "invalid_multipart",
        "invalid_base64",
        "not_an_image",
        "invalid_image",
        "unsupported_format",
        "image_too_large",
        "image_too_complex",
        "decompression_bomb",
        "invalid_url",
        "url_refused",
        "url_unreachable",
        "url_timeout",
        "url_not_image",
        "s3_not_found",
        "s3_access_denied",
        "text_empty",
        "text_too_long",
        "invalid_library_name",
        "invalid_name",
        "invalid_image_id",
        "invalid_metadata",
        "metadata_too_large",
        "invalid_filter",
        "invalid_next_token",
        "invalid_source",
        "file_unreadable",
        "invalid_host",
        DUPLICATE_ID,
        "invalid_export",
        "invalid_vector",
    ),
    401: ("invalid_api_key",),
    403: ("cross_site_request",),
    404: (
        "route_not_found",
        "not_found",
        "library_not_found",
        "image_not_found",
        "thumbnail_not_found",
        "libraries_disabled",
        "import_not_found",
        MODEL_NOT_FOUND,
    ),
    405: ("method_not_allowed",),
    408: ("request_timeout",),
    409: (
        "conflict",
        "quota_exceeded",
        "library_exists",
        "image_exists",
        "library_quota_exceeded",
        "image_quota_exceeded",
        "model_version_mismatch",
        "import_finished",
        TOO_MANY_IMPORTS,
        SCAN_TOO_LARGE,
    ),
    415: ("unsupported_media_type",),
    413: ("payload_too_large",),
    500: ("internal_error",),
    502: ("upstream_error", "store_error"),
    503: ("overloaded", "library_busy", "model_not_served", "store_unavailable", "store_damaged", "store_read_only"),
    507: ("storage_full",),
}


def unparsable_body(cause: BaseException | None) -> BadRequest | None:
    """FastAPI answers "There was an error parsing the body" when parsing a JSON body fails with
    anything but a JSON syntax error; this says why, or None when the cause is not a parse failure."""
    if isinstance(cause, RecursionError):
        return BadRequest("request body: invalid JSON (nested too deeply)", code="invalid_json")
    if isinstance(cause, UnicodeDecodeError):
        return BadRequest("request body: invalid JSON (not UTF-8 text)", code="invalid_json")
    return None


def validation_error(
    errors: Sequence[Mapping[str, Any]], unknown_field_hint: Callable[[list[str]], str] | None = None
) -> BadRequest:
    """The first of pydantic's validation errors, as a 400 that names the field. ``unknown_field_hint``
    says, for an unknown field's location, what the caller may have meant."""
    if not errors:
        return BadRequest("request body: invalid request")
    error = errors[0]
    kind = error.get("type", "")
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    field = _field_path(location) or "request body"
    if kind == "json_invalid":
        reason = error.get("ctx", {}).get("error", "cannot parse")
        return BadRequest(f"request body: invalid JSON ({reason})", code="invalid_json")
    if kind == "model_attributes_type" and field == "request body":
        return BadRequest("request body: must be a JSON object", code="invalid_json")
    if kind == "extra_forbidden":
        hint = f"; {unknown_field_hint(location)}" if unknown_field_hint and location else ""
        return BadRequest(f"{field}: unknown field{hint}", code="unknown_field")
    return BadRequest(f"{field}: {error.get('msg', 'invalid value')}", code=VALIDATION_CODES.get(kind, "invalid_value"))


def _field_path(parts: list[str]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if part.isdigit() else (f".{part}" if path else part)
    return path
