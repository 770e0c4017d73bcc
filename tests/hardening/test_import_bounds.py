"""Imports against the server as a separate process: what a status reads does not grow with the job,
and failures past the status's first ones are paged (issues 21 and 25)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.fakes.servers import FileServer

pytestmark = pytest.mark.slow

FAILING_LINES = 5_000
BAD_ID = "bad id " + "x" * 180
"""Refused by the id rules before anything is fetched: every line is a failure of ~600 bytes."""


def bytes_read(pid: int) -> int:
    """Every byte the process has read through read(2) and its kin (files and sockets)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/<pid>/io")


def failing_manifest(lines: int) -> bytes:
    return b"".join(
        json.dumps({"url": f"http://127.0.0.1:9/{n}.png", "id": f"{BAD_ID} {n}"}).encode() + b"\n" for n in range(lines)
    )


def run_import(client, library: str, body: dict, timeout: float = 120) -> dict:
    started = client.post(f"/libraries/{library}/imports", json=body)
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/libraries/{library}/imports/{started.json()['import_id']}").json()
        if job["status"] != "running" or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


@pytest.fixture(scope="module")
def failed_job(attacked_server):
    """A finished import of 5,000 lines that all failed: some 3 MB of failures on disk."""
    server, client = attacked_server
    files = FileServer({"/manifest.jsonl": (200, {}, failing_manifest(FAILING_LINES))})
    try:
        assert client.post("/libraries", json={"name": "bounded_status"}).status_code == 201
        job = run_import(client, "bounded_status", {"manifest": f"{files.base}/manifest.jsonl"})
    finally:
        files.close()
    assert job["status"] == "succeeded", job
    assert job["counts"]["failed"] == FAILING_LINES
    return server, client, job


def test_a_status_reads_the_same_few_bytes_however_many_items_failed(failed_job):
    server, client, job = failed_job
    failures_on_disk = sum(path.stat().st_size for path in Path(job["results"]).parent.glob("*.jsonl"))
    assert failures_on_disk > 2_000_000
    before = bytes_read(server.process.pid)
    answer = client.get(f"/libraries/bounded_status/imports/{job['import_id']}")
    read = bytes_read(server.process.pid) - before
    assert answer.status_code == 200
    assert len(answer.json()["failures"]) == 100
    # Before: every status parsed every batch's results (the whole 3 MB, and 2.7 GB of RSS at 1M lines).
    assert read < 200_000, f"a status read {read:,} bytes of {failures_on_disk:,}"
    assert len(answer.content) < 100_000


def test_every_failure_is_listed_once_page_by_page(failed_job):
    _, client, job = failed_job
    path = f"/libraries/bounded_status/imports/{job['import_id']}/failures"
    positions: list[int] = []
    token = None
    pages = 0
    while True:
        answer = client.get(path, params={"limit": 1000, **({"next_token": token} if token else {})})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        positions.extend(one["position"] for one in page["failures"])
        pages += 1
        token = page["next_token"]
        if token is None:
            break
    assert sorted(positions) == list(range(FAILING_LINES)) and pages <= FAILING_LINES // 1000 + 1
    first = page["failures"][-1] if page["failures"] else None
    assert first is None or (first["code"] == "invalid_image_id" and first["field"] == "id")


@pytest.mark.parametrize("token", ["not-a-token", "eyJhZnRlciI6N30", "eyJhZnRlciI6LTF9", "eyJhZnRlciI6dHJ1ZX0"])
def test_a_token_the_api_did_not_give_is_a_400(failed_job, token):
    """Garbage, an offset inside a line ({"after":7}), a negative one, and true."""
    _, client, job = failed_job
    answer = client.get(f"/libraries/bounded_status/imports/{job['import_id']}/failures", params={"next_token": token})
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_next_token", answer.text


def test_failures_named_by_long_urls_are_cut_in_the_status(attacked_server):
    """Lines under the 64 KiB cap, each a 60 KB URL without an id: before, each of the 100 failures
    shown repeated its whole URL (6 MB a status)."""
    _, client = attacked_server
    url = "http://127.0.0.1:9/" + "a" * 60_000
    lines = b"".join(json.dumps({"url": f"{url}{n}"}).encode() + b"\n" for n in range(150))
    files = FileServer({"/long.jsonl": (200, {}, lines)})
    try:
        assert client.post("/libraries", json={"name": "long_urls"}).status_code == 201
        job = run_import(client, "long_urls", {"manifest": f"{files.base}/long.jsonl"})
    finally:
        files.close()
    assert job["status"] == "succeeded" and job["counts"]["failed"] == 150, job["counts"]
    answer = client.get(f"/libraries/long_urls/imports/{job['import_id']}")
    assert len(answer.content) < 100_000
    items = [failure["item"] for failure in answer.json()["failures"]]
    assert len(items) == 100 and all(len(item) <= 512 for item in items)
    assert all(item.startswith(url[:400]) and re.search(r"\(60,02\d characters in all\)$", item) for item in items)
