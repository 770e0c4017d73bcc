"""The ASGI app every backend serves: the local server, the Lambda handler, the SageMaker container."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.api.middleware import BodySizeLimit, InFlightLimit
from runtime.api.routes import explorer, imports, libraries, similarity
from runtime.embedder import Embedder
from runtime.engines import Engine, load_engine
from runtime.errors import ApiError, unparsable_body, validation_error
from runtime.libraries import open_store
from runtime.settings import Settings

log = logging.getLogger("runtime")

API_DESCRIPTION = """Image Similarity API: OpenCLIP vectors for images and texts, similarity of two inputs,
and image libraries searched by image or text.

Every error is `{"message", "code"}` with a 4xx status for bad input; `message` names the field."""


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    sagemaker: bool = False,
    serve_model: bool = True,
) -> FastAPI:
    """Build the app. ``sagemaker`` adds ``POST /invocations`` (the SageMaker container contract).

    ``serve_model=False`` loads no engine (the deployed API Explorer's function, which must not load
    a model): the route table is the same, but routes that need the model answer 503.
    """
    settings = settings or Settings.from_env()
    embedder = Embedder(settings, engine or load_engine(settings)) if serve_model else None

    app = FastAPI(
        title="Image Similarity API",
        version="1.0.0",
        description=API_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # the document is served by the API Explorer (runtime/api/explorer.py)
    )
    app.state.settings = settings
    app.state.embedder = embedder
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes, max_json_values=settings.max_json_values)
    if settings.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[settings.cors_origin],
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "Authorization", "X-Amz-Date", "X-Amz-Security-Token"],
        )
    # Added last, so outermost: a request over the in-flight limit is refused before its body is read.
    app.add_middleware(InFlightLimit, max_requests=settings.max_inflight_requests)
    _add_error_handlers(app)
    app.include_router(similarity.router)
    # Image libraries: the store opens lazily (first library request) and closes at shutdown.
    app.state.libraries = open_store(settings, embedder.engine.dimension) if embedder else None
    if app.state.libraries is not None:
        app.router.on_shutdown.append(app.state.libraries.close)
    app.include_router(libraries.router)
    imports.install(app)  # bulk imports: /libraries/{name}/imports
    if sagemaker:
        app.include_router(similarity.sagemaker_router)
    if settings.explorer:
        app.include_router(explorer.router)
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
        unparsable = unparsable_body(exc.__cause__)
        if unparsable is not None:
            return JSONResponse(unparsable.body(), status_code=unparsable.status_code)
        codes = {404: "route_not_found", 405: "method_not_allowed"}
        body = {"message": str(exc.detail), "code": codes.get(exc.status_code, "http_error")}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse({"message": "internal error", "code": "internal_error"}, status_code=500)
