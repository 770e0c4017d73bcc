"""Bodies of ``POST /v1/embeddings``, the OpenAI embeddings protocol (what OpenAI's SDKs and the tools
built on them send), with images as ``data:`` or http(s)/s3 URLs beside texts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.api.schemas import EXAMPLE_PNG, EXAMPLE_VERSION, STRICT_REQUEST

OPENAI_PREFIX = "/v1/"
INPUT_DOC = (
    "A string or a list of them (at most 32, setting `max_batch`), each embedded on its own. A string that is "
    "a `data:image/...;base64,` URL or an `http(s)://` or `s3://` URL (no spaces) is an image; any other "
    'string is a text. A list item may also be an object: `{"image": "<URL or base64>"}` or `{"text": "..."}`.'
)


class ImagePart(BaseModel):
    model_config = STRICT_REQUEST

    image: str = Field(description="A data: URL, an http(s):// or s3:// URL, or base64 image bytes.")


class TextPart(BaseModel):
    model_config = STRICT_REQUEST

    text: str


EmbeddingInput = str | ImagePart | TextPart


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    input: str | list[EmbeddingInput] = Field(description=INPUT_DOC)
    model: str = Field(description="The served model: its version (`GET /v1/models`) or its architecture.")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`float`: lists of numbers; `base64`: little-endian float32 bytes, base64-encoded."
    )
    dimensions: int | None = Field(None, description="Accepted only when equal to the model's dimension.")
    user: str | None = Field(None, description="Accepted and not used.")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Inputs embedded (texts and images): this server does not meter tokens.")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="`invalid_request_error`, `authentication_error`, or `server_error`.")
    param: str | None = Field(description="The request field at fault, when there is one.")
    code: str = Field(description="This API's error code (docs/api.md).")


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


EMBEDDINGS_EXAMPLES: dict[str, dict[str, Any]] = {
    "text": {"summary": "One text", "value": {"model": "ViT-B-32", "input": "a photo of a cat"}},
    "mixed": {
        "summary": "Texts and images in one list",
        "value": {
            "model": "ViT-B-32",
            "input": ["a photo of a cat", f"data:image/png;base64,{EXAMPLE_PNG}", {"text": "a dog"}],
        },
    },
    "base64": {
        "summary": "Vectors as base64 float32",
        "value": {"model": "ViT-B-32", "input": ["a photo of a cat"], "encoding_format": "base64"},
    },
}
EMBEDDINGS_ANSWER_EXAMPLES: dict[str, dict[str, Any]] = {
    "float": {
        "summary": "Vectors as numbers (cut short here)",
        "value": {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0123, -0.0456, 0.0789]}],
            "model": EXAMPLE_VERSION,
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        },
    },
}
MODELS_EXAMPLES: dict[str, dict[str, Any]] = {
    "served": {
        "summary": "The served model",
        "value": {
            "object": "list",
            "data": [{"id": EXAMPLE_VERSION, "object": "model", "created": 1600000000, "owned_by": "open_clip"}],
        },
    },
}
