"""Request and response bodies of the similarity API (the OpenAPI document is generated from them)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from runtime.errors import ERROR_CODES

# FastAPI's ``responses=`` of a route, and error examples by status (each a named OpenAPI example).
Responses = dict[int | str, dict[str, Any]]
ExamplesByStatus = dict[int, dict[str, dict[str, Any]]]

URL_DOC = (
    "Image URL: http://, https:// or s3://bucket/key. "
    "JPEG, PNG, BMP, WebP, GIF, TIFF, AVIF or HEIC; longest side at most 8192 px, 50 MP."
)
IMG_DOC = "Base64-encoded image (a data: URL prefix is accepted)."
TEXT_DOC = "Text, embedded in the same space as images (at most 1000 characters)."
# Request fields take exactly their OpenAPI types: no "false" -> false, no "5" -> 5 (pydantic's strict mode).
STRICT_REQUEST = ConfigDict(extra="forbid", strict=True)
# An image slot holds base64 text in JSON, or the raw bytes of an upload (runtime/api/bodies.py).
ImageValue = Annotated[str | bytes | None, WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]})]
EXAMPLE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGM8ISfHgA0wYRUdtBIA0MoBFD5jqJkAAAAASUVORK5CYII="


class Slot(BaseModel):
    """One input: exactly one of ``url``, ``img`` or ``text``."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{"url": "https://example.com/cat.jpg"}]}
    )

    url: str | None = Field(None, description=URL_DOC)
    img: ImageValue = Field(None, description=IMG_DOC)
    text: str | None = Field(None, description=TEXT_DOC)


class SimilarityRequest(BaseModel):
    """Single mode (``url`` | ``img`` | ``text``), pair mode (slot 1 and slot 2) or batch mode (``inputs``)."""

    model_config = STRICT_REQUEST

    url: str | None = Field(None, description="Single mode. " + URL_DOC)
    img: ImageValue = Field(None, description="Single mode. " + IMG_DOC)
    text: str | None = Field(None, description="Single mode. " + TEXT_DOC)
    url_1: str | None = Field(None, description="Pair mode, first slot. " + URL_DOC)
    img_1: ImageValue = Field(None, description="Pair mode, first slot. " + IMG_DOC)
    text_1: str | None = Field(None, description="Pair mode, first slot. " + TEXT_DOC)
    url_2: str | None = Field(None, description="Pair mode, second slot. " + URL_DOC)
    img_2: ImageValue = Field(None, description="Pair mode, second slot. " + IMG_DOC)
    text_2: str | None = Field(None, description="Pair mode, second slot. " + TEXT_DOC)
    inputs: list[Slot] | None = Field(None, description="Batch mode: up to 32 slots, answered in order.")


SIMILARITY_EXAMPLES = {
    # First: Swagger UI fills the body with it, and it needs no internet.
    "single-img": {"summary": "Single image, base64", "value": {"img": EXAMPLE_PNG}},
    "single-url": {"summary": "Single image by URL", "value": {"url": "https://example.com/cat.jpg"}},
    "single-text": {"summary": "Text to a vector", "value": {"text": "a photo of a cat"}},
    "pair": {
        "summary": "Image pair: similarity",
        "value": {"url_1": "https://example.com/cat.jpg", "url_2": "s3://my-bucket/cat2.jpg"},
    },
    "pair-mixed": {"summary": "Image and text: similarity", "value": {"img_1": EXAMPLE_PNG, "text_2": "a red square"}},
    "batch": {
        "summary": "Batch of inputs",
        "value": {"inputs": [{"img": EXAMPLE_PNG}, {"text": "a red square"}, {"url": "https://example.com/cat.jpg"}]},
    },
}


class VectorResponse(BaseModel):
    result: list[float] = Field(
        description="The L2-normalised vector: one float per dimension of the model (512 for ViT-B-32, 768 for "
        "SigLIP 2; runtime/engines/catalog.csv lists each model's)."
    )
    model_version: str = Field(description="<architecture>/<pretrained tag>; vectors of two versions do not compare.")


class PairResponse(BaseModel):
    similarity: float = Field(ge=0, le=1, description="(1 + cosine) / 2: 1 is identical, 0.5 unrelated.")
    model_version: str


class BatchResponse(BaseModel):
    results: list[list[float]]
    model_version: str


ERROR_CODES_DOC = "A stable machine-readable code. " + "; ".join(
    f"{status}: {', '.join(codes)}" for status, codes in ERROR_CODES.items()
)


class ErrorResponse(BaseModel):
    message: str = Field(description="What is wrong, naming the field.")
    code: str = Field(description=ERROR_CODES_DOC)
    status: int | None = Field(None, description="-1 on library writes (the AI Solution Kit convention).")


class PingResponse(BaseModel):
    status: str = "ok"
    model_version: str


# --- examples of answers and errors (shown by the API Explorer) ---------------------------

SHORTENED = "shortened here: a real vector has the model's dimension, 512 floats for ViT-B-32"
EXAMPLE_VERSION = "ViT-B-32/laion2b_s34b_b79k"
SIMILARITY_ANSWER_EXAMPLES = {
    "single": {
        "summary": f"Single mode: the vector ({SHORTENED})",
        "value": {"result": [0.0213, -0.0467, 0.0089], "model_version": EXAMPLE_VERSION},
    },
    "pair": {"summary": "Pair mode: the similarity", "value": {"similarity": 0.8731, "model_version": EXAMPLE_VERSION}},
    "batch": {
        "summary": f"Batch mode: the vectors in order ({SHORTENED})",
        "value": {"results": [[0.0213, -0.0467, 0.0089], [0.0102, 0.0311, -0.0274]], "model_version": EXAMPLE_VERSION},
    },
}
PING_EXAMPLES = {"ok": {"summary": "Healthy", "value": {"status": "ok", "model_version": EXAMPLE_VERSION}}}


def _error(summary: str, message: str, code: str) -> dict[str, Any]:
    return {"summary": summary, "value": {"message": message, "code": code}}


# The messages are the runtime's own (tests/test_explorer.py checks the 400s against real answers). The library
# routes give their own examples (runtime/libraries/schemas.py).
ERROR_EXAMPLES: ExamplesByStatus = {
    400: {
        "missing_input": _error(
            "No input given",
            "request body: give url, img or text (single mode); url_1/img_1/text_1 and url_2/img_2/text_2 "
            "(pair mode); or inputs (batch mode)",
            "missing_input",
        ),
        "ambiguous_input": _error(
            "Two inputs in one slot",
            "request body: give only one of url or img or text, not url and img",
            "ambiguous_input",
        ),
        "unknown_field": _error(
            "A field the API does not know", "txt: unknown field; did you mean 'text'?", "unknown_field"
        ),
        "invalid_base64": _error("Bad base64", "img: not valid base64 (Only base64 data is allowed)", "invalid_base64"),
        "not_an_image": _error("Not an image", "img: the data is not an image Pillow can read", "not_an_image"),
        "image_too_large": _error(
            "Image over the size limit",
            "img: the image is 9000x3000 px; the longest side may be at most 8192 px (setting max_image_side)",
            "image_too_large",
        ),
        "url_refused": _error(
            "URL to a non-public address (SSRF guard)",
            "url: the host '169.254.169.254' resolves to 169.254.169.254, which is not globally reachable "
            "(169.254.0.0/16: Link Local)",
            "url_refused",
        ),
        "text_too_long": _error("Text too long", "text: the text has 1001 characters; at most 1000", "text_too_long"),
        "batch_too_large": _error("Batch too large", "inputs: 33 slots; at most 32 per request", "batch_too_large"),
    },
    413: {
        "payload_too_large": _error("Body too large", "request body: larger than 33554432 bytes", "payload_too_large")
    },
    502: {
        "upstream_error": _error(
            "The model backend failed", "the model endpoint image-similarity failed: ModelError", "upstream_error"
        )
    },
    503: {
        "overloaded": _error(
            "Too many requests in flight", "the server is busy (64 requests in flight); retry shortly", "overloaded"
        )
    },
}
ERROR_DESCRIPTIONS = {
    400: "Bad input: the message names the field and the reason.",
    404: "Not found: the library or image does not exist, or libraries are off on this server.",
    409: "Conflict: the name is taken, the model version differs, or a quota is reached.",
    413: "The request body is larger than the limit.",
    502: "A backend the API depends on (SageMaker, S3 Vectors) failed.",
    503: "Busy (too many requests in flight, or a library busy with other writes): retry shortly. Or the "
    "local store cannot serve (its database damaged or read-only, its folder in use): the message names the file.",
    507: "The disk under the local store is full: nothing was written; free space and retry.",
}


def error_responses(*statuses: int, examples: ExamplesByStatus | None = None) -> Responses:
    """FastAPI ``responses=`` for these error statuses: the error model, a description and examples.

    ``examples`` replaces the default examples of a status (e.g. a route's own 404 message).
    """
    chosen = {**ERROR_EXAMPLES, **(examples or {})}
    return {
        status: {
            "model": ErrorResponse,
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"examples": chosen[status]}},
        }
        for status in statuses
    }


def answer_examples(examples: dict[str, dict[str, Any]], status: int = 200) -> Responses:
    """FastAPI ``responses=`` entry with examples of a successful answer."""
    return {status: {"content": {"application/json": {"examples": examples}}}}
