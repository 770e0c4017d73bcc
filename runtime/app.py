"""The ASGI app every backend serves: the local server, the Lambda handler, the SageMaker container."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.api import similarity
from runtime.embedding import Embedder
from runtime.engines import Engine, load_engine
from runtime.errors import ApiError, validation_error
from runtime.limits import BodySizeLimit
from runtime.settings import Settings

log = logging.getLogger("runtime")

API_DESCRIPTION = """Image Similarity API: OpenCLIP vectors for images and texts, similarity of two inputs,
and image libraries searched by image or text.

Every error is `{"message", "code"}` with a 4xx status for bad input; `message` names the field."""


def create_app(
    settings: Settings | None = None, *, engine: Engine | None = None, sagemaker: bool = False
) -> FastAPI:
    """Build the app. ``sagemaker`` adds ``POST /invocations`` (the SageMaker container contract)."""
    settings = settings or Settings.from_env()
    engine = engine or load_engine(settings)
    embedder = Embedder(settings, engine)

    app = FastAPI(title="Image Similarity API", version="1.0.0", description=API_DESCRIPTION, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.embedder = embedder
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    _add_error_handlers(app)
    app.include_router(similarity.router)
    if sagemaker:
        app.include_router(similarity.sagemaker_router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = validation_error(exc.errors())
        return JSONResponse(error.body(), status_code=error.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "route_not_found", 405: "method_not_allowed"}
        body = {"message": str(exc.detail), "code": codes.get(exc.status_code, "http_error")}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"message": "internal error", "code": "internal_error"}, status_code=500)
