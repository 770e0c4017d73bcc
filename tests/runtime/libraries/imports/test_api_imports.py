"""Imports through the API, on a real loopback server with the tiny model: an S3 prefix on moto's
server, a JSONL manifest over http, and every kind of bad input."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fakes.images import image_bytes
from tests.fakes.servers import FileServer, HeldAnswers, LiveServer, held_images_manifest
from tests.runtime.libraries.imports.conftest import BUCKET, IMAGES, wait_for_end


@pytest.fixture(scope="module")
def api(s3_endpoint, tiny_settings, tiny_engine, tmp_path_factory):
    settings = tiny_settings.replace(
        data_dir=str(tmp_path_factory.mktemp("imports-data")),
        s3_allowed_buckets=(BUCKET,),
        fetch_allow_networks=("127.0.0.1/32",),
        import_batch=4,
        import_max_running_per_library=3,
    )
    with LiveServer.start(settings, tiny_engine) as live:
        yield live


def new_library(api, name: str) -> None:
    assert api.post("/libraries", {"name": name}).status_code == 201


def run_to_end(api, library: str, body: dict) -> dict:
    return wait_for_end(api.client, library, start(api, library, body)["import_id"])


def start(api, library: str, body: dict) -> dict:
    answer = api.post(f"/libraries/{library}/imports", body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "running"
    return answer.json()


def test_prefix_import_adds_every_image_once_and_reports_the_bad_one(api):
    new_library(api, "catalog")
    started = start(api, "catalog", {"source": f"s3://{BUCKET}/catalog/", "dedup": False})
    job = wait_for_end(api.client, "catalog", started["import_id"])
    assert job["status"] == "succeeded", job
    # README.txt is not an image name: ignored, and said so. With dedup off the copy of p00 (the same bytes)
    # is added under its own id, as a single add with dedup false would add it.
    assert job["counts"] == {
        "total": IMAGES + 3,
        "processed": IMAGES + 3,
        "added": IMAGES + 1,
        "duplicates": 0,
        "duplicates_by_tier": {"exact": 0, "copy": 0, "similar": 0},
        "already_present": 0,
        "ignored": 1,
        "ignored_by_reason": {
            "not_an_image_name": 1,
            "hidden_file": 0,
            "not_a_regular_file": 0,
            "link_outside_folder": 0,
        },
        "failed": 1,
    }
    assert job["failures"] == [
        {
            "item": "broken.jpg",
            "field": "url",
            "code": "url_not_image",
            "message": "url: the URL's content is not an image",
        }
    ]
    assert job["end_time"] is not None and job["results"].endswith("results.jsonl")
    assert api.client.get("/libraries/catalog").json()["image_count"] == IMAGES + 1
    image = api.client.get("/libraries/catalog/images/shoes:p01.png")
    assert image.status_code == 200, image.text
    listed = api.client.get("/libraries/catalog/imports").json()["imports"]
    assert [one["import_id"] for one in listed] == [started["import_id"]]


def test_running_the_same_import_again_skips_what_is_there(api):
    new_library(api, "again")
    first = wait_for_end(
        api.client,
        "again",
        start(api, "again", {"source": f"s3://{BUCKET}/catalog/bags/", "dedup": False})["import_id"],
    )
    assert first["counts"]["added"] == IMAGES // 2
    second = wait_for_end(
        api.client,
        "again",
        start(api, "again", {"source": f"s3://{BUCKET}/catalog/bags/", "dedup": False})["import_id"],
    )
    assert second["status"] == "succeeded"
    assert second["counts"]["already_present"] == IMAGES // 2 and second["counts"]["added"] == 0
    assert api.client.get("/libraries/again").json()["image_count"] == IMAGES // 2


def test_manifest_lines_fail_one_by_one_and_the_import_goes_on(api):
    files = FileServer(
        {
            "/a.png": (200, {}, image_bytes(101)),
            "/b.jpg": (200, {}, image_bytes(102, fmt="JPEG")),
            "/text.png": (200, {}, b"hello"),
        }
    )
    lines = [
        json.dumps({"url": f"{files.base}/a.png", "id": "a", "metadata": {"price": 10}}),
        "{not json",
        "[1, 2]",
        json.dumps({"url": f"{files.base}/b.jpg"}),  # no id: named by its content hash
        json.dumps({"url": f"{files.base}/missing.png", "id": "gone"}),
        json.dumps({"url": f"{files.base}/text.png", "id": "text"}),
        json.dumps({"url": f"{files.base}/a.png", "id": "bad id!"}),
        json.dumps({"url": f"{files.base}/a.png", "id": "c", "colour": "red"}),
        json.dumps({"url": f"{files.base}/a.png", "id": "big", "metadata": {"x": "y" * 5000}}),
        "",
    ]
    files.routes["/manifest.jsonl"] = (200, {}, "\n".join(lines).encode())
    try:
        new_library(api, "manifested")
        started = start(api, "manifested", {"manifest": f"{files.base}/manifest.jsonl", "dedup": False})
        job = wait_for_end(api.client, "manifested", started["import_id"])
    finally:
        files.close()
    assert job["status"] == "succeeded", job
    assert job["counts"]["added"] == 2 and job["counts"]["failed"] == 7 and job["counts"]["total"] == 9
    by_item = {failure["item"]: failure for failure in job["failures"]}
    assert by_item["line 2"]["code"] == "invalid_json" and by_item["line 2"]["message"].startswith(
        "line 2: not valid JSON"
    )
    assert by_item["line 3"]["message"] == "line 3: must be a JSON object"
    assert by_item["gone"] == {
        "item": "gone",
        "field": "url",
        "code": "url_unreachable",
        "message": "url: the server answered HTTP 404",
    }
    assert by_item["text"]["code"] == "url_not_image"
    assert by_item["bad id!"]["field"] == "id" and by_item["bad id!"]["code"] == "invalid_image_id"
    assert by_item["line 8"]["code"] == "unknown_field" and by_item["line 8"]["field"] == "colour"
    assert by_item["big"]["field"] == "metadata" and by_item["big"]["code"] == "metadata_too_large"
    assert api.client.get("/libraries/manifested/images/a").json()["metadata"] == {"price": 10}


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({"source": "s3://elsewhere/catalog/"}, 400, "url_refused"),  # not on the allow list
        ({"manifest": "s3://elsewhere/list.jsonl"}, 400, "url_refused"),
        ({"manifest": "/etc/passwd"}, 400, "invalid_source"),  # a request never reads the server's files
        ({"manifest": "ftp://example.com/list.jsonl"}, 400, "invalid_source"),
        ({"source": "https://example.com/"}, 400, "invalid_source"),
        ({}, 400, "missing_input"),
        ({"source": f"s3://{BUCKET}/a/", "manifest": f"s3://{BUCKET}/m.jsonl"}, 400, "missing_input"),
        ({"source": f"s3://{BUCKET}/a/", "colour": "red"}, 400, "unknown_field"),
        ({"source": f"s3://{BUCKET}/a/", "threshold": 2}, 400, "invalid_value"),
    ],
)
def test_bad_requests_are_refused_before_a_job_starts(api, body, status, code):
    new_library(api, "refusing") if api.client.get("/libraries/refusing").status_code == 404 else None
    answer = api.post("/libraries/refusing/imports", body)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    if code == "invalid_source" and "manifest" in body:  # docs/imports.md says the same three schemes
        assert answer.json()["message"] == "manifest: give an s3://, https:// or http:// URL of a JSONL file"
    assert api.client.get("/libraries/refusing/imports").json()["imports"] == []


def test_an_import_into_a_missing_library_is_a_404(api):
    answer = api.post("/libraries/nowhere/imports", {"source": f"s3://{BUCKET}/catalog/"})
    assert (answer.status_code, answer.json()["code"]) == (404, "library_not_found")
    assert api.client.get("/libraries/nowhere/imports/0123abcd").json()["code"] == "library_not_found"


def test_unknown_import_and_cancelling_a_finished_one(api):
    new_library(api, "cancelling")
    missing = api.client.get("/libraries/cancelling/imports/0123abcd")
    assert (missing.status_code, missing.json()["code"]) == (404, "import_not_found")
    assert api.client.delete("/libraries/cancelling/imports/0123abcd").status_code == 404
    job = run_to_end(api, "cancelling", {"source": f"s3://{BUCKET}/catalog/shoes/"})
    finished = api.client.delete(f"/libraries/cancelling/imports/{job['import_id']}")
    assert (finished.status_code, finished.json()["code"]) == (409, "import_finished")


def test_an_import_into_a_full_library_stops_with_the_quota_error(s3_endpoint, tiny_settings, tiny_engine, tmp_path):
    settings = tiny_settings.replace(
        data_dir=str(tmp_path), s3_allowed_buckets=(BUCKET,), import_batch=4, max_images_per_library=6
    )
    with LiveServer.start(settings, tiny_engine) as live:
        new_library(live, "small")
        job = wait_for_end(
            live.client,
            "small",
            start(live, "small", {"source": f"s3://{BUCKET}/catalog/", "dedup": False})["import_id"],
        )
        assert job["status"] == "failed"
        assert "the quota is 6 images per library" in job["error"]
        assert live.client.get("/libraries/small").json()["image_count"] <= 6


def test_a_lone_surrogate_in_the_source_is_refused_and_the_listing_stays_readable(api):
    new_library(api, "surrogates")
    for body in ({"manifest": "https://example.com/\ud800.jsonl"}, {"source": f"s3://{BUCKET}/\udc00/"}):
        answer = api.post("/libraries/surrogates/imports", json.dumps(body).encode())  # sent as \ud800
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_value"), answer.text
        assert answer.json()["message"].startswith(f"{next(iter(body))}: holds a lone surrogate")
    listed = api.client.get("/libraries/surrogates/imports")
    assert listed.status_code == 200 and listed.json()["imports"] == [], listed.text


def test_a_manifest_line_holding_a_lone_surrogate_is_that_lines_failure(api):
    files = FileServer({"/a.png": (200, {}, image_bytes(111)), "/b.png": (200, {}, image_bytes(112))})
    lines = [
        json.dumps({"url": f"{files.base}/a.png", "id": "a"}),
        json.dumps({"url": f"{files.base}/\ud800.png", "id": "bad-url"}),
        json.dumps({"url": f"{files.base}/b.png", "id": "\udc00"}),
        json.dumps({"url": f"{files.base}/b.png", "id": "meta", "metadata": {"colour": "\ud800"}}),
        json.dumps({"url": f"{files.base}/b.png", "id": "b"}),
    ]
    files.routes["/manifest.jsonl"] = (200, {}, "\n".join(lines).encode())
    try:
        new_library(api, "surrogate_lines")
        job = run_to_end(api, "surrogate_lines", {"manifest": f"{files.base}/manifest.jsonl", "dedup": False})
    finally:
        files.close()
    assert job["status"] == "succeeded", job
    assert (job["counts"]["added"], job["counts"]["failed"]) == (2, 3), job["counts"]
    assert {(one["item"], one["field"], one["code"]) for one in job["failures"]} == {
        ("line 2", "url", "invalid_value"),
        ("line 3", "id", "invalid_value"),
        ("line 4", "metadata", "invalid_value"),
    }
    assert api.client.get("/libraries/surrogate_lines").json()["image_count"] == 2
    assert api.client.get("/libraries/surrogate_lines/imports").status_code == 200


def test_an_id_given_twice_in_a_manifest_fails_that_line_only(api):
    files = FileServer({f"/{n}.png": (200, {}, image_bytes(300 + n)) for n in range(6)})
    lines = [{"url": f"{files.base}/{n}.png", "id": f"sku-{n}"} for n in range(5)]
    lines.insert(3, {"url": f"{files.base}/5.png", "id": "sku-1"})  # sku-1 again, another picture
    files.routes["/twice.jsonl"] = (200, {}, "\n".join(json.dumps(line) for line in lines).encode())
    try:
        new_library(api, "twice")
        job = run_to_end(api, "twice", {"manifest": f"{files.base}/twice.jsonl", "dedup": False})
    finally:
        files.close()
    assert job["status"] == "succeeded", job
    assert (job["counts"]["added"], job["counts"]["failed"]) == (5, 1), job["counts"]
    (failure,) = job["failures"]
    assert failure["item"] == "sku-1" and failure["field"] == "id" and failure["code"] == "duplicate_id"
    assert failure["message"] == "id: 'sku-1' is given twice in the manifest; the first one is imported"
    assert api.client.get("/libraries/twice").json()["image_count"] == 5


def test_concurrent_imports_of_one_manifest_all_succeed_and_add_each_image_once(api):
    files = FileServer({f"/{n}.png": (200, {}, image_bytes(400 + n)) for n in range(12)})
    lines = [{"url": f"{files.base}/{n}.png", "id": f"sku-{n}"} for n in range(12)]
    files.routes["/same.jsonl"] = (200, {}, "\n".join(json.dumps(line) for line in lines).encode())
    try:
        new_library(api, "together")
        body = {"manifest": f"{files.base}/same.jsonl", "dedup": False}
        started = [start(api, "together", body) for _ in range(3)]
        jobs = [wait_for_end(api.client, "together", one["import_id"]) for one in started]
    finally:
        files.close()
    assert [job["status"] for job in jobs] == ["succeeded"] * 3, [job["error"] for job in jobs]
    assert sum(job["counts"]["added"] for job in jobs) == 12
    # An id another import stored first is already present, whenever it was stored: never a failure
    assert sum(job["counts"]["already_present"] for job in jobs) == 24
    assert all(job["counts"]["failed"] == 0 for job in jobs)
    assert api.client.get("/libraries/together").json()["image_count"] == 12


def test_deleting_a_library_deletes_its_imports_files(api):
    files = FileServer({"/a.png": (200, {}, image_bytes(501)), "/bad.png": (200, {}, b"not a png")})
    lines = [{"url": f"{files.base}/a.png", "id": "a"}, {"url": f"{files.base}/bad.png", "id": "bad"}]
    files.routes["/gone.jsonl"] = (200, {}, "\n".join(json.dumps(line) for line in lines).encode())
    try:
        new_library(api, "short_lived")
        job = run_to_end(api, "short_lived", {"manifest": f"{files.base}/gone.jsonl"})
    finally:
        files.close()
    folder = Path(job["results"]).parent
    assert job["counts"]["failed"] == 1 and (folder / "items.jsonl").exists()
    assert api.client.delete("/libraries/short_lived").status_code == 200
    assert not folder.exists()
    new_library(api, "short_lived")  # the same name again: none of the old imports
    assert api.client.get("/libraries/short_lived/imports").json()["imports"] == []
    gone = api.client.get(f"/libraries/short_lived/imports/{job['import_id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "import_not_found"


def held_settings(tiny_settings, tmp_path):
    return tiny_settings.replace(
        data_dir=str(tmp_path), fetch_allow_networks=("127.0.0.1/32",), fetch_timeout_s=600, import_batch=2
    )


def test_a_cancel_answers_at_once_and_40_of_them_leave_the_api_answering(tiny_settings, tiny_engine, tmp_path):
    held = HeldAnswers()
    manifest = held_images_manifest(held, 8)
    with LiveServer.start(held_settings(tiny_settings, tmp_path), tiny_engine) as live:
        try:
            new_library(live, "slow")
            job = start(live, "slow", {"manifest": f"{manifest.base}/held.jsonl"})
            assert held.arrived.wait(60), "the import never fetched its images"
            path = f"/libraries/slow/imports/{job['import_id']}"
            with httpx.Client(base_url=live.url, timeout=30) as client:
                first = client.delete(path)  # the old code waited for the job's thread: the fetch's timeout
                assert first.status_code == 200 and first.json()["status"] == "running", first.text
                with ThreadPoolExecutor(41) as pool:
                    cancels = [pool.submit(client.delete, path) for _ in range(40)]
                    listing = pool.submit(client.get, "/libraries")
                    answers = [one.result() for one in cancels]
                    listed = listing.result()
            assert {answer.status_code for answer in answers} == {200}
            assert listed.status_code == 200 and [one["name"] for one in listed.json()["libraries"]] == ["slow"]
            assert not held.released.is_set(), "every answer came while the images were still held"
        finally:
            held.release()
            manifest.close()
        ended = wait_for_end(live.client, "slow", job["import_id"])
        assert ended["status"] == "cancelled", ended
        assert ended["counts"]["processed"] < 8  # it stopped after the batches in flight


def test_deleting_a_library_stops_its_imports_and_a_new_one_of_its_name_gets_nothing(
    tiny_settings, tiny_engine, tmp_path
):
    held = HeldAnswers(answer=image_bytes(7))
    manifest = held_images_manifest(held, 4)
    with LiveServer.start(held_settings(tiny_settings, tmp_path), tiny_engine) as live:
        try:
            new_library(live, "again")
            job = start(live, "again", {"manifest": f"{manifest.base}/held.jsonl"})
            assert held.arrived.wait(60), "the import never fetched its images"
            with httpx.Client(base_url=live.url, timeout=30) as client:
                deleted = client.delete("/libraries/again")  # the old code waited for the fetch's timeout
            assert deleted.status_code == 200 and deleted.json()["deleted"], deleted.text
            new_library(live, "again")
        finally:
            held.release()  # the held images arrive now, after the library was made again
            manifest.close()
        live.server.config.app.state.imports.wait(job["import_id"])
        assert live.client.get("/libraries/again").json()["image_count"] == 0
        gone = live.client.get(f"/libraries/again/imports/{job['import_id']}")
        assert gone.status_code == 404 and gone.json()["code"] == "import_not_found"
        assert not (tmp_path / "imports" / job["import_id"]).exists()


def test_running_imports_are_capped_per_library_and_per_server(tiny_settings, tiny_engine, tmp_path):
    settings = tiny_settings.replace(
        data_dir=str(tmp_path),
        fetch_allow_networks=("127.0.0.1/32",),
        fetch_timeout_s=300,
        import_max_running=3,
        import_max_running_per_library=2,
    )
    held = HeldAnswers()
    body = {"manifest": f"{held.base}/slow.jsonl"}
    with LiveServer.start(settings, tiny_engine) as live:
        try:
            for name in ("first", "second"):
                new_library(live, name)
            running = [start(live, "first", body), start(live, "first", body)]
            refused = live.post("/libraries/first/imports", body)
            assert refused.status_code == 409 and refused.json()["code"] == "too_many_imports", refused.text
            assert "into library 'first'" in refused.json()["message"]
            running.append(start(live, "second", body))
            refused = live.post("/libraries/second/imports", body)
            assert refused.status_code == 409 and refused.json()["code"] == "too_many_imports", refused.text
            assert "3 imports are running" in refused.json()["message"]
        finally:
            held.release()
        ended = [wait_for_end(live.client, job["library"], job["import_id"]) for job in running]
        assert [job["status"] for job in ended] == ["failed"] * 3
        again = HeldAnswers()
        try:
            start(live, "first", {"manifest": f"{again.base}/slow.jsonl"})  # the slots are free again
        finally:
            again.release()


def test_only_the_newest_ended_imports_are_kept(tiny_settings, tiny_engine, tmp_path):
    settings = tiny_settings.replace(data_dir=str(tmp_path), s3_allowed_buckets=("nowhere",), import_kept_per_library=2)
    with LiveServer.start(settings, tiny_engine) as live:
        new_library(live, "kept")
        ids = []
        for _ in range(4):  # each fails at once: the manifest is refused when it is fetched
            job = wait_for_end(
                live.client, "kept", start(live, "kept", {"manifest": "http://10.0.0.1/m.jsonl"})["import_id"]
            )
            assert job["status"] == "failed", job
            ids.append(job["import_id"])
        listed = [job["import_id"] for job in live.client.get("/libraries/kept/imports").json()["imports"]]
        assert listed == ids[-2:]
        assert sorted(path.name for path in (tmp_path / "imports").iterdir()) == sorted(ids[-2:])


def test_a_full_disk_interrupts_the_import_visibly_and_it_goes_on_once_space_is_freed(
    tiny_settings, tiny_engine, tmp_path
):
    """SQLite's own SQLITE_FULL (``PRAGMA max_page_count`` on the store's connection) in a batch: the
    job ends ``interrupted`` with the store's message, not ``running`` with frozen counts; once space
    is freed the same import, started again, adds the rest."""
    count = 12
    pictures = {f"/p{n}.png": (200, {"Content-Type": "image/png"}, image_bytes(n)) for n in range(count)}
    lines = [
        json.dumps({"url": f"/p{n}.png", "id": f"p{n}", "metadata": {"pad": {"text": "x" * 3000}}})
        for n in range(count)
    ]
    files = FileServer(pictures)
    files.routes["/full.jsonl"] = (
        200,
        {},
        "\n".join(line.replace('"/p', f'"{files.base}/p') for line in lines).encode(),
    )
    settings = tiny_settings.replace(data_dir=str(tmp_path), fetch_allow_networks=("127.0.0.1/32",), import_batch=2)
    try:
        with LiveServer.start(settings, tiny_engine) as live:
            new_library(live, "full")
            connection = live.server.config.app.state.libraries._database()._db
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {pages + 2}")
            body = {"manifest": f"{files.base}/full.jsonl", "dedup": False}
            job = wait_for_end(live.client, "full", start(live, "full", body)["import_id"])
            assert job["status"] == "interrupted", job
            assert "the disk is full" in job["error"] and job["counts"]["processed"] < count
            assert job["end_time"] is None

            connection.execute("PRAGMA max_page_count = 1000000")  # space freed
            again = wait_for_end(live.client, "full", start(live, "full", body)["import_id"])
            assert again["status"] == "succeeded", again
            assert again["counts"]["added"] + again["counts"]["already_present"] == count
            assert live.client.get("/libraries/full").json()["image_count"] == count
    finally:
        files.close()
