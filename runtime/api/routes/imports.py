"""``/libraries/{name}/imports``: start, list, read and cancel bulk imports.

Locally an import runs in this process (``LocalImports``); on AWS (setting ``import_state_machine``)
POST starts a Step Functions execution and GET reads its job record (``StepFunctionsImports``).
Both answer the same bodies. ``install`` adds the routes and, locally, resumes at start-up the
imports a killed server left running.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from runtime.api.deps import embedder_of, store_of
from runtime.api.import_schemas import (
    FAILURES_ANSWERS,
    IMPORT_ANSWERS,
    IMPORT_EXAMPLES,
    LIST_ANSWERS,
    ImportFailuresResponse,
    ImportListResponse,
    ImportRequest,
    ImportResponse,
)
from runtime.api.library_schemas import (
    NAME_DOC,
    NAME_EXAMPLES,
    STORE_FAULTS,
    TOKEN_EXAMPLES,
    WRITE_FAULTS,
    error_examples,
    utc,
)
from runtime.api.schemas import Responses, answer_examples, error_responses
from runtime.errors import BadRequest
from runtime.libraries.imports.counts import summary
from runtime.libraries.imports.jobs import FileJobs, ImportJob
from runtime.libraries.imports.runner import LocalImports
from runtime.libraries.imports.service import ImportService

MAX_FAILURES_SHOWN = 100
"""A status shows the first 100 failures; the failures listing pages through all of them."""
MAX_FAILURES_PAGE = 1000
router = APIRouter(tags=["imports"])
LibraryName = Annotated[str, Path(description=NAME_DOC, openapi_examples=NAME_EXAMPLES)]
ImportId = Annotated[str, Path(description="The import's id (from POST).")]


def documented(
    answers: dict[str, Any], *, status: int = 200, extra: tuple[str, ...] = (), writes: bool = False
) -> Responses:
    """``responses=``: examples of the answer, and of the errors (library ones and the imports' own);
    ``writes``: the route writes the job's record, so a full disk is among them."""
    library_codes = ["invalid_library_name", "library_not_found", "libraries_disabled"]
    examples = error_examples([*library_codes, *(WRITE_FAULTS if writes else STORE_FAULTS)], write=False)
    own = {
        "import_not_found": (404, "No such import", "library 'products' has no import with id '5f0c6e0a'"),
        "import_finished": (409, "Already finished", "import '5f0c6e0a' has already succeeded"),
        "url_refused": (400, "Bucket not allowed", "source: bucket 'other' is not one this deployment may read"),
        "invalid_next_token": (400, "Not a token", "next_token: not a token this API gave"),
    }
    for code in ("url_refused", *extra):
        code_status, summary, message = own[code]
        examples.setdefault(code_status, {})[code] = {"summary": summary, "value": {"message": message, "code": code}}
    return {**answer_examples(answers, status), **error_responses(*sorted(examples), examples=examples)}


def install(app: FastAPI) -> None:
    app.include_router(router)
    settings = app.state.settings
    if app.state.libraries is not None and not settings.import_state_machine:
        app.router.on_startup.append(lambda: local_imports(app).resume())
        # First at shutdown, before the store closes: running imports pause and resume at the next start.
        app.router.on_shutdown.insert(0, lambda: local_imports(app).stop())


def local_imports(app: FastAPI) -> LocalImports:
    service = imports_of_app(app)
    assert isinstance(service, LocalImports)  # install() asks only where imports run in this process
    return service


def imports_of_app(app: FastAPI) -> ImportService:
    service: ImportService | None = getattr(app.state, "imports", None)
    if service is None:
        settings = app.state.settings
        if settings.import_state_machine:
            from runtime.libraries.imports.aws import StepFunctionsImports

            service = StepFunctionsImports(settings, app.state.libraries)
        else:
            service = LocalImports(app.state.embedder, app.state.libraries)
        app.state.imports = service
    return service


def forget_imports(app: FastAPI, library: str) -> None:
    """A deleted library's imports stop, and their records and files go with it."""
    settings = app.state.settings
    if getattr(app.state, "embedder", None) is None and not settings.import_state_machine:
        jobs = FileJobs(settings.data_dir)  # no model served: no import runs here, files may be left
        for job in jobs.list_jobs(library):
            jobs.remove(job.import_id)
        return
    imports_of_app(app).forget_library(library)


def imports_of(request: Request) -> ImportService:
    store_of(request)  # libraries off: the same 404 as every library route
    embedder_of(request)
    return imports_of_app(request.app)


@router.post(
    "/libraries/{name}/imports",
    status_code=202,
    response_model=ImportResponse,
    responses=documented(IMPORT_ANSWERS, status=202, writes=True),
    summary="Import many images (an S3 prefix or a JSONL manifest)",
    description="Starts the import and answers at once (202). Follow it with GET; "
    "each item that cannot be added is listed with the reason a single add would give.",
)
async def start_import(
    request: Request, name: LibraryName, body: Annotated[ImportRequest, Body(openapi_examples=IMPORT_EXAMPLES)]
) -> dict[str, Any]:
    service = imports_of(request)
    given = {key: value for key, value in (("source", body.source), ("manifest", body.manifest)) if value is not None}
    if len(given) != 1:
        raise BadRequest(
            "request body: give one of source (an s3:// prefix) or manifest (a JSONL URL)", code="missing_input"
        )
    job = await run_in_threadpool(service.start, name, given, dedup=body.dedup, threshold=body.threshold)
    return job_body(job, [])


@router.get(
    "/libraries/{name}/imports",
    response_model=ImportListResponse,
    responses=documented(LIST_ANSWERS),
    summary="List a library's imports",
)
async def list_imports(request: Request, name: LibraryName) -> dict[str, Any]:
    service = imports_of(request)
    await run_in_threadpool(store_of(request).get_library, name)
    jobs = await run_in_threadpool(service.list_jobs, name)
    return {"imports": [job_body(job, []) for job in jobs]}


@router.get(
    "/libraries/{name}/imports/{import_id}",
    response_model=ImportResponse,
    responses=documented(IMPORT_ANSWERS, extra=("import_not_found",)),
    summary="Get an import: status, counts, failures",
)
async def get_import(request: Request, name: LibraryName, import_id: ImportId) -> dict[str, Any]:
    service = imports_of(request)
    await run_in_threadpool(store_of(request).get_library, name)
    job = await run_in_threadpool(service.get, name, import_id)
    failures = await run_in_threadpool(service.failures, job, MAX_FAILURES_SHOWN)
    return job_body(job, failures)


@router.get(
    "/libraries/{name}/imports/{import_id}/failures",
    response_model=ImportFailuresResponse,
    responses=documented(FAILURES_ANSWERS, extra=("import_not_found", "invalid_next_token")),
    summary="List an import's failed items, a page at a time",
    description="Every item the import could not add, in the order they failed, with its position in the "
    "source; `next_token` from one answer gives the next page (while the import runs, pages keep coming).",
)
async def list_failures(
    request: Request,
    name: LibraryName,
    import_id: ImportId,
    limit: Annotated[
        int, Query(ge=1, le=MAX_FAILURES_PAGE, description=f"Failures per page, 1 to {MAX_FAILURES_PAGE}.")
    ] = 100,
    next_token: Annotated[
        str | None, Query(description="The `next_token` of the previous page.", openapi_examples=TOKEN_EXAMPLES)
    ] = None,
) -> dict[str, Any]:
    service = imports_of(request)
    await run_in_threadpool(store_of(request).get_library, name)
    job = await run_in_threadpool(service.get, name, import_id)
    found, following = await run_in_threadpool(service.failures_page, job, limit, next_token)
    return {
        "failures": [failure_body(one) | {"position": one.get("position")} for one in found],
        "next_token": following,
    }


@router.delete(
    "/libraries/{name}/imports/{import_id}",
    response_model=ImportResponse,
    responses=documented(IMPORT_ANSWERS, extra=("import_not_found", "import_finished"), writes=True),
    summary="Cancel an import (the images already added stay)",
)
async def cancel_import(request: Request, name: LibraryName, import_id: ImportId) -> dict[str, Any]:
    service = imports_of(request)
    await run_in_threadpool(store_of(request).get_library, name)
    job = await run_in_threadpool(service.cancel, name, import_id)
    return job_body(job, await run_in_threadpool(service.failures, job, MAX_FAILURES_SHOWN))


def job_body(job: ImportJob, failures: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "import_id": job.import_id,
        "library": job.library,
        "status": job.status,
        "source": job.source,
        "dedup": job.dedup,
        "threshold": job.threshold,
        "counts": summary(job.counts, job.total),
        "start_time": utc(job.start_time),
        "end_time": utc(job.end_time) if job.end_time is not None else None,
        "results": job.results,
        "error": job.error,
        "failures": [failure_body(one) for one in failures],
    }


def failure_body(failure: dict[str, Any]) -> dict[str, Any]:
    return {name: failure[name] for name in ("item", "field", "code", "message")}
