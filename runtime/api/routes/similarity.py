"""``POST /image-similarity`` (and its alias ``/text_similarity``), ``GET /ping``, ``POST /invocations``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool

from runtime.api.bodies import BodyRoute
from runtime.api.deps import embedder_of
from runtime.api.parsing import parse_request
from runtime.api.schemas import (
    PING_EXAMPLES,
    SIMILARITY_ANSWER_EXAMPLES,
    SIMILARITY_EXAMPLES,
    BatchResponse,
    PairResponse,
    PingResponse,
    SimilarityRequest,
    VectorResponse,
    answer_examples,
    error_responses,
)
from runtime.embedder import Embedder, similarity
from runtime.engines.priority import BATCH, INTERACTIVE

router = APIRouter(route_class=BodyRoute)  # JSON whatever the Content-Type, raw images, forms
sagemaker_router = APIRouter(route_class=BodyRoute)

ERRORS = error_responses(400, 413, 502, 503)
SIMILARITY_RESPONSES = {**answer_examples(SIMILARITY_ANSWER_EXAMPLES), **ERRORS}
RESPONSE_MODEL = VectorResponse | PairResponse | BatchResponse
SimilarityBody = Annotated[SimilarityRequest, Body(openapi_examples=SIMILARITY_EXAMPLES)]
SIMILARITY_DOC = """Single mode (`url` | `img` | `text`) answers the vector; pair mode (slot 1 and slot 2, each
`url_N` | `img_N` | `text_N`) answers `similarity` = (1 + cosine) / 2; batch mode (`inputs`, up to 32
slots) answers the vectors in order. Images: JPEG, PNG, BMP, WebP, GIF, TIFF, AVIF or HEIC, longest side at
most 8192 px. The body may also be the image itself (`image/*` or `application/octet-stream`: single
mode) or a multipart form (file parts `img`, `img_1`, `img_2`; text parts for the other fields)."""


async def answer(embedder: Embedder, body: SimilarityRequest) -> dict[str, Any]:
    mode, inputs = parse_request(body, embedder.settings.max_batch)
    # Single and pair mode go ahead of batch work for the model; batch mode (up to 32 inputs) is batch work.
    vectors = await run_in_threadpool(embedder.embed, inputs, BATCH if mode == "batch" else INTERACTIVE)
    version = embedder.model_version
    if mode == "single":
        return {"result": vectors[0].tolist(), "model_version": version}
    if mode == "pair":
        return {"similarity": similarity(vectors[0], vectors[1]), "model_version": version}
    return {"results": vectors.tolist(), "model_version": version}


async def image_similarity(request: Request, body: SimilarityBody) -> dict[str, Any]:
    return await answer(embedder_of(request), body)


SIMILARITY_PATHS = {
    "/image-similarity": "Vectors and similarity of images and texts",
    "/text_similarity": "Same as /image-similarity (the path of the AI Solution Kit's examples)",
}
for path, summary in SIMILARITY_PATHS.items():
    router.add_api_route(
        path,
        image_similarity,
        methods=["POST"],
        response_model=RESPONSE_MODEL,
        responses=SIMILARITY_RESPONSES,
        summary=summary,
        description=SIMILARITY_DOC,
        tags=["similarity"],
    )


@router.get(
    "/ping",
    response_model=PingResponse,
    responses=answer_examples(PING_EXAMPLES),
    summary="Health check",
    tags=["health"],
)
async def ping(request: Request) -> dict[str, Any]:
    return {"status": "ok", "model_version": embedder_of(request).model_version}


@sagemaker_router.post("/invocations", response_model=RESPONSE_MODEL, responses=ERRORS, include_in_schema=False)
async def invocations(request: Request, body: SimilarityRequest) -> dict[str, Any]:
    """SageMaker's inference route: the same bodies and answers as ``/image-similarity``."""
    return await answer(embedder_of(request), body)
