"""``python -m runtime import --api URL``: the same import against a running API (runtime/client.py).

An ``s3://`` prefix or a remote manifest becomes a server-side import followed to its end. A folder
or a local manifest is sent item by item through the single add (``API_WORKERS`` at a time), each
file as a multipart upload: the server reads it as a direct import reads it, so both give the same
library, the same counts and the same messages.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from runtime.cli.failures import ImportFailed, Interrupted
from runtime.cli.progress import job_line_of_answer, progress_bar
from runtime.errors import JOB_STOPPING_CODES, LIBRARY_NOT_FOUND

API_WORKERS = 8
POLL_S = 1.0


def client_of(args: argparse.Namespace) -> Any:
    from runtime.client import Client

    try:
        return Client(args.api, sigv4=args.sigv4, region=args.region, api_key=args.api_key)
    except ValueError as exc:
        raise ImportFailed(str(exc)) from exc


def answer_of(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ImportFailed(f"{response.request.url}: HTTP {response.status_code}, not an answer of this API")
    return body


def run(args: argparse.Namespace) -> tuple[dict[str, int], int | None, list[dict[str, Any]]]:
    from runtime.client import Unreachable

    api = client_of(args)
    try:
        ensure_library(api, args.library, create=args.create)
        source = args.source_spec
        if "folder" in source or "://" not in next(iter(source.values())):
            return single_adds(api, args, local_items(source))
        return server_side(api, args, source)
    except Unreachable as exc:
        raise ImportFailed(str(exc)) from exc
    finally:
        api.close()


def ensure_library(api: Any, library: str, *, create: bool) -> None:
    found = api.call("GET", f"/libraries/{library}")
    if found.status_code == 200:
        return
    if found.status_code == 404 and answer_of(found).get("code") == LIBRARY_NOT_FOUND:
        if not create:
            raise ImportFailed(f"library {library!r} does not exist (add --create to create it)")
        created = api.call("POST", "/libraries", {"name": library})
        if created.status_code != 201:
            raise ImportFailed(answer_of(created).get("message", created.text))
        return
    raise ImportFailed(answer_of(found).get("message", f"HTTP {found.status_code}"))


def server_side(
    api: Any, args: argparse.Namespace, source: dict[str, str]
) -> tuple[dict[str, int], int | None, list[dict[str, Any]]]:
    from runtime.libraries.imports.counts import counts_of_summary

    body = {**source, "dedup": args.dedup, "threshold": args.threshold}
    started = api.call("POST", f"/libraries/{args.library}/imports", body)
    if started.status_code != 202:
        raise ImportFailed(answer_of(started).get("message", started.text))
    job = answer_of(started)
    bar = progress_bar(None)
    try:
        while job["status"] == "running":
            bar.total = job["counts"]["total"]
            bar.update(job["counts"]["processed"] - bar.n)
            time.sleep(POLL_S)
            job = answer_of(api.call("GET", f"/libraries/{args.library}/imports/{job['import_id']}"))
    except KeyboardInterrupt:
        raise Interrupted(
            f"the import goes on on the server; see it with: python -m runtime import status {job['import_id']} "
            f"--library {args.library} --api {args.api}"
        ) from None
    finally:
        bar.close()
    if job["status"] == "failed":
        raise ImportFailed(job["error"])
    print(f"per-item results: {job['results']}")
    return counts_of_summary(job["counts"]), job["counts"]["total"], job["failures"]


def local_items(source: dict[str, str]) -> Iterator[Any]:
    from runtime.libraries.imports.sources import folder_items, manifest_file_items

    if "folder" in source:
        return folder_items(source["folder"])
    return manifest_file_items(source["manifest"], source.get("allow_files"))


def single_adds(
    api: Any, args: argparse.Namespace, items: Iterator[Any]
) -> tuple[dict[str, int], int | None, list[dict[str, Any]]]:
    from runtime.libraries.imports.counts import count_of_answer, zero_counts

    listed = list(items)
    counts = zero_counts()
    failures: list[dict[str, Any]] = []
    path = f"/libraries/{args.library}/images"

    def add(item: Any) -> tuple[Any, dict[str, Any] | None]:
        if item.ignored is not None or item.problem is not None:
            return item, None
        if "://" in item.location:
            body = {"url": item.location, "id": item.id, "metadata": item.metadata, **dedup_fields(args)}
            return item, answer_of(api.call("POST", path, body))
        fields = {"metadata": json.dumps(item.metadata), **{k: json.dumps(v) for k, v in dedup_fields(args).items()}}
        if item.id is not None:
            fields["id"] = item.id
        try:
            data = Path(item.location).read_bytes()
        except OSError as exc:  # the words a direct import uses (runtime/inputs/files.py)
            message = f"img: {item.location} cannot be read ({exc.strerror})"
            return item, {"status": -1, "code": "file_unreadable", "message": message}
        return item, answer_of(api.upload(path, data, fields, filename=Path(item.location).name))

    bar = progress_bar(len(listed))
    pool = ThreadPoolExecutor(API_WORKERS)
    try:
        for item, answer in pool.map(add, listed):
            counts["processed"] += 1
            bar.update(1)
            if item.ignored is not None:
                counts[f"ignored_{item.ignored}"] += 1
            elif item.problem is not None:
                counts["failed"] += 1
                failures.append({"item": item.name, "position": item.position, **item.problem})
            else:
                assert answer is not None
                if answer.get("code") in JOB_STOPPING_CODES:
                    raise ImportFailed(answer["message"])
                counts[count_of_answer(answer)] += 1
                if count_of_answer(answer) == "failed":
                    failures.append({"item": item.name, "position": item.position, **failure_of(answer)})
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        raise Interrupted(
            f"interrupted: {counts['processed']} of {len(listed)} items done; run the same command again "
            "to go on (what is stored is skipped)"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return counts, len(listed), failures


def dedup_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {"dedup": args.dedup}
    if args.threshold is not None:
        fields["threshold"] = args.threshold
    return fields


def failure_of(answer: dict[str, Any]) -> dict[str, Any]:
    """An add's error answer as an import failure: the words of ``sources.problem_of``."""
    from runtime.libraries.imports.sources import problem

    message = answer.get("message", "")
    return problem(message.split(":", 1)[0] if ":" in message else "img", answer.get("code", ""), message)


def look(args: argparse.Namespace, action: str) -> int:
    from runtime.client import Unreachable

    if args.library is None:
        raise ImportFailed(f"import {action} --api: give --library (imports are kept per library)")
    api = client_of(args)
    base = f"/libraries/{args.library}/imports"
    try:
        if action == "list":
            answer = api.call("GET", base)
            jobs = answer_of(answer).get("imports")
            if answer.status_code != 200 or jobs is None:
                raise ImportFailed(answer_of(answer).get("message", f"HTTP {answer.status_code}"))
        else:
            method = "DELETE" if action == "cancel" else "GET"
            answer = api.call(method, f"{base}/{args.job}")
            if answer.status_code != 200:
                raise ImportFailed(answer_of(answer).get("message", f"HTTP {answer.status_code}"))
            jobs = [answer_of(answer)]
    except Unreachable as exc:
        raise ImportFailed(str(exc)) from exc
    finally:
        api.close()
    for job in jobs:
        print(job_line_of_answer(job))
    return 0
