"""``python -m runtime import SOURCE --library NAME``: many images into a library, with a progress bar.

SOURCE is a local folder (recursive, image files only), a JSONL manifest (a local file, s3:// or
https://) or an ``s3://`` prefix. Two ways to run it:

- directly on a data directory (default, ``--data-dir``): the import runs in this process, exactly as
  the server's import job does (the server must not be running on the same directory);
- against a running API (``--api URL``, SigV4-signed with ``--sigv4``): an s3:// prefix or a remote
  manifest becomes a server-side import followed to its end; a folder or a local manifest is sent
  image by image through the single add (8 at a time).

At the end: a summary, a results file listing each failure (JSONL), and exit code 1 when items
failed (2 when the import itself could not run). Running the same import again skips the ids
already present.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runtime.settings import Settings

API_WORKERS = 8
POLL_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a folder, a JSONL manifest (file, s3:// or https://) or an s3:// prefix")
    parser.add_argument("--library", required=True, help="the library to fill")
    parser.add_argument("--create", action="store_true", help="create the library if it does not exist")
    parser.add_argument("--api", help="base URL of a running API (default: import directly into --data-dir)")
    parser.add_argument("--sigv4", action="store_true", help="sign requests to --api with your AWS credentials")
    parser.add_argument("--region", help="AWS Region of the API, for --sigv4 (default: your AWS configuration's)")
    parser.add_argument("--no-dedup", dest="dedup", action="store_false", help="add near-duplicates too")
    parser.add_argument("--threshold", type=float, help="near-duplicate score threshold (default 0.97)")
    parser.add_argument("--results", help="where to write the failures (default import-results-<time>.jsonl)")
    parser.add_argument("--data-dir", help="the data directory to import into (default ./data)")
    for flag in ("--model", "--pretrained", "--weights", "--model-config", "--model-dir", "--device", "--engine"):
        parser.add_argument(flag, help="the model, as for serve (direct import only)")
    parser.add_argument("--smoke", action="store_true", help="random weights (direct import only)")


def run(args: argparse.Namespace) -> int:
    results_path = Path(args.results or f"import-results-{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    from runtime.errors import ModelUnavailable, SettingsError

    try:
        summary = via_api(args) if args.api else direct(args)
    except (ImportFailed, SettingsError, ModelUnavailable) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    failures = summary.pop("failures")
    with open(results_path, "w", encoding="utf-8") as out:
        for failure in failures:
            out.write(json.dumps(failure, ensure_ascii=False) + "\n")
    counts = ", ".join(f"{name} {value}" for name, value in summary.items())
    print(f"import into {args.library!r}: {counts}")
    if failures:
        print(f"{len(failures)} failed item(s) listed in {results_path}")
    return 1 if failures else 0


class ImportFailed(Exception):
    """The import could not run at all (no such library, the API refused it...)."""


def source_of(source: str) -> dict[str, str]:
    if source.startswith("s3://"):
        return {"manifest": source} if source.endswith((".jsonl", ".json")) else {"source": source}
    if source.startswith(("https://", "http://")):
        return {"manifest": source}
    if Path(source).is_dir():
        return {"folder": str(Path(source).resolve())}
    if Path(source).is_file():
        return {"manifest": str(Path(source).resolve())}
    raise ImportFailed(f"source: {source} is not a folder, a file, an s3:// prefix or an https:// manifest")


def progress_bar(total: int | None):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", dynamic_ncols=True, smoothing=0.1)


# --- directly on a data directory ------------------------------------------------------------


def direct(args: argparse.Namespace) -> dict[str, Any]:
    from runtime.engines import load_engine
    from runtime.errors import ApiError
    from runtime.libraries.imports.jobs import RESULTS_FILE, FileJobs, ImportJob, new_import_id
    from runtime.libraries.imports.runner import ImportRunner
    from runtime.libraries.local import LocalStore

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
    settings = Settings.from_env(labels=flag_of_field, **overrides, smoke=args.smoke or None)
    engine = load_engine(settings)
    store = LocalStore(settings, engine.dimension)
    try:
        ensure_library(store, args.library, engine.model_version, create=args.create)
        jobs = FileJobs(settings.data_dir)
        import_id = new_import_id()
        job = ImportJob(
            import_id,
            args.library,
            source_of(args.source),
            dedup=args.dedup,
            threshold=args.threshold,
            batch_size=settings.import_batch,
            results=str(jobs.folder_of(import_id) / RESULTS_FILE),
        )
        jobs.save(job)
        bar = progress_bar(None)

        def advance(current, result: dict[str, Any]) -> None:
            bar.total = current.total
            bar.update(result["processed"])

        try:
            job = ImportRunner(settings, engine, store, jobs).run(job, progress=advance)
        finally:
            bar.close()
        if job.status == "failed":
            raise ImportFailed(job.error)
        return {"total": job.total, **job.counts, "failures": jobs.failures(job.import_id)}
    except ApiError as exc:
        raise ImportFailed(exc.message) from exc
    finally:
        store.close()


def ensure_library(store, name: str, model_version: str, *, create: bool) -> None:
    from runtime.errors import NotFound

    try:
        store.get_library(name)
    except NotFound:
        if not create:
            raise
        store.create_library(name, model_version)


# --- against a running API -------------------------------------------------------------------


class Api:
    def __init__(self, base: str, *, sigv4: bool, region: str | None):
        import httpx

        self.base = base.rstrip("/")
        self.client = httpx.Client(timeout=60)
        self.signer = SigV4(region) if sigv4 else None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None):
        content = json.dumps(body).encode() if body is not None else None
        url = self.base + path
        headers = {"content-type": "application/json"} if content else {}
        if self.signer is not None:
            headers = self.signer.headers(method, url, content, headers)
        return self.client.request(method, url, content=content, headers=headers)


class SigV4:
    """Signs each request for API Gateway (``execute-api``) with the caller's AWS credentials."""

    def __init__(self, region: str | None):
        import boto3

        session = boto3.Session(region_name=region)
        self.credentials = session.get_credentials()
        self.region = session.region_name
        if self.credentials is None or not self.region:
            raise ImportFailed("--sigv4: no AWS credentials or Region found (aws configure, or --region)")

    def headers(self, method: str, url: str, content: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=content, headers=headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(request)
        return dict(request.headers.items())


def via_api(args: argparse.Namespace) -> dict[str, Any]:
    api = Api(args.api, sigv4=args.sigv4, region=args.region)
    library = args.library
    if api.call("GET", f"/libraries/{library}").status_code == 404 and args.create:
        created = api.call("POST", "/libraries", {"name": library})
        if created.status_code != 201:
            raise ImportFailed(created.json().get("message", created.text))
    source = source_of(args.source)
    if "folder" in source or not next(iter(source.values())).startswith(("s3://", "https://", "http://")):
        return single_adds(api, args, local_items(source))
    return server_side(api, args, source)


def server_side(api: Api, args: argparse.Namespace, source: dict[str, str]) -> dict[str, Any]:
    body = {**source, "dedup": args.dedup, "threshold": args.threshold}
    started = api.call("POST", f"/libraries/{args.library}/imports", body)
    if started.status_code != 202:
        raise ImportFailed(started.json().get("message", started.text))
    job = started.json()
    bar = progress_bar(None)
    try:
        while True:
            bar.total = job["counts"]["total"]
            bar.update(job["counts"]["processed"] - bar.n)
            if job["status"] != "running":
                break
            time.sleep(POLL_S)
            job = api.call("GET", f"/libraries/{args.library}/imports/{job['import_id']}").json()
    finally:
        bar.close()
    if job["status"] == "failed":
        raise ImportFailed(job["error"])
    print(f"per-item results: {job['results']}")
    return {**job["counts"], "failures": job["failures"]}


def local_items(source: dict[str, str]) -> Iterator[Any]:
    from runtime.libraries.imports.sources import folder_items, manifest_items

    if "folder" in source:
        return folder_items(source["folder"])
    return manifest_items(Path(source["manifest"]).read_bytes())


def single_adds(api: Api, args: argparse.Namespace, items: Iterator[Any]) -> dict[str, Any]:
    from runtime.libraries.imports.batches import HASH_ID_CHARS, content_hash

    listed = list(items)
    counts = dict.fromkeys(("processed", "added", "duplicates", "skipped", "failed"), 0)
    failures: list[dict[str, Any]] = []

    def add(item) -> tuple[Any, int, dict[str, Any]]:
        if item.problem is not None:
            return item, 400, item.problem
        body: dict[str, Any] = {"dedup": args.dedup, "threshold": args.threshold, "metadata": item.metadata}
        if "://" in item.location:
            body["url"], body["id"] = item.location, item.id
        else:
            data = Path(item.location).read_bytes()
            body["img"] = base64.b64encode(data).decode("ascii")
            body["id"] = item.id or content_hash(data)[:HASH_ID_CHARS]
        answer = api.call("POST", f"/libraries/{args.library}/images", body)
        return item, answer.status_code, answer.json()

    bar = progress_bar(len(listed))
    try:
        with ThreadPoolExecutor(API_WORKERS) as pool:
            for item, status, answer in pool.map(add, listed):
                counts["processed"] += 1
                bar.update(1)
                if status == 200:
                    counts["added" if answer.get("status") == 1 else "duplicates"] += 1
                elif answer.get("code") == "image_exists":
                    counts["skipped"] += 1
                elif answer.get("code") in ("library_not_found", "model_version_mismatch", "image_quota_exceeded"):
                    raise ImportFailed(answer["message"])
                else:
                    counts["failed"] += 1
                    field = answer.get("field") or answer.get("message", "").split(":", 1)[0]
                    failures.append({"item": item.name, "field": field, "code": answer.get("code"), **answer})
    finally:
        bar.close()
    return {"total": len(listed), **counts, "failures": failures}
