"""``/libraries/{name}/export`` and ``/libraries/{name}/restore``: a library as JSONL, and back.

The format and the restore are ``runtime.libraries.export``'s. An export streams (``application/x-ndjson``),
a page of the store at a time. A restore takes an export (or a part of one: the header line, then
image lines) as its body, within the request size limit (``max_request_bytes``); the CLI sends a
longer export in parts (``python -m runtime restore FILE --api URL``).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from runtime.api.bodies import JSON, body_kind
from runtime.api.deps import embedder_of, store_of
from runtime.api.library_schemas import NAME_DOC, NAME_EXAMPLES, STORE_FAULTS, WRITE_FAULTS, error_examples
from runtime.api.routes.libraries import LibraryWriteRoute
from runtime.api.schemas import Responses, error_responses
from runtime.errors import ApiError
from runtime.libraries.export import INVALID_EXPORT, MEDIA_TYPE, export_lines, restore

router = APIRouter(tags=["libraries"])
writes = APIRouter(tags=["libraries"], route_class=LibraryWriteRoute)
"""The restore: a library write, so its errors carry ``"status": -1`` as the other writes' do."""
LibraryName = Annotated[str, Path(description=NAME_DOC, openapi_examples=NAME_EXAMPLES)]
EXPORT_EXAMPLE = (
    '{"format":"imsim-library-export","format_version":1,"name":"products","model_version":"ViT-B-32/openai",'
    '"dimension":512,"create_time":1767225600.0,"image_count":1,"thumbnails":true}\n'
    '{"id":"sku-1","metadata":{"album":"2024"},"create_time":1767225601.5,"content_hash":"9f86d0...",'
    '"model_version":"ViT-B-32/openai","vector":"AACAPwAAAAA..."}\n'
    '{"format_end":true,"images":1}\n'
)
RESTORED_EXAMPLE = {
    "library": "products",
    "created": True,
    "complete": True,
    "counts": {"processed": 1, "added": 1, "already_present": 0, "failed": 0},
    "failures": [],
}


def documented(codes: list[str], answer: Responses, *, write: bool = False) -> Responses:
    examples = error_examples(codes, write=write)
    return {**answer, **error_responses(*sorted(examples), examples=examples)}


@router.get(
    "/libraries/{name}/export",
    response_class=StreamingResponse,
    responses=documented(
        ["invalid_library_name", "library_not_found", "libraries_disabled", *STORE_FAULTS],
        {200: {"content": {MEDIA_TYPE: {"example": EXPORT_EXAMPLE}}, "description": "The export, streamed."}},
    ),
    summary="Export a library as JSONL (streamed): settings, then each image with its vector",
    description="The header line (the library's settings), one line an image (id, metadata, hashes, the vector "
    "as base64 little-endian float32, the model version, the thumbnail when kept), and an end line. "
    "Restore it with `POST /libraries/{name}/restore` (docs/libraries.md, 'Export and restore').",
)
async def export_library(request: Request, name: LibraryName) -> StreamingResponse:
    store = store_of(request)
    library = await run_in_threadpool(store.get_library, name)  # a 404 before the stream starts
    return StreamingResponse(
        export_lines(store, library.name),  # a generator: Starlette iterates it in the thread pool
        media_type=MEDIA_TYPE,
        headers={"content-disposition": attachment(library.name)},
    )


def attachment(name: str) -> str:
    """The file name of the download: headers are Latin-1, a library name need not be (RFC 6266's
    ``filename*`` carries it in UTF-8, ``filename`` an ASCII fallback)."""
    fallback = name if name.isascii() else "library"
    return f"attachment; filename=\"{fallback}.jsonl\"; filename*=UTF-8''{quote(name)}.jsonl"


@writes.post(
    "/libraries/{name}/restore",
    responses=documented(
        ["invalid_library_name", "libraries_disabled", INVALID_EXPORT, "model_version_mismatch", *WRITE_FAULTS],
        {200: {"content": {"application/json": {"example": RESTORED_EXAMPLE}}, "description": "What was restored."}},
        write=True,
    ),
    summary="Restore an export into a library (no model work: the vectors are taken as they are)",
    description="The body is an export (`application/x-ndjson`), or a part of one that starts with its header "
    "line. The library is created from the header when absent; the export's model version must be the "
    "server's and the library's (409 `model_version_mismatch` names both). Ids are kept; an id the library "
    "holds counts as `already_present`; a line that cannot be restored is listed in `failures` by its number "
    "(`first_line`: the number of the body's first line, for a part of a longer export).",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                MEDIA_TYPE: {
                    "schema": {"type": "string"},
                    "examples": {"export": {"summary": "An export of one image", "value": EXPORT_EXAMPLE}},
                }
            },
        }
    },
)
async def restore_library(
    request: Request,
    name: LibraryName,
    first_line: Annotated[int, Query(ge=1, description="The number of the body's first line in the export.")] = 1,
) -> dict[str, Any]:
    store, version = store_of(request), embedder_of(request).model_version
    if body_kind(request.headers.get("content-type")) != JSON:
        raise ApiError(
            f"Content-Type: give {MEDIA_TYPE} (an export's lines)", code="unsupported_media_type", status_code=415
        )
    body = await request.body()
    restored = await run_in_threadpool(
        lambda: restore(store, body.split(b"\n"), library=name, server_version=version, first_line=first_line)
    )
    return restored.body()
