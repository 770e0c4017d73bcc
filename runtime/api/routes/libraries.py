"""``/libraries``: create, list, get and delete libraries; add, get and delete images; search.

Embedding and store calls block, so each request runs them in the thread pool. Errors of the
writes (create and delete library, add and delete image) carry ``"status": -1``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.api.bodies import BodyRoute
from runtime.api.library_schemas import (
    ADD_ANSWERS,
    ADD_EXAMPLES,
    CREATE_EXAMPLES,
    ID_EXAMPLES,
    IMAGE_ANSWERS,
    IMAGE_DELETED_ANSWERS,
    LIBRARY_ANSWERS,
    LIBRARY_DELETED_ANSWERS,
    LIST_ANSWERS,
    NAME_DOC,
    NAME_EXAMPLES,
    SEARCH_ANSWERS,
    SEARCH_EXAMPLES,
    AddImageRequest,
    CreateLibraryRequest,
    DuplicateResponse,
    ImageAddedResponse,
    ImageDeletedResponse,
    ImageResponse,
    LibraryDeletedResponse,
    LibraryListResponse,
    LibraryResponse,
    SearchRequest,
    SearchResponse,
    error_examples,
)
from runtime.api.parsing import slot_input
from runtime.api.routes.similarity import embedder_of
from runtime.api.schemas import answer_examples, error_responses
from runtime.embedder import Embedder, Input
from runtime.errors import ApiError, BadRequest, NotFound, unparsable_body, validation_error
from runtime.libraries.store import (
    Added,
    AddResult,
    Image,
    Library,
    LibraryStore,
    Match,
    check_score,
)

SLOT_FIELDS = {"url": "url", "img": "img", "text": "text"}
TAGS: list[str | Any] = ["libraries"]


class LibraryWriteRoute(BodyRoute):
    """A library write: its errors, request validation included, carry ``"status": -1``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def write(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                error = validation_error(exc.errors())
                error.body_status = -1
                raise error from exc
            except ApiError as exc:
                exc.body_status = -1
                raise
            except StarletteHTTPException as exc:  # a body FastAPI could not parse (see unparsable_body)
                error = unparsable_body(exc.__cause__)
                if error is None:
                    raise
                error.body_status = -1
                raise error from exc

        return write


router = APIRouter(tags=TAGS, route_class=BodyRoute)  # bodies by Content-Type (runtime/api/bodies.py)
writes = APIRouter(tags=TAGS, route_class=LibraryWriteRoute)

LibraryName = Annotated[str, Path(description=NAME_DOC, openapi_examples=NAME_EXAMPLES)]
ImageId = Annotated[str, Path(description="The image's id.", openapi_examples=ID_EXAMPLES)]
READ_ERRORS = ["invalid_library_name", "library_not_found", "libraries_disabled"]


def documented(answers: dict, codes: list[str], *, write: bool, status: int = 200) -> dict[int | str, dict]:
    """``responses=`` of a route: examples of its answer and of its errors."""
    examples = error_examples(codes, write=write)
    return {**answer_examples(answers, status), **error_responses(*sorted(examples), examples=examples)}


def store_of(request: Request) -> LibraryStore:
    store = getattr(request.app.state, "libraries", None)
    if store is None:
        raise NotFound("libraries are not enabled on this server (setting IMSIM_STORE)", code="libraries_disabled")
    return store


# --- libraries ---------------------------------------------------------------------------


@writes.post(
    "/libraries",
    status_code=201,
    response_model=LibraryResponse,
    responses=documented(
        LIBRARY_ANSWERS,
        ["invalid_library_name", "library_exists", "library_quota_exceeded", "libraries_disabled"],
        write=True,
        status=201,
    ),
    summary="Create a library",
)
async def create_library(
    request: Request, body: Annotated[CreateLibraryRequest, Body(openapi_examples=CREATE_EXAMPLES)]
) -> dict:
    store, version = store_of(request), embedder_of(request).model_version
    return library_body(await run_in_threadpool(store.create_library, body.name, version))


@router.get(
    "/libraries",
    response_model=LibraryListResponse,
    responses=documented(LIST_ANSWERS, ["libraries_disabled"], write=False),
    summary="List libraries",
)
async def list_libraries(request: Request) -> dict:
    libraries = await run_in_threadpool(store_of(request).list_libraries)
    return {"libraries": [library_body(library) for library in libraries]}


@router.get(
    "/libraries/{name}",
    response_model=LibraryResponse,
    responses=documented(LIBRARY_ANSWERS, READ_ERRORS, write=False),
    summary="Get a library",
)
async def get_library(request: Request, name: LibraryName) -> dict:
    return library_body(await run_in_threadpool(store_of(request).get_library, name))


@writes.delete(
    "/libraries/{name}",
    response_model=LibraryDeletedResponse,
    responses=documented(LIBRARY_DELETED_ANSWERS, READ_ERRORS, write=True),
    summary="Delete a library and its images",
)
async def delete_library(request: Request, name: LibraryName) -> dict:
    store = store_of(request)
    await run_in_threadpool(store.delete_library, name)
    return {"name": name, "deleted": True}


# --- images ------------------------------------------------------------------------------

ADD_DOC = """Embeds the image and adds it, unless `dedup` (default true) finds an image scoring at least
`threshold` (default 0.97 = cosine 0.94) already in the library: then nothing is added and the answer
is `status: 0` with that match. An `id` already in the library is a 409 (ids are never overwritten)."""


@writes.post(
    "/libraries/{name}/images",
    response_model=ImageAddedResponse | DuplicateResponse,
    responses=documented(
        ADD_ANSWERS,
        [
            *READ_ERRORS,
            "metadata_too_large",
            "image_exists",
            "image_quota_exceeded",
            "model_version_mismatch",
            "store_error",
            "library_busy",
        ],
        write=True,
    ),
    summary="Add an image (with near-duplicate check)",
    description=ADD_DOC,
)
async def add_image(
    request: Request, name: LibraryName, body: Annotated[AddImageRequest, Body(openapi_examples=ADD_EXAMPLES)]
) -> dict:
    store, embedder = store_of(request), embedder_of(request)
    if body.url is None and body.img is None:
        raise BadRequest("request body: give url or img (the image to add)", code="missing_input")
    item = slot_input({"url": body.url, "img": body.img}, SLOT_FIELDS, "request body")
    check_score(body.threshold, "threshold")  # the store checks it too; first spares the fetch and embedding
    threshold = (
        (body.threshold if body.threshold is not None else embedder.settings.dedup_threshold) if body.dedup else None
    )

    def embed_and_add() -> AddResult:
        vector = embed_one(embedder, item)
        return store.add_image(
            name,
            vector,
            model_version=embedder.model_version,
            image_id=body.id,
            metadata=body.metadata,
            dedup_threshold=threshold,
        )

    result = await run_in_threadpool(embed_and_add)
    if isinstance(result, Added):
        return {"status": 1, "message": "Image added.", "id": result.id, "score": result.score}
    return {"status": 0, "message": "Similar image found.", "match": match_body(result.match)}


@router.get(
    "/libraries/{name}/images/{id}",
    response_model=ImageResponse,
    responses=documented(IMAGE_ANSWERS, [*READ_ERRORS, "image_not_found"], write=False),
    summary="Get an image's metadata",
)
async def get_image(request: Request, name: LibraryName, id: ImageId) -> dict:
    return image_body(await run_in_threadpool(store_of(request).get_image, name, id))


@writes.delete(
    "/libraries/{name}/images/{id}",
    response_model=ImageDeletedResponse,
    responses=documented(IMAGE_DELETED_ANSWERS, [*READ_ERRORS, "image_not_found", "library_busy"], write=True),
    summary="Delete an image",
)
async def delete_image(request: Request, name: LibraryName, id: ImageId) -> dict:
    await run_in_threadpool(store_of(request).delete_image, name, id)
    return {"id": id, "deleted": True}


SEARCH_DOC = """Search by an image (`url` or `img`) or by `text`: the `top_k` best matches, best first,
scored (1 + cosine) / 2. `filter` keeps matches whose metadata has every given top-level value."""


@router.post(
    "/libraries/{name}/search",
    response_model=SearchResponse,
    responses=documented(
        SEARCH_ANSWERS, [*READ_ERRORS, "invalid_filter", "model_version_mismatch", "store_error"], write=False
    ),
    summary="Search a library by image or text",
    description=SEARCH_DOC,
)
async def search(
    request: Request, name: LibraryName, body: Annotated[SearchRequest, Body(openapi_examples=SEARCH_EXAMPLES)]
) -> dict:
    store, embedder = store_of(request), embedder_of(request)
    item = slot_input({"url": body.url, "img": body.img, "text": body.text}, SLOT_FIELDS, "request body")
    # The store checks these too; first spares the fetch and embedding.
    top_k = store.check_top_k(body.top_k if body.top_k is not None else embedder.settings.default_top_k)
    check_score(body.min_score, "min_score")

    def embed_and_search() -> list[Match]:
        vector = embed_one(embedder, item)
        return store.search(
            name,
            vector,
            model_version=embedder.model_version,
            top_k=top_k,
            min_score=body.min_score,
            filter=body.filter,
        )

    matches = await run_in_threadpool(embed_and_search)
    return {"matches": [match_body(match) for match in matches], "model_version": embedder.model_version}


router.include_router(writes)


# --- bodies ------------------------------------------------------------------------------


def embed_one(embedder: Embedder, item: Input):
    return embedder.embed([item])[0]


def library_body(library: Library) -> dict:
    return {
        "name": library.name,
        "create_time": utc(library.create_time),
        "image_count": library.image_count,
        "model_version": library.model_version,
    }


def image_body(image: Image) -> dict:
    return {"id": image.id, "metadata": image.metadata, "create_time": utc(image.create_time)}


def match_body(match: Match) -> dict:
    return {"id": match.id, "score": match.score, "metadata": match.metadata}


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)
