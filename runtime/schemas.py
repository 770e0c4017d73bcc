"""Request and response bodies of the similarity API (the OpenAPI document is generated from them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

URL_DOC = "Image URL: http://, https:// or s3://bucket/key. JPEG, PNG, BMP or WebP; longest side at most 4096 px."
IMG_DOC = "Base64-encoded image (a data: URL prefix is accepted)."
TEXT_DOC = "Text, embedded in the same space as images (at most 1000 characters)."
EXAMPLE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGM8ISfHgA0wYRUdtBIA0MoBFD5jqJkAAAAASUVORK5CYII="


class Slot(BaseModel):
    """One input: exactly one of ``url``, ``img`` or ``text``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"url": "https://example.com/cat.jpg"}]})

    url: str | None = Field(None, description=URL_DOC)
    img: str | None = Field(None, description=IMG_DOC)
    text: str | None = Field(None, description=TEXT_DOC)


class SimilarityRequest(BaseModel):
    """Single mode (``url`` | ``img`` | ``text``), pair mode (slot 1 and slot 2) or batch mode (``inputs``)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="Single mode. " + URL_DOC)
    img: str | None = Field(None, description="Single mode. " + IMG_DOC)
    text: str | None = Field(None, description="Single mode. " + TEXT_DOC)
    url_1: str | None = Field(None, description="Pair mode, first slot. " + URL_DOC)
    img_1: str | None = Field(None, description="Pair mode, first slot. " + IMG_DOC)
    text_1: str | None = Field(None, description="Pair mode, first slot. " + TEXT_DOC)
    url_2: str | None = Field(None, description="Pair mode, second slot. " + URL_DOC)
    img_2: str | None = Field(None, description="Pair mode, second slot. " + IMG_DOC)
    text_2: str | None = Field(None, description="Pair mode, second slot. " + TEXT_DOC)
    inputs: list[Slot] | None = Field(None, description="Batch mode: up to 32 slots, answered in order.")


SIMILARITY_EXAMPLES = {
    "single-url": {"summary": "Single image by URL", "value": {"url": "https://example.com/cat.jpg"}},
    "single-img": {"summary": "Single image, base64", "value": {"img": EXAMPLE_PNG}},
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
    result: list[float] = Field(description="The 512-d L2-normalised vector.")
    model_version: str = Field(description="<architecture>/<pretrained tag>; vectors of two versions do not compare.")


class PairResponse(BaseModel):
    similarity: float = Field(ge=0, le=1, description="(1 + cosine) / 2: 1 is identical, 0.5 unrelated.")
    model_version: str


class BatchResponse(BaseModel):
    results: list[list[float]]
    model_version: str


class ErrorResponse(BaseModel):
    message: str = Field(description="What is wrong, naming the field.")
    code: str = Field(description="A stable machine-readable code, e.g. invalid_base64, url_refused.")
    status: int | None = Field(None, description="-1 on library writes (the AI Solution Kit convention).")


class PingResponse(BaseModel):
    status: str = "ok"
    model_version: str
