"""``python -m runtime import``: many images into a library, with a progress bar.

    python -m runtime import SOURCE --library NAME [--create]   import a folder, a manifest or a prefix
    python -m runtime import --resume JOB                       go on with an interrupted import
    python -m runtime import status JOB | list | cancel JOB     look at, or stop, imports

SOURCE is a local folder (recursive; every file whose name is one of an image format the API decodes,
in any case), a JSONL manifest (a local ``.jsonl`` file, ``s3://`` or ``https://``) or an ``s3://``
prefix. It runs directly on a data directory (default, ``--data-dir``: in this process, as the
server's import job does; the server must not be running on the same directory), or against a
running API (``--api URL``; ``--sigv4`` or ``--api-key`` for a deployed one): there an ``s3://``
prefix or a remote manifest is a server-side import followed to its end, and a folder or a local
manifest is sent image by image through the single add. Both give the same library, the same
counts and the same messages.

Flags are checked before any work. Ctrl-C stops after the batches in flight and says how to resume.
At the end: one summary line, the failures in a file (only when some item failed: ``--results``, or
the job's folder in the data directory), and the exit code: 0, 1 when items failed, 2 when the
import could not run (a bad flag, no such library, a server that does not answer), 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from runtime.cli import api_imports
from runtime.cli.failures import ImportFailed, Interrupted, write_failures
from runtime.cli.progress import job_line, progress_bar
from runtime.libraries.imports.counts import summary_line

ACTIONS = ("status", "list", "cancel")
MANIFEST_SUFFIXES = (".jsonl", ".json", ".ndjson")
MODEL_FLAGS = ("--model", "--pretrained", "--weights", "--model-config", "--model-dir", "--device", "--engine")
INTERRUPTED = 130


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "import", help="import many images into a library", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("source", nargs="?", help="a folder, a JSONL manifest (file, s3://, https://), an s3:// prefix")
    parser.add_argument("job", nargs="?", help="the import id, after status or cancel")
    parser.add_argument("--library", help="the library to fill (or whose imports to list)")
    parser.add_argument("--create", action="store_true", help="create the library if it does not exist")
    parser.add_argument("--resume", metavar="JOB", help="go on with an interrupted import, by its id")
    parser.add_argument("--api", help="base URL of a running API (default: import directly into --data-dir)")
    parser.add_argument("--sigv4", action="store_true", help="sign requests to --api with your AWS credentials")
    parser.add_argument("--region", help="AWS Region of the API, for --sigv4 (default: your AWS configuration's)")
    parser.add_argument("--api-key", help="the API key of a deployment with API_KEY authorization")
    parser.add_argument("--no-dedup", dest="dedup", action="store_false", help="add duplicates too")
    parser.add_argument(
        "--threshold",
        type=float,
        help="also leave out similar images scoring at or above this, 0 to 1 (default: the library's, else none)",
    )
    parser.add_argument(
        "--allow-files",
        metavar="DIR",
        help="a local manifest may name files under DIR (bare paths, relative ones from DIR); without it, "
        "a line naming a local file is refused",
    )
    parser.add_argument("--results", metavar="FILE", help="where to list the failed items, if any")
    parser.add_argument("--data-dir", help="the data directory to import into (default ./data)")
    for flag in MODEL_FLAGS:
        parser.add_argument(flag, help="the model, as for serve (direct import only)")
    parser.add_argument("--smoke", action="store_true", help="random weights (direct import only)")


def run(args: argparse.Namespace) -> int:
    try:
        action = check_flags(args)
        if action in ACTIONS:
            return look(args, action)
        if args.api:
            counts, total, failures = api_imports.run(args)
        else:
            counts, total, failures = direct(args)
    except ImportFailed as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(stop.message, file=sys.stderr)
        return INTERRUPTED
    print(f"import into {args.library!r}: {summary_line(counts, total)}")
    if failures:
        where = write_failures(failures, args.results, default=failures_path(args))
        print(f"{len(failures)} failed item(s) listed in {where}")
    return 1 if failures else 0


# --- flags -----------------------------------------------------------------------------------------


def check_flags(args: argparse.Namespace) -> str:
    """What to do (``run``, ``resume`` or one of ACTIONS), once every flag is known to be usable."""
    from runtime.errors import ApiError
    from runtime.libraries.names import check_library_name
    from runtime.libraries.values import check_score

    action = args.source if args.source in ACTIONS else ("resume" if args.resume else "run")
    if action in ("status", "cancel") and not args.job:
        raise ImportFailed(f"import {action}: give the import's id (python -m runtime import list shows them)")
    if action not in ("status", "cancel") and args.job:
        raise ImportFailed(f"{args.job}: one source at a time")
    if action == "resume" and args.source:
        raise ImportFailed("--resume: the import already knows its source; give only its id")
    if action == "run" and not args.source:
        raise ImportFailed("give the SOURCE to import (a folder, a manifest or an s3:// prefix), or --resume JOB")
    if args.api:
        given = [flag for flag in (*MODEL_FLAGS, "--smoke") if getattr(args, flag[2:].replace("-", "_"))]
        if given:
            raise ImportFailed(f"{given[0]}: with --api the model is the server's")
        if action == "resume":
            raise ImportFailed("--resume: resumes a direct import; through --api, run the same command again")
    elif args.sigv4 or args.api_key or args.region:
        raise ImportFailed("--sigv4, --api-key and --region go with --api")
    try:
        check_score(args.threshold, "--threshold")
        if args.library is not None:
            args.library = check_library_name(args.library)
    except ApiError as exc:
        raise ImportFailed(exc.message.replace("name: ", "--library: ", 1)) from exc
    if action == "run" and args.library is None:
        raise ImportFailed("--library: give the library to import into")
    if action in ("run",):
        args.source_spec = with_allowed_files(source_of(args.source), args.allow_files)
    elif args.allow_files:
        raise ImportFailed("--allow-files: goes with the SOURCE it is for (a local manifest)")
    return action


def with_allowed_files(source: dict[str, str], allow_files: str | None) -> dict[str, str]:
    """A local manifest's source, with the folder its lines may name files under (``--allow-files``)."""
    if allow_files is None:
        return source
    if "://" in source.get("manifest", "://"):
        raise ImportFailed("--allow-files: goes with a local manifest file (a folder's files are its own)")
    if not Path(allow_files).is_dir():
        raise ImportFailed(f"--allow-files: {allow_files} is not a folder")
    return {**source, "allow_files": str(Path(allow_files).resolve())}


def source_of(source: str) -> dict[str, str]:
    """The import's source, refused at once when it cannot be one (a single image, a missing path)."""
    from runtime.inputs.images import IMAGE_SUFFIXES

    if source.startswith("s3://"):
        return {"manifest": source} if source.endswith(MANIFEST_SUFFIXES) else {"source": source}
    if source.startswith(("https://", "http://")):
        return {"manifest": source}
    path = Path(source)
    if path.is_dir():
        return {"folder": str(path.resolve())}
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        raise ImportFailed(f"source: {source} is one image; give its folder, or add it with POST /libraries/*/images")
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return {"manifest": str(path.resolve())}
    if path.is_file():
        raise ImportFailed(f"source: {source} is not a JSONL manifest (.jsonl, one JSON object per line)")
    raise ImportFailed(f"source: {source} is not a folder, a file, an s3:// prefix or an https:// manifest")


# --- directly on a data directory -------------------------------------------------------------


def direct_settings(args: argparse.Namespace) -> Any:
    from runtime.errors import SettingsError
    from runtime.settings import Settings

    flag_of_field = {
        "model": "--model",
        "pretrained": "--pretrained",
        "weights": "--weights",
        "model_config_path": "--model-config",
        "model_dir": "--model-dir",
        "device": "--device",
        "engine": "--engine",
        "data_dir": "--data-dir",
    }
    overrides = {field: getattr(args, flag[2:].replace("-", "_")) for field, flag in flag_of_field.items()}
    try:
        return Settings.from_env(labels=flag_of_field, **overrides, smoke=args.smoke or None)
    except SettingsError as exc:
        raise ImportFailed(str(exc)) from exc


def direct(args: argparse.Namespace) -> tuple[dict[str, int], int | None, list[dict[str, Any]]]:
    from runtime.embedder import Embedder
    from runtime.engines import load_engine
    from runtime.errors import ApiError, ModelUnavailable
    from runtime.libraries.imports.jobs import FileJobs
    from runtime.libraries.local import LocalStore

    settings = direct_settings(args)
    jobs = FileJobs(settings.data_dir)
    job = resumable_job(jobs, args) if args.resume else None
    try:
        engine = load_engine(settings)
    except ModelUnavailable as exc:
        raise ImportFailed(str(exc)) from exc
    store = LocalStore(settings, engine.dimension)
    try:
        if job is None:
            job = new_job(store, jobs, args, engine.model_version, settings.import_batch)
        args.library, args.import_id = job.library, job.import_id
        job = run_to_end(Embedder(settings, engine), store, jobs, job, settings.data_dir)
        if job.status == "failed":
            raise ImportFailed(job.error or "the import failed")
        if job.status == "interrupted":  # a full disk: nothing of the batch was written
            raise ImportFailed(
                f"{job.error}; then go on with: python -m runtime import --resume {job.import_id} "
                f"--data-dir {settings.data_dir}"
            )
        return job.counts, job.total, jobs.failures(job.import_id)
    except ApiError as exc:
        raise ImportFailed(exc.message) from exc
    finally:
        store.close()


def new_job(store: Any, jobs: Any, args: argparse.Namespace, model_version: str, batch_size: int) -> Any:
    from runtime.errors import NotFound
    from runtime.libraries.imports.jobs import RESULTS_FILE, ImportJob, new_import_id

    try:
        store.get_library(args.library)
    except NotFound:
        if not args.create:
            raise ImportFailed(f"library {args.library!r} does not exist (add --create to create it)") from None
        store.create_library(args.library, model_version)
    import_id = new_import_id()
    job = ImportJob(
        import_id,
        args.library,
        args.source_spec,
        dedup=args.dedup,
        threshold=args.threshold,
        batch_size=batch_size,
        results=str(jobs.folder_of(import_id) / RESULTS_FILE),
    )
    return jobs.save(job)


def resumable_job(jobs: Any, args: argparse.Namespace) -> Any:
    from dataclasses import replace

    job = jobs.find(args.resume)
    if job is None:
        raise ImportFailed(f"--resume: no import {args.resume!r} in {jobs.folder.parent}")
    if job.finished:
        raise ImportFailed(f"--resume: import {args.resume} has already {job.status}")
    return jobs.save(replace(job, status="running"))


def run_to_end(embedder: Any, store: Any, jobs: Any, job: Any, data_dir: str) -> Any:
    """Runs the job in a thread, so that Ctrl-C here lets the batches in flight finish first."""
    from dataclasses import replace

    from runtime.libraries.imports.runner import ImportRunner

    stopping = threading.Event()
    outcome: dict[str, Any] = {}
    bar = progress_bar(None)

    def advance(current: Any, result: dict[str, Any]) -> None:
        bar.total = current.total
        bar.update(result["processed"])

    def work() -> None:
        outcome["job"] = ImportRunner(embedder, store, jobs).run(job, stopping=stopping, progress=advance)

    thread = threading.Thread(target=work, name="import")
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        bar.close()
        print("stopping: the batches in flight finish first...", file=sys.stderr)
        stopping.set()
        thread.join()
        stopped = jobs.save(replace(outcome["job"], status="interrupted"))
        done = stopped.counts.get("processed", 0)
        raise Interrupted(
            f"interrupted: {done} of {stopped.total} items done; go on with: "
            f"python -m runtime import --resume {stopped.import_id} --data-dir {data_dir}"
        ) from None
    finally:
        bar.close()
    return outcome["job"]


def failures_path(args: argparse.Namespace) -> Path | None:
    """Where a direct import lists its failures without ``--results``: its own folder in the data directory."""
    if args.api or not getattr(args, "import_id", None):
        return None
    from runtime.libraries.imports.jobs import FileJobs

    return FileJobs(direct_settings(args).data_dir).folder_of(args.import_id) / "failures.jsonl"


# --- status, list, cancel ---------------------------------------------------------------------


def look(args: argparse.Namespace, action: str) -> int:
    if args.api:
        return api_imports.look(args, action)
    from dataclasses import replace

    from runtime.libraries.imports.jobs import FileJobs

    jobs = FileJobs(direct_settings(args).data_dir)
    if action == "list":
        for listed in jobs.all():
            if args.library is None or listed.library == args.library:
                print(job_line(listed))
        return 0
    job = jobs.find(args.job)
    if job is None:
        raise ImportFailed(f"{args.job}: no such import in {jobs.folder.parent}")
    if action == "cancel":
        if job.finished:
            raise ImportFailed(f"import {job.import_id} has already {job.status}")
        job = jobs.save(replace(job, status="cancelled"))
    print(job_line(job))
    return 0
