"""``/libraries``: create, list, get and delete libraries; add, get and delete images; search.

Embedding and store calls block, so each request runs them in the thread pool. Errors of the
writes (create and delete library, add and delete image) carry ``"status": -1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.api.bodies import BodyRoute, body_model
from runtime.api.deps import embedder_of, store_of
from runtime.api.field_hints import request_error
from runtime.api.library_schemas import (
    ADD_ANSWERS,
    ADD_EXAMPLES,
    COUNT_ANSWERS,
    COUNT_EXAMPLES,
    CREATE_EXAMPLES,
    DELETE_IMAGES_ANSWERS,
    DELETE_IMAGES_EXAMPLES,
    ID_EXAMPLES,
    IMAGE_ANSWERS,
    IMAGE_DELETED_ANSWERS,
    IMAGE_LIST_ANSWERS,
    LIBRARY_ANSWERS,
    LIBRARY_DELETED_ANSWERS,
    LIMIT_EXAMPLES,
    LIST_ANSWERS,
    MAX_BATCH_ADD,
    NAME_DOC,
    NAME_EXAMPLES,
    ORDER_BY_EXAMPLES,
    ORDER_EXAMPLES,
    SEARCH_ANSWERS,
    SEARCH_EXAMPLES,
    STORE_FAULTS,
    TOKEN_EXAMPLES,
    UPDATE_EXAMPLES,
    WRITE_FAULTS,
    AddImageRequest,
    BatchAddResponse,
    BatchImage,
    CountRequest,
    CountResponse,
    CreateLibraryRequest,
    DeleteImagesRequest,
    DeleteImagesResponse,
    DuplicateResponse,
    ExampleInput,
    ImageAddedResponse,
    ImageDeletedResponse,
    ImageListResponse,
    ImageResponse,
    LibraryDeletedResponse,
    LibraryListResponse,
    LibraryResponse,
    SearchRequest,
    SearchResponse,
    UpdateImageRequest,
    error_examples,
    utc,
)
from runtime.api.parsing import slot_input
from runtime.api.schemas import Responses, answer_examples, error_responses
from runtime.embedder import Embedder, Input
from runtime.engines.priority import BATCH, INTERACTIVE, Priority
from runtime.errors import ApiError, BadRequest, unparsable_body
from runtime.libraries.adding import AddItem, Outcome, add_items, dedup_of
from runtime.libraries.examples import Example, search_by_examples
from runtime.libraries.grouping import check_grouping
from runtime.libraries.store import MAX_PAGE, Added, Dedup, Group, Image, Library, LibraryStore, Match, SearchResult
from runtime.libraries.thumbnails import THUMBNAIL_MEDIA_TYPE
from runtime.libraries.values import check_score

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
                invalid = request_error(list(exc.errors()), body_model(self.endpoint))
                invalid.body_status = -1
                raise invalid from exc
            except ApiError as exc:
                exc.body_status = -1
                raise
            except StarletteHTTPException as exc:  # a body FastAPI could not parse (see unparsable_body)
                unparsable = unparsable_body(exc.__cause__)
                if unparsable is None:
                    raise
                unparsable.body_status = -1
                raise unparsable from exc

        return write


router = APIRouter(tags=TAGS, route_class=BodyRoute)  # bodies by Content-Type (runtime/api/bodies.py)
writes = APIRouter(tags=TAGS, route_class=LibraryWriteRoute)

LibraryName = Annotated[str, Path(description=NAME_DOC, openapi_examples=NAME_EXAMPLES)]
ImageId = Annotated[str, Path(description="The image's id.", openapi_examples=ID_EXAMPLES)]
READ_ERRORS = ["invalid_library_name", "library_not_found", "libraries_disabled", *STORE_FAULTS]
WRITE_ERRORS = [*READ_ERRORS, "storage_full"]


def documented(answers: dict[str, Any], codes: list[str], *, write: bool, status: int = 200) -> Responses:
    """``responses=`` of a route: examples of its answer and of its errors."""
    examples = error_examples(codes, write=write)
    return {**answer_examples(answers, status), **error_responses(*sorted(examples), examples=examples)}


# --- libraries ---------------------------------------------------------------------------


@writes.post(
    "/libraries",
    status_code=201,
    response_model=LibraryResponse,
    responses=documented(
        LIBRARY_ANSWERS,
        ["invalid_library_name", "library_exists", "library_quota_exceeded", "libraries_disabled", *WRITE_FAULTS],
        write=True,
        status=201,
    ),
    summary="Create a library",
)
async def create_library(
    request: Request, body: Annotated[CreateLibraryRequest, Body(openapi_examples=CREATE_EXAMPLES)]
) -> dict[str, Any]:
    store, version = store_of(request), embedder_of(request).model_version
    created = await run_in_threadpool(
        lambda: store.create_library(body.name, version, thumbnails=body.thumbnails, threshold=body.threshold)
    )
    return library_body(created)


@router.get(
    "/libraries",
    response_model=LibraryListResponse,
    responses=documented(LIST_ANSWERS, ["libraries_disabled", *STORE_FAULTS], write=False),
    summary="List libraries",
)
async def list_libraries(request: Request) -> dict[str, Any]:
    libraries = await run_in_threadpool(store_of(request).list_libraries)
    return {"libraries": [library_body(library) for library in libraries]}


@router.get(
    "/libraries/{name}",
    response_model=LibraryResponse,
    responses=documented(LIBRARY_ANSWERS, READ_ERRORS, write=False),
    summary="Get a library",
)
async def get_library(request: Request, name: LibraryName) -> dict[str, Any]:
    return library_body(await run_in_threadpool(store_of(request).get_library, name))


@writes.delete(
    "/libraries/{name}",
    response_model=LibraryDeletedResponse,
    responses=documented(LIBRARY_DELETED_ANSWERS, WRITE_ERRORS, write=True),
    summary="Delete a library and its images",
)
async def delete_library(request: Request, name: LibraryName) -> dict[str, Any]:
    from runtime.api.routes.imports import forget_imports

    store = store_of(request)
    await run_in_threadpool(store.delete_library, name)
    await run_in_threadpool(forget_imports, request.app, name)
    return {"name": name, "deleted": True}


# --- images ------------------------------------------------------------------------------

ADD_DOC = """Embeds the image and adds it, unless `dedup` (default true) finds a duplicate already in the
library (or earlier in the batch): then nothing is added and the answer is `status: 0` with that match and
its `tier`: `exact` (the same file, by SHA-256 of its bytes, before any model work; `exact: true`), `copy`
(the same picture re-encoded, resized or lightly edited: its perceptual hash), or `similar` (an image scoring
at least `threshold`; only when the add gives a `threshold` or the library was created with one: by default
a distinct photo is added however close its embedding). An `id` already in the library is a 409 (ids are
never overwritten).

Batch add: `{"images": [...]}`, 1 to 32 images, each with a single add's image fields; one forward pass; the
answer is 200 with one result per image, in order: `status` 1 (added), 0 (duplicate, in the library or
earlier in the batch) or -1 (refused: `message` and `code` as a single add would answer)."""

ADD_ERRORS = [
    *WRITE_ERRORS,
    "invalid_image_id",
    "invalid_metadata",
    "metadata_too_large",
    "batch_too_large",
    "image_exists",
    "image_quota_exceeded",
    "model_version_mismatch",
    "store_error",
    "library_busy",
]


@writes.post(
    "/libraries/{name}/images",
    response_model=ImageAddedResponse | DuplicateResponse | BatchAddResponse,
    responses=documented(ADD_ANSWERS, ADD_ERRORS, write=True),
    summary="Add an image, or a batch of up to 32 (with duplicate checks)",
    description=ADD_DOC,
)
async def add_image(
    request: Request, name: LibraryName, body: Annotated[AddImageRequest, Body(openapi_examples=ADD_EXAMPLES)]
) -> dict[str, Any]:
    store, embedder = store_of(request), embedder_of(request)
    dedup = dedup_of(body.dedup, body.threshold)
    if body.images is not None:
        if any(value is not None for value in (body.url, body.img, body.id, body.metadata)):
            raise BadRequest(
                "request body: give images (a batch) or url / img with id and metadata (one image), not both",
                code="ambiguous_input",
            )
        items = batch_items(body.images)
        results = await run_in_threadpool(add_all, store, embedder, name, items, dedup, BATCH)
        return {"results": [result_body(result) for result in results]}
    if body.url is None and body.img is None:
        raise BadRequest("request body: give url or img (the image to add), or images", code="missing_input")
    item = AddItem(slot_input({"url": body.url, "img": body.img}, SLOT_FIELDS, "request body"), body.id, body.metadata)
    [result] = await run_in_threadpool(add_all, store, embedder, name, [item], dedup, INTERACTIVE)
    if isinstance(result, ApiError):
        raise result
    return result_body(result)


def batch_items(images: list[BatchImage]) -> list[AddItem]:
    if not 1 <= len(images) <= MAX_BATCH_ADD:
        raise BadRequest(
            f"images: {len(images)} images; give 1 to {MAX_BATCH_ADD} per request",
            code="missing_input" if not images else "batch_too_large",
        )
    items = []
    for position, image in enumerate(images):
        label = f"images[{position}]"
        fields = {kind: f"{label}.{kind}" for kind in SLOT_FIELDS}
        source: Input | ApiError
        try:
            if image.url is None and image.img is None:
                raise BadRequest(f"{label}: give url or img (the image to add)", code="missing_input")
            source = slot_input({"url": image.url, "img": image.img}, fields, label)
        except ApiError as error:
            source = error  # answered in its place, with status -1
        items.append(AddItem(source, image.id, image.metadata, label))
    return items


def add_all(
    store: LibraryStore[Any],
    embedder: Embedder,
    name: str,
    items: list[AddItem],
    dedup: Dedup | None,
    priority: Priority,
) -> list[Outcome]:
    """The request's items through the one add path, under one fetch deadline for the request: a single
    add's forward pass goes ahead of batch adds' and imports' (``runtime.engines.Priority``)."""
    deadline = time.monotonic() + embedder.settings.fetch_timeout_s
    return add_items(store, embedder, name, items, dedup=dedup, priority=priority, deadline=deadline)


def result_body(result: Outcome) -> dict[str, Any]:
    if isinstance(result, ApiError):
        return {**result.body(), "status": -1}
    if isinstance(result, Added):
        return {"status": 1, "message": "Image added.", "id": result.id, "score": result.score}
    return {
        "status": 0,
        "message": "Similar image found.",
        "match": match_body(result.match),
        "exact": result.exact,
        "tier": result.tier,
    }


@router.get(
    "/libraries/{name}/images",
    response_model=ImageListResponse,
    responses=documented(
        IMAGE_LIST_ANSWERS,
        [*READ_ERRORS, "invalid_next_token", "invalid_value", "scan_too_large", "store_error", "library_busy"],
        write=False,
    ),
    summary="List a library's images, a page at a time",
    description="Ids with metadata and create time, in id order, or ordered by a metadata key (`order_by`, "
    "`order`: numbers, ISO dates by instant, other strings; images without the key last; ties by id). "
    "`next_token` from one answer gives the next page; images added or deleted between pages do not make the "
    "listing repeat or skip the others. An ordered page reads the whole library (at most "
    "`IMSIM_MAX_SCAN_IMAGES` images: 10,000 on S3 Vectors, no bound locally).",
)
async def list_images(
    request: Request,
    name: LibraryName,
    limit: Annotated[
        int,
        Query(ge=1, le=MAX_PAGE, description=f"Images per page, 1 to {MAX_PAGE}.", openapi_examples=LIMIT_EXAMPLES),
    ] = 100,
    next_token: Annotated[
        str | None, Query(description="The `next_token` of the previous page.", openapi_examples=TOKEN_EXAMPLES)
    ] = None,
    order_by: Annotated[
        str | None,
        Query(
            description="Order by this top-level metadata key (default: id order).", openapi_examples=ORDER_BY_EXAMPLES
        ),
    ] = None,
    order: Annotated[
        str | None, Query(description="`asc` (default) or `desc`, with `order_by`.", openapi_examples=ORDER_EXAMPLES)
    ] = None,
) -> dict[str, Any]:
    page = await run_in_threadpool(
        lambda: store_of(request).list_images(name, limit=limit, next_token=next_token, order_by=order_by, order=order)
    )
    return {"images": [image_body(image) for image in page.images], "next_token": page.next_token}


@router.get(
    "/libraries/{name}/images/{id}",
    response_model=ImageResponse,
    responses=documented(IMAGE_ANSWERS, [*READ_ERRORS, "image_not_found"], write=False),
    summary="Get an image's metadata",
)
async def get_image(request: Request, name: LibraryName, id: ImageId) -> dict[str, Any]:
    return image_body(await run_in_threadpool(store_of(request).get_image, name, id))


@router.get(
    "/libraries/{name}/images/{id}/thumbnail",
    response_class=Response,
    responses={
        **documented({}, [*READ_ERRORS, "image_not_found", "thumbnail_not_found"], write=False),
        200: {"content": {THUMBNAIL_MEDIA_TYPE: {"example": "(WebP bytes)"}}, "description": "The thumbnail."},
    },
    summary="Get an image's thumbnail (WebP, 160 px)",
)
async def get_thumbnail(request: Request, name: LibraryName, id: ImageId) -> Response:
    thumbnail = await run_in_threadpool(store_of(request).get_thumbnail, name, id)
    return Response(thumbnail, media_type=THUMBNAIL_MEDIA_TYPE, headers={"cache-control": "private, max-age=300"})


@writes.patch(
    "/libraries/{name}/images/{id}",
    response_model=ImageResponse,
    responses=documented(
        IMAGE_ANSWERS,
        [*WRITE_ERRORS, "image_not_found", "invalid_metadata", "metadata_too_large", "library_busy"],
        write=True,
    ),
    summary="Replace an image's metadata",
    description="The metadata is replaced whole, under the same rules as at add; the vector and create time stay.",
)
async def update_image(
    request: Request,
    name: LibraryName,
    id: ImageId,
    body: Annotated[UpdateImageRequest, Body(openapi_examples=UPDATE_EXAMPLES)],
) -> dict[str, Any]:
    image = await run_in_threadpool(store_of(request).update_metadata, name, id, body.metadata)
    return image_body(image)


@writes.delete(
    "/libraries/{name}/images/{id}",
    response_model=ImageDeletedResponse,
    responses=documented(IMAGE_DELETED_ANSWERS, [*WRITE_ERRORS, "image_not_found", "library_busy"], write=True),
    summary="Delete an image",
)
async def delete_image(request: Request, name: LibraryName, id: ImageId) -> dict[str, Any]:
    await run_in_threadpool(store_of(request).delete_image, name, id)
    return {"id": id, "deleted": True}


BY_FILTER_ERRORS = [*READ_ERRORS, "invalid_filter", "scan_too_large", "store_error", "library_busy"]


@router.post(
    "/libraries/{name}/count",
    response_model=CountResponse,
    responses=documented(COUNT_ANSWERS, BY_FILTER_ERRORS, write=False),
    summary="Count the images that pass a filter",
    description="The images of the library that pass `filter` (all of them without one). A filter reads the "
    "whole library (at most `IMSIM_MAX_SCAN_IMAGES` images: 10,000 on S3 Vectors, no bound locally) and is "
    "evaluated the same way on both stores.",
)
async def count_images(
    request: Request, name: LibraryName, body: Annotated[CountRequest, Body(openapi_examples=COUNT_EXAMPLES)]
) -> dict[str, Any]:
    count = await run_in_threadpool(store_of(request).count_images, name, body.filter)
    return {"count": count}


@writes.post(
    "/libraries/{name}/delete-images",
    response_model=DeleteImagesResponse,
    responses=documented(DELETE_IMAGES_ANSWERS, [*BY_FILTER_ERRORS, "storage_full"], write=True),
    summary="Delete the images that pass a filter (dry_run: count them)",
    description="Deletes every image that passes `filter` (`{}`: every image) while it holds the library: "
    "writes that arrive meanwhile wait and are not deleted. `dry_run: true` answers the count and deletes "
    "nothing; between a dry run and the delete, other writes may change what matches.",
)
async def delete_images(
    request: Request,
    name: LibraryName,
    body: Annotated[DeleteImagesRequest, Body(openapi_examples=DELETE_IMAGES_EXAMPLES)],
) -> dict[str, Any]:
    done = await run_in_threadpool(lambda: store_of(request).delete_images(name, body.filter, dry_run=body.dry_run))
    return {"count": done.count, "deleted": done.deleted, "dry_run": body.dry_run}


SEARCH_DOC = """Search by an image (`url` or `img`), by `text`, or by a stored image's `id` ("more like this":
that image is left out): the `top_k` best matches, best first, scored (1 + cosine) / 2. `filter` takes the
S3 Vectors filter language over top-level metadata (`$eq $ne $gt $gte $lt $lte $in $nin $exists $and $or`).

More like these, not those: `positive` and `negative` lists of examples (each an `id`, `url`, `img` or
`text`) instead of one input; the query is normalise(2 x mean(positive) - mean(negative)), and the stored
examples are left out. `group_by` a metadata key: the best `per_group` (default 1) of each value, `top_k`
groups, best group first, in `groups`."""


@router.post(
    "/libraries/{name}/search",
    response_model=SearchResponse,
    response_model_exclude_unset=True,  # "groups" only in a grouped search's answer
    responses=documented(
        SEARCH_ANSWERS,
        [*READ_ERRORS, "invalid_filter", "image_not_found", "model_version_mismatch", "store_error", "library_busy"],
        write=False,
    ),
    summary="Search a library by image, text or stored image",
    description=SEARCH_DOC,
)
async def search(
    request: Request, name: LibraryName, body: Annotated[SearchRequest, Body(openapi_examples=SEARCH_EXAMPLES)]
) -> dict[str, Any]:
    store, embedder = store_of(request), embedder_of(request)
    # The store checks these too; first spares the fetch and embedding.
    top_k = store.check_top_k(body.top_k if body.top_k is not None else embedder.settings.default_top_k)
    check_score(body.min_score, "min_score")
    check_grouping(body.group_by, body.per_group)
    version, min_score, conditions = embedder.model_version, body.min_score, body.filter
    group_by, per_group = body.group_by, body.per_group
    if body.positive is not None or body.negative is not None:
        if any(value is not None for value in (body.url, body.img, body.text, body.id)):
            raise BadRequest(
                "request body: give positive / negative examples or one of url, img, text or id, not both",
                code="ambiguous_input",
            )
        positive, negative = examples_of(body.positive, "positive"), examples_of(body.negative, "negative")
        found = await run_in_threadpool(
            lambda: search_by_examples(
                store,
                embedder,
                name,
                positive,
                negative,
                top_k=top_k,
                min_score=min_score,
                filter=conditions,
                group_by=group_by,
                per_group=per_group,
            )
        )
        return search_body(found, version)
    if body.id is not None:
        if any(value is not None for value in (body.url, body.img, body.text)):
            raise BadRequest("request body: give only one of url or img or text or id", code="ambiguous_input")
        image_id = body.id
        found = await run_in_threadpool(
            lambda: store.search_like(
                name,
                image_id,
                model_version=version,
                top_k=top_k,
                min_score=min_score,
                filter=conditions,
                group_by=group_by,
                per_group=per_group,
            )
        )
    else:
        item = slot_input({"url": body.url, "img": body.img, "text": body.text}, SLOT_FIELDS, "request body")
        found = await run_in_threadpool(
            lambda: store.search(
                name,
                embed_one(embedder, item),
                model_version=version,
                top_k=top_k,
                min_score=min_score,
                filter=conditions,
                group_by=group_by,
                per_group=per_group,
            )
        )
    return search_body(found, version)


def examples_of(given: list[ExampleInput] | None, field: str) -> list[Example]:
    """A ``positive`` / ``negative`` list as examples: each exactly one of id, url, img or text."""
    examples = []
    for position, example in enumerate(given or []):
        label = f"{field}[{position}]"
        if all(value is None for value in (example.id, example.url, example.img, example.text)):
            raise BadRequest(f"{label}: give one of id, url, img or text", code="missing_input")
        if example.id is not None:
            if any(value is not None for value in (example.url, example.img, example.text)):
                raise BadRequest(f"{label}: give only one of id or url or img or text", code="ambiguous_input")
            examples.append(Example(label, image_id=example.id))
            continue
        fields = {kind: f"{label}.{kind}" for kind in SLOT_FIELDS}
        values: dict[str, str | bytes | None] = {"url": example.url, "img": example.img, "text": example.text}
        examples.append(Example(label, source=slot_input(values, fields, label)))
    return examples


router.include_router(writes)


# --- bodies ------------------------------------------------------------------------------


def embed_one(embedder: Embedder, item: Input) -> np.ndarray:
    vector: np.ndarray = embedder.embed([item], INTERACTIVE)[0]
    return vector


def library_body(library: Library) -> dict[str, Any]:
    return {
        "name": library.name,
        "create_time": utc(library.create_time),
        "image_count": library.image_count,
        "model_version": library.model_version,
        "thumbnails": library.thumbnails,
        "threshold": library.threshold,
    }


def image_body(image: Image) -> dict[str, Any]:
    return {"id": image.id, "metadata": image.metadata, "create_time": utc(image.create_time)}


def match_body(match: Match) -> dict[str, Any]:
    return {"id": match.id, "score": match.score, "metadata": match.metadata}


def search_body(found: SearchResult, model_version: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "matches": [match_body(match) for match in found.matches],
        "partial": found.partial,
        "model_version": model_version,
    }
    if found.groups is not None:
        body["groups"] = [group_body(group) for group in found.groups]
    return body


def group_body(group: Group) -> dict[str, Any]:
    return {"value": group.value, "matches": [match_body(match) for match in group.matches]}
