"""What routes take from the app: its settings, its embedder and its library store, each with the
answer a route gives when the server runs without it."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from runtime.embedder import Embedder
from runtime.errors import ApiError, NotFound
from runtime.libraries.store import LibraryStore
from runtime.settings import Settings


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def embedder_of(request: Request) -> Embedder:
    embedder: Embedder | None = request.app.state.embedder
    if embedder is None:  # an app built with serve_model=False (the deployed API Explorer's function)
        message = "this function serves the API Explorer only; no model is loaded"
        raise ApiError(message, code="model_not_served", status_code=503)
    return embedder


def store_of(request: Request) -> LibraryStore[Any]:
    store: LibraryStore[Any] | None = getattr(request.app.state, "libraries", None)
    if store is None:
        raise NotFound("libraries are not enabled on this server (setting IMSIM_STORE)", code="libraries_disabled")
    return store
