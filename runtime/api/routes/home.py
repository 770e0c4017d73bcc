"""``GET /``: where to go from here (the explorer, the health check, the OpenAI-compatible route)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from runtime.api.deps import settings_of
from runtime.api.routes.explorer import DOCUMENT_PATH, EXPLORER_PATH
from runtime.api.schemas import EXAMPLE_VERSION, answer_examples

router = APIRouter(tags=["health"])
DOCS = "README.md and docs/ of the project's source; the explorer documents every route"
HOME_EXAMPLES = {
    "links": {
        "summary": "Links relative to the API's base URL",
        "value": {
            "name": "Image Similarity API",
            "model_version": EXAMPLE_VERSION,
            "links": {"ping": "ping", "explorer": "api-explorer", "openapi": "api-explorer/openapi.json"},
        },
    }
}


@router.get(
    "/", summary="Links to the explorer, the health check and the docs", responses=answer_examples(HOME_EXAMPLES)
)
async def home(request: Request) -> dict[str, Any]:
    """Links are relative (``ping``, not ``/ping``), so they hold under a deployed stage's path too."""
    links = {"ping": "ping", "embeddings": "v1/embeddings", "libraries": "libraries"}
    if settings_of(request).explorer:
        links |= {"explorer": EXPLORER_PATH.lstrip("/"), "openapi": DOCUMENT_PATH.lstrip("/")}
    embedder = request.app.state.embedder
    version = embedder.model_version if embedder is not None else None
    return {"name": "Image Similarity API", "model_version": version, "links": links, "docs": DOCS}
