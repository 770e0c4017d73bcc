"""``GET /libraries/{name}/duplicates``: the groups of duplicates a library holds (``runtime.libraries.duplicates``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from runtime.api.deps import embedder_of, store_of
from runtime.api.library_schemas import (
    DUPLICATES_ANSWERS,
    DUPLICATES_THRESHOLD_EXAMPLES,
    LIMIT_EXAMPLES,
    TOKEN_EXAMPLES,
    DuplicatesResponse,
)
from runtime.api.routes.libraries import READ_ERRORS, TAGS, LibraryName, documented
from runtime.libraries.duplicates import find_duplicates, page_of
from runtime.libraries.store import MAX_PAGE, Stored

router = APIRouter(tags=TAGS)

DUPLICATES_DOC = """Groups of the duplicates the library holds, by tier: `exact` (the same file) and `copy` (the
same picture re-encoded or resized), from the stored hashes; with `threshold`, `similar` too (images scoring
at or above it: one search per image). Each group names a `keeper`: the largest picture, then the one with
the most metadata. Images added before perceptual hashes were kept are never copies. Paged like listing:
`limit` groups a page, `next_token` for the next (each page scans the library again)."""


@router.get(
    "/libraries/{name}/duplicates",
    response_model=DuplicatesResponse,
    responses=documented(
        DUPLICATES_ANSWERS, [*READ_ERRORS, "invalid_next_token", "model_version_mismatch", "store_error"], write=False
    ),
    summary="Find the duplicates a library holds, in groups by tier",
    description=DUPLICATES_DOC,
)
async def list_duplicates(
    request: Request,
    name: LibraryName,
    threshold: Annotated[
        float | None,
        Query(
            ge=0,
            le=1,
            description="Also group `similar` images: those scoring at or above this (0 to 1).",
            openapi_examples=DUPLICATES_THRESHOLD_EXAMPLES,
        ),
    ] = None,
    limit: Annotated[
        int,
        Query(ge=1, le=MAX_PAGE, description=f"Groups per page, 1 to {MAX_PAGE}.", openapi_examples=LIMIT_EXAMPLES),
    ] = 100,
    next_token: Annotated[
        str | None, Query(description="The `next_token` of the previous page.", openapi_examples=TOKEN_EXAMPLES)
    ] = None,
) -> dict[str, Any]:
    store, version = store_of(request), embedder_of(request).model_version

    def scan() -> dict[str, Any]:
        groups = find_duplicates(store, name, model_version=version, threshold=threshold)
        page = page_of(groups, limit, next_token, store.get_library(name).image_count)
        return {
            "groups": [
                {
                    "tier": group.tier,
                    "keeper": image_body(group.keeper),
                    "others": [image_body(o) for o in group.others],
                }
                for group in page.groups
            ],
            "next_token": page.next_token,
            "scanned": page.scanned,
        }

    return await run_in_threadpool(scan)


def image_body(image: Stored) -> dict[str, Any]:
    width, height = image.size or (None, None)
    return {"id": image.image.id, "metadata": image.image.metadata, "width": width, "height": height}
