"""``POST /v1/embeddings`` and ``GET /v1/models``: the OpenAI embeddings protocol, so OpenAI's SDKs and
the tools built on them (``base_url`` pointed here) embed texts and images with the served model.

The vectors are ``/image-similarity``'s: the inputs go through the same embedder in one call.
Errors are reshaped into OpenAI's form by ``runtime.api.openai_errors``.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool

from runtime.api.bodies import BodyRoute
from runtime.api.deps import embedder_of
from runtime.api.openai_errors import openai_error
from runtime.api.openai_schemas import (
    EMBEDDINGS_ANSWER_EXAMPLES,
    EMBEDDINGS_EXAMPLES,
    MODELS_EXAMPLES,
    EmbeddingsRequest,
    EmbeddingsResponse,
    ModelList,
    OpenAIError,
)
from runtime.api.parsing import openai_inputs
from runtime.api.schemas import EXAMPLE_VERSION, ExamplesByStatus, Responses, answer_examples, error_responses
from runtime.embedder import Embedder
from runtime.engines.priority import BATCH, INTERACTIVE
from runtime.errors import MODEL_NOT_FOUND, BadRequest, NotFound

router = APIRouter(route_class=BodyRoute, tags=["openai"])  # JSON whatever the Content-Type, as every route
CREATED = 1_600_000_000  # OpenAI's model objects carry a creation time; this server's models have none
OWN_ERRORS: ExamplesByStatus = {
    404: {
        "model_not_found": {
            "summary": "Another model",
            "value": {
                "message": f"model: 'text-embedding-3-small' is not served here; this server serves "
                f"'{EXAMPLE_VERSION}'",
                "code": MODEL_NOT_FOUND,
            },
        }
    }
}


def openai_error_responses(*statuses: int) -> Responses:
    """The standard error documentation of these statuses, with OpenAI's error model and shape."""
    responses = error_responses(*statuses, examples=OWN_ERRORS)
    if 404 in responses:
        responses[404]["description"] = "The model asked for is not the one this server serves."
    for status, response in responses.items():
        response["model"] = OpenAIError
        media = response["content"]["application/json"]
        media["examples"] = {
            name: {**example, "value": openai_error(example["value"], int(status))}
            for name, example in media["examples"].items()
        }
    return responses


ERRORS = openai_error_responses(400, 404, 413, 503)
EMBEDDINGS_RESPONSES = {**answer_examples(EMBEDDINGS_ANSWER_EXAMPLES), **ERRORS}
EmbeddingsBody = Annotated[EmbeddingsRequest, Body(openapi_examples=EMBEDDINGS_EXAMPLES)]


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingsResponse,
    responses=EMBEDDINGS_RESPONSES,
    summary="Embeddings, OpenAI-compatible (texts and images)",
    description="The OpenAI embeddings protocol: `input` is one string or a list; images as `data:` URLs or "
    "http(s)/s3 URLs. The vectors equal `/image-similarity`'s for the same inputs.",
)
async def create_embeddings(request: Request, body: EmbeddingsBody) -> dict[str, Any]:
    embedder = embedder_of(request)
    check_model(embedder, body.model)
    check_dimensions(embedder, body.dimensions)
    inputs = openai_inputs(body.input, embedder.settings.max_batch)
    priority = INTERACTIVE if len(inputs) <= 2 else BATCH  # as /image-similarity's single and pair modes
    vectors = await run_in_threadpool(embedder.embed, inputs, priority)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encoded(vector, body.encoding_format)}
            for index, vector in enumerate(vectors)
        ],
        "model": embedder.model_version,
        "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
    }


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses={**answer_examples(MODELS_EXAMPLES), **openai_error_responses(503)},
    summary="The served model, OpenAI-compatible",
)
async def list_models(request: Request) -> dict[str, Any]:
    version = embedder_of(request).model_version
    return {"object": "list", "data": [{"id": version, "object": "model", "created": CREATED, "owned_by": "open_clip"}]}


def check_model(embedder: Embedder, model: str) -> None:
    """The served model by its version (``ViT-B-32/laion2b_s34b_b79k``) or its architecture (``ViT-B-32``)."""
    version = embedder.model_version
    if model not in (version, version.split("/")[0]):
        raise NotFound(f"model: '{model}' is not served here; this server serves '{version}'", code=MODEL_NOT_FOUND)


def check_dimensions(embedder: Embedder, dimensions: int | None) -> None:
    dimension = embedder.engine.dimension
    if dimensions is not None and dimensions != dimension:
        raise BadRequest(
            f"dimensions: {dimensions} is not this model's; its vectors have {dimension} "
            f"(give {dimension} or leave it out)",
            code="invalid_value",
        )


def encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    values: list[float] = vector.tolist()
    return values
