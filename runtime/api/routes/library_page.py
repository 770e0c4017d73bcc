"""The library page: ``GET /libraries-ui``, a grid of what a library holds, searched by text, by an image
file or by a result, filtered on metadata, paged.

It is switched with the API Explorer (setting ``explorer``) and deployed the same way (the explorer's
function serves it; its calls go to the API's routes on the same origin). Its HTML, script and style
are files of this package (``runtime/api/pages/``): no CDN, no build step.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from runtime.api.deps import settings_of
from runtime.api.routes.explorer import EXPLORER_PATH, banners, request_base_url
from runtime.errors import NotFound

PAGE_PATH = "/libraries-ui"
ASSETS_PATH = f"{PAGE_PATH}/assets"
PAGES = Path(__file__).resolve().parents[1] / "pages"
ASSET_TYPES = {"library.js": "application/javascript; charset=utf-8", "library.css": "text/css; charset=utf-8"}
PAGE_EXAMPLE = "<!doctype html><html lang=en><head><title>Image libraries</title>..."

router = APIRouter(tags=["explorer"])


@router.get(
    PAGE_PATH,
    response_class=HTMLResponse,
    summary="The library page: search and browse a library",
    responses={200: {"content": {"text/html": {"example": PAGE_EXAMPLE}}}},
)
async def library_page(request: Request) -> HTMLResponse:
    return HTMLResponse(render_page(request), headers={"x-content-type-options": "nosniff"})


@router.get(f"{ASSETS_PATH}/{{name}}", include_in_schema=False)
async def library_page_asset(name: str) -> Response:
    if name not in ASSET_TYPES:
        raise NotFound(f"{ASSETS_PATH}/{name}: no such file")
    return Response(page_file(name), media_type=ASSET_TYPES[name], headers={"cache-control": "public, max-age=3600"})


def render_page(request: Request) -> str:
    settings = settings_of(request)
    base = urlsplit(request_base_url(request)).path.rstrip("/")
    asks_key = settings.auth == "API_KEY" or bool(settings.api_key)  # deployed, or serve --api-key
    config = {"base": base, "asks_key": asks_key}
    return (
        page_file("library.html")
        .decode()
        .format(
            css=html.escape(f"{base}{ASSETS_PATH}/library.css"),
            js=html.escape(f"{base}{ASSETS_PATH}/library.js"),
            explorer=html.escape(f"{base}{EXPLORER_PATH}"),
            banner=banners(settings),
            config=json.dumps(config).replace("<", "\\u003c"),
        )
    )


@lru_cache(maxsize=len(ASSET_TYPES) + 1)
def page_file(name: str) -> bytes:
    return (PAGES / name).read_bytes()
