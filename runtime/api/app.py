"""The ASGI app every backend serves: the local server, the Lambda handler, the SageMaker container."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from runtime.api.bodies import body_model
from runtime.api.doors import API_KEY_HEADER, LocalDoors, local_doors
from runtime.api.field_hints import request_error
from runtime.api.middleware import BodySizeLimit, EncodedSlashRefusal, InFlightLimit
from runtime.api.openai_errors import OpenAIErrorShape
from runtime.api.query_check import refuse_unknown_query
from runtime.api.request_log import RequestLog
from runtime.api.routes import (
    explorer,
    home,
    imports,
    libraries,
    library_duplicates,
    library_export,
    library_page,
    openai_embeddings,
    similarity,
)
from runtime.embedder import Embedder
from runtime.engines import Engine, load_engine
from runtime.errors import ApiError, unparsable_body
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
    served_on: str | None = None,
) -> FastAPI:
    """Build the app. ``sagemaker`` adds ``POST /invocations`` (the SageMaker container contract).

    ``served_on``: the address the local server listens on (``python -m runtime serve`` gives it);
    the app then checks the local server's doors (Host, cross-site writes, API key: runtime/api/doors.py).

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
        dependencies=[Depends(refuse_unknown_query)],
    )
    app.state.settings = settings
    app.state.embedder = embedder
    # Innermost: a request counts against the in-flight limit only once its body has arrived.
    app.add_middleware(InFlightLimit, max_requests=settings.max_inflight_requests)
    if settings.cors_origin:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[settings.cors_origin],
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Content-Type", "Authorization", "X-Amz-Date", "X-Amz-Security-Token", API_KEY_HEADER],
        )
    # Added last, so outermost: bodies are read (within body_timeout_s) before anything else runs.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        max_json_values=settings.max_json_values,
        timeout_s=settings.body_timeout_s,
    )
    if served_on is not None:  # before any body is read
        app.add_middleware(LocalDoors, doors=local_doors(settings, served_on))
    app.add_middleware(EncodedSlashRefusal)
    app.add_middleware(OpenAIErrorShape)  # /v1/ answers its errors as OpenAI's SDKs read them
    app.add_middleware(RequestLog)  # outermost: logs and counts every answer, the limits' too
    _add_error_handlers(app)
    app.include_router(home.router)
    app.include_router(similarity.router)
    app.include_router(openai_embeddings.router)
    # Image libraries: the store opens on the first library request (serve opens it at start-up) and closes at shutdown.
    app.state.libraries = open_store(settings, embedder.engine.dimension) if embedder else None
    if app.state.libraries is not None:
        app.router.on_shutdown.append(app.state.libraries.close)
    app.include_router(libraries.router)
    app.include_router(library_duplicates.router)
    app.include_router(library_export.router)  # export
    app.include_router(library_export.writes)  # restore
    imports.install(app)  # bulk imports: /libraries/{name}/imports
    if sagemaker:
        app.include_router(similarity.sagemaker_router)
    if settings.explorer:
        app.include_router(explorer.router)
        app.include_router(library_page.router)
    return app


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this request's path.

    FastAPI has one route per method and Starlette's 405 names only the first route whose path
    matched; the routers here are included without a prefix, so each route's own path pattern applies.
    """
    path = request.scope["path"]
    methods = {
        method
        for route in leaf_routes(request.app.router.routes)
        if route.path_regex.match(path)
        for method in route.methods or ()
    }
    return sorted(methods | {"OPTIONS"})


def leaf_routes(routes: list[BaseRoute]) -> list[Route]:
    """Every route that answers methods, through the routers included in ``routes``."""
    leaves: list[Route] = []
    for route in routes:
        if isinstance(route, Route) and route.methods:
            leaves.append(route)
        children = getattr(route, "routes", None) or getattr(getattr(route, "original_router", None), "routes", None)
        if children:
            leaves.extend(leaf_routes(children))
    return leaves


def wrong_method(request: Request) -> Response:
    """``OPTIONS``: 204 with ``Allow``; any other method a path does not take: 405 with ``Allow``."""
    allow = ", ".join(allowed_methods(request))
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    body = {
        "message": f"{request.method} is not allowed on {request.url.path}; allowed: {allow}",
        "code": "method_not_allowed",
    }
    return JSONResponse(body, status_code=405, headers={"Allow": allow})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        route = request.scope.get("route")
        model = body_model(route.endpoint) if isinstance(route, APIRoute) else None
        error = request_error(exc.errors(), model)
        return JSONResponse(error.body(), status_code=error.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        unparsable = unparsable_body(exc.__cause__)
        if unparsable is not None:
            return JSONResponse(unparsable.body(), status_code=unparsable.status_code)
        if exc.status_code == 405:
            return wrong_method(request)
        codes = {400: "invalid_request", 404: "route_not_found"}
        body = {"message": str(exc.detail), "code": codes.get(exc.status_code, "invalid_request")}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        # Starlette raises the error again once this answer is sent, and uvicorn then closes the
        # connection: the header says so, so a keep-alive client does not send its next request into it.
        body = {"message": "internal error", "code": "internal_error"}
        return JSONResponse(body, status_code=500, headers={"Connection": "close"})
