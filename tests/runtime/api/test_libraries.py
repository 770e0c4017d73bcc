"""The library API through a real HTTP server on loopback, with the tiny random-weights model.

Random weights score many distinct pictures as near-duplicates, so the tests that need "a different
image" pick one the model itself scores below the threshold, and the concurrency test turns dedup off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from runtime.libraries.local import LocalStore
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer, free_port
from tests.runtime.libraries.test_stores import aws  # noqa: F401 (moto's S3 Vectors and DynamoDB, a fixture)

ROOT = Path(__file__).resolve().parents[3]


def img(seed: int) -> str:
    return b64(image_bytes(seed))


def error_of(response: httpx.Response, status: int, code: str, *, write: bool) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert ("status" in body) == write and body.get("status", -1) == -1, body
    return body


@pytest.fixture
def fresh(tiny_settings, tiny_engine, tmp_path):
    """Starts servers on a data directory of their own (``fresh(**setting_overrides)``)."""
    started = []

    def start(**overrides):
        settings = tiny_settings.replace(data_dir=str(tmp_path / "data"), **overrides)
        context = LiveServer.start(settings, tiny_engine)
        started.append(context)
        return context.__enter__()

    yield start
    for context in reversed(started):
        context.__exit__(None, None, None)


def different_image(server, seed: int, threshold: float = 0.95) -> int:
    """A picture the model scores below ``threshold`` against picture ``seed``."""
    for other in range(seed + 1, seed + 40):
        answer = server.post("/image-similarity", {"img_1": img(seed), "img_2": img(other)}).json()
        if answer["similarity"] < threshold:
            return other
    raise AssertionError(f"no picture scores below the threshold against picture {seed}")


def test_library_flow(server):
    version = server.client.get("/ping").json()["model_version"]
    created = server.post("/libraries", {"name": "flow_商品"})
    assert created.status_code == 201, created.text
    library = created.json()
    assert (library["name"], library["image_count"], library["model_version"]) == ("flow_商品", 0, version)
    assert abs(datetime.fromisoformat(library["create_time"]).timestamp() - time.time()) < 60
    error_of(server.post("/libraries", {"name": "flow_商品"}), 409, "library_exists", write=True)
    assert "flow_商品" in [item["name"] for item in server.client.get("/libraries").json()["libraries"]]

    base = server.client.get("/libraries/flow_商品").json()
    assert base == library

    first = server.post("/libraries/flow_商品/images", {"img": img(1), "id": "a", "metadata": {"color": "red"}})
    assert first.json() == {"status": 1, "message": "Image added.", "id": "a", "score": None}
    again = server.post("/libraries/flow_商品/images", {"img": img(1)}).json()
    assert again["status"] == 0 and again["message"] == "Similar image found."
    assert again["match"]["id"] == "a" and again["match"]["metadata"] == {"color": "red"}
    assert again["match"]["score"] == pytest.approx(1.0, abs=1e-5)
    assert server.client.get("/libraries/flow_商品").json()["image_count"] == 1

    other = different_image(server, 1)
    added = server.post("/libraries/flow_商品/images", {"img": img(other), "metadata": {"color": "blue"}}).json()
    assert added["status"] == 1 and added["score"] < 0.95
    other_id = added["id"]
    assert server.client.get("/libraries/flow_商品").json()["image_count"] == 2
    error_of(
        server.post("/libraries/flow_商品/images", {"img": img(other + 100), "id": "a"}),
        409,
        "image_exists",
        write=True,
    )

    by_image = server.post("/libraries/flow_商品/search", {"img": img(1)}).json()
    assert by_image["model_version"] == version
    assert by_image["matches"][0]["id"] == "a"
    assert by_image["matches"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert [match["id"] for match in by_image["matches"]] == ["a", other_id]

    by_text = server.post("/libraries/flow_商品/search", {"text": "a red square", "top_k": 5}).json()
    scores = [match["score"] for match in by_text["matches"]]
    assert len(scores) == 2 and scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)

    filtered = server.post("/libraries/flow_商品/search", {"img": img(1), "filter": {"color": "blue"}}).json()
    assert [match["id"] for match in filtered["matches"]] == [other_id]
    assert filtered["partial"] is False  # the library is far below the filter's candidate bound
    high = server.post("/libraries/flow_商品/search", {"img": img(1), "min_score": 0.999}).json()
    assert [match["id"] for match in high["matches"]] == ["a"]

    image = server.client.get("/libraries/flow_商品/images/a").json()
    assert image["id"] == "a" and image["metadata"] == {"color": "red"} and datetime.fromisoformat(image["create_time"])
    error_of(server.client.get("/libraries/flow_商品/images/zzz"), 404, "image_not_found", write=False)

    assert server.client.delete("/libraries/flow_商品/images/a").json() == {"id": "a", "deleted": True}
    error_of(server.client.delete("/libraries/flow_商品/images/a"), 404, "image_not_found", write=True)
    after = server.post("/libraries/flow_商品/search", {"img": img(1)}).json()
    assert [match["id"] for match in after["matches"]] == [other_id]

    assert server.client.delete("/libraries/flow_商品").json() == {"name": "flow_商品", "deleted": True}
    error_of(server.client.get("/libraries/flow_商品"), 404, "library_not_found", write=False)
    assert "flow_商品" not in [item["name"] for item in server.client.get("/libraries").json()["libraries"]]


@pytest.mark.parametrize("name", ["", "a" * 65, "bad-name!", "two words", "x.y"])
def test_bad_library_names(server, name):
    body = error_of(server.post("/libraries", {"name": name}), 400, "invalid_library_name", write=True)
    assert body["message"].startswith("name:") and "letters" in body["message"]


def test_unknown_library(server):
    error_of(server.client.get("/libraries/nobody_here"), 404, "library_not_found", write=False)
    error_of(server.client.delete("/libraries/nobody_here"), 404, "library_not_found", write=True)
    error_of(server.post("/libraries/nobody_here/images", {"img": img(1)}), 404, "library_not_found", write=True)
    error_of(server.post("/libraries/nobody_here/search", {"text": "cat"}), 404, "library_not_found", write=False)


def test_bad_requests_name_the_field(server):
    server.post("/libraries", {"name": "bad_requests"})
    cases = [
        ("/libraries/bad_requests/images", {}, "missing_input", "url or img", True),
        (
            "/libraries/bad_requests/images",
            {"url": "https://example.com/a.jpg", "img": img(1)},
            "ambiguous_input",
            "url and img",
            True,
        ),
        ("/libraries/bad_requests/images", {"text": "a cat"}, "unknown_field", "text", True),
        ("/libraries/bad_requests/images", {"img": img(1), "metadata": [1, 2]}, "invalid_type", "metadata", True),
        (
            "/libraries/bad_requests/images",
            {"img": img(1), "metadata": {"x": "y" * 5000}},
            "metadata_too_large",
            "metadata",
            True,
        ),
        ("/libraries/bad_requests/images", {"img": img(1), "id": "a/b"}, "invalid_image_id", "id", True),
        ("/libraries/bad_requests/images", {"img": img(1), "threshold": 2}, "invalid_value", "threshold", True),
        ("/libraries/bad_requests/images", {"img": "not base64!"}, "invalid_base64", "img", True),
        ("/libraries/bad_requests/images", b"{not json", "invalid_json", "JSON", True),
        ("/libraries/bad_requests/search", {"text": "cat", "top_k": 0}, "invalid_value", "top_k", False),
        ("/libraries/bad_requests/search", {"text": "cat", "top_k": 101}, "invalid_value", "top_k", False),
        ("/libraries/bad_requests/search", {"text": "cat", "min_score": 1.5}, "invalid_value", "min_score", False),
        # checked before the image is fetched (this URL is not fetchable here)
        (
            "/libraries/bad_requests/search",
            {"url": "https://example.com/a.jpg", "top_k": 0},
            "invalid_value",
            "top_k",
            False,
        ),
        ("/libraries/bad_requests/search", {"text": "cat", "filter": {"a": [1]}}, "invalid_filter", "filter.a", False),
        ("/libraries/bad_requests/search", {"top_k": 3}, "missing_input", "url or img or text", False),
    ]
    for path, body, code, mentioned, write in cases:
        answer = error_of(server.post(path, body), 400, code, write=write)
        assert mentioned in answer["message"], (body, answer)
    assert server.client.get("/libraries/bad_requests").json()["image_count"] == 0
    server.client.delete("/libraries/bad_requests")


def test_top_k_follows_the_max_top_k_setting(fresh):
    server = fresh(max_top_k=200)
    server.post("/libraries", {"name": "wide"})
    for seed in (1, 2, 3):
        assert server.post("/libraries/wide/images", {"img": img(seed), "dedup": False}).json()["status"] == 1
    answer = server.post("/libraries/wide/search", {"text": "a cat", "top_k": 150})
    assert answer.status_code == 200 and len(answer.json()["matches"]) == 3
    error_of(server.post("/libraries/wide/search", {"text": "a cat", "top_k": 201}), 400, "invalid_value", write=False)


def test_quotas(fresh):
    server = fresh(max_libraries=2, max_images_per_library=2)
    for name in ("one", "two"):
        assert server.post("/libraries", {"name": name}).status_code == 201
    body = error_of(server.post("/libraries", {"name": "three"}), 409, "library_quota_exceeded", write=True)
    assert "2 libraries" in body["message"]
    for seed in (1, 2):
        assert server.post("/libraries/one/images", {"img": img(seed), "dedup": False}).json()["status"] == 1
    body = error_of(
        server.post("/libraries/one/images", {"img": img(3), "dedup": False}), 409, "image_quota_exceeded", write=True
    )
    assert "2 images per library" in body["message"]


def test_a_library_of_another_model_is_refused(fresh, tmp_path, tiny_settings):
    other = LocalStore(tiny_settings.replace(data_dir=str(tmp_path / "data")), 512)
    other.create_library("old_model", "ViT-L-14/openai")
    other.close()
    server = fresh()
    for path, body in (
        ("/libraries/old_model/images", {"img": img(1)}),
        ("/libraries/old_model/search", {"text": "cat"}),
    ):
        answer = error_of(server.post(path, body), 409, "model_version_mismatch", write=path.endswith("images"))
        assert "ViT-L-14/openai" in answer["message"]


def test_dedup_threshold_and_switch(fresh):
    server = fresh()
    server.post("/libraries", {"name": "dedup"})
    near = next(seed for seed in range(2, 40) if 0.97 <= similarity(server, 1, seed) < 0.999)
    server.post("/libraries/dedup/images", {"img": img(1), "id": "one"})
    # A distinct picture is refused as similar only when the add gives a threshold (no default since tiers).
    similar = server.post("/libraries/dedup/images", {"img": img(near), "threshold": 0.97}).json()
    assert similar["status"] == 0 and similar["tier"] == "similar"
    stricter = server.post("/libraries/dedup/images", {"img": img(near), "threshold": 0.9995}).json()
    assert stricter["status"] == 1 and stricter["score"] == pytest.approx(similarity(server, 1, near), abs=1e-4)
    assert server.post("/libraries/dedup/images", {"img": img(1)}).json()["tier"] == "exact"
    assert server.post("/libraries/dedup/images", {"img": img(1), "dedup": False}).json()["status"] == 1
    assert server.client.get("/libraries/dedup").json()["image_count"] == 3


def similarity(server, first: int, second: int) -> float:
    return server.post("/image-similarity", {"img_1": img(first), "img_2": img(second)}).json()["similarity"]


@pytest.mark.slow
def test_concurrent_adds_and_restart(fresh):
    """8 clients x 50 distinct images, dedup off: exactly 400, all searchable, all there after a restart."""
    server = fresh()
    assert server.post("/libraries", {"name": "busy"}).status_code == 201

    def client(number: int) -> list[str]:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            ids = []
            for i in range(50):
                answer = http.post("/libraries/busy/images", json={"img": img(number * 1000 + i), "dedup": False})
                assert answer.status_code == 200 and answer.json()["status"] == 1, answer.text
                ids.append(answer.json()["id"])
            return ids

    with ThreadPoolExecutor(8) as pool:
        ids = [image_id for batch in pool.map(client, range(8)) for image_id in batch]
    assert len(set(ids)) == 400
    assert server.client.get("/libraries/busy").json()["image_count"] == 400
    expected = {
        image_id: number * 1000 + i
        for number in range(8)
        for i, image_id in enumerate(ids[number * 50 : (number + 1) * 50])
    }
    assert_all_searchable(server, expected)

    server.server.should_exit = True  # stop the first server: its shutdown closes the store
    server.thread.join(timeout=10)
    restarted = fresh()
    assert restarted.client.get("/libraries/busy").json()["image_count"] == 400
    for image_id in ids:
        assert restarted.client.get(f"/libraries/busy/images/{image_id}").status_code == 200
    assert_all_searchable(restarted, dict(list(expected.items())[::20]))


def assert_all_searchable(server, expected: dict[str, int]) -> None:
    """Searching by each image finds it with score 1.0 (other pictures may score nearly as high)."""

    def found(item) -> bool:
        image_id, seed = item
        matches = server.post("/libraries/busy/search", {"img": img(seed)}).json()["matches"]
        return any(m["id"] == image_id and m["score"] == pytest.approx(1.0, abs=1e-5) for m in matches)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(found, expected.items()))


# --- a crash in the middle of a burst of writes -------------------------------------------


def start_process(tiny_settings, data_dir: Path, port: int) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "runtime", "serve",
        "--port", str(port),
        "--model", tiny_settings.model,
        "--pretrained", tiny_settings.pretrained,
        "--weights", tiny_settings.weights,
        "--model-config", tiny_settings.model_config_path,
        "--device", "cpu",
        "--data-dir", str(data_dir),
        "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError("the server did not start")


@pytest.mark.slow
def test_acknowledged_adds_survive_sigkill(tiny_settings, tmp_path):
    """Kill the server (SIGKILL) in the middle of a burst of adds: every acknowledged add is on disk."""
    data_dir, port = tmp_path / "crash-data", free_port()
    process = start_process(tiny_settings, data_dir, port)
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    attempted: list[str] = []
    failures: list[BaseException] = []  # an assert in a thread would only end that thread
    lock = threading.Lock()
    try:
        assert httpx.post(f"{base}/libraries", json={"name": "crash"}).status_code == 201

        def write(number: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as http:
                for i in range(10_000):
                    image_id = f"w{number}-{i}"
                    with lock:
                        attempted.append(image_id)
                    try:
                        answer = http.post(
                            "/libraries/crash/images",
                            json={"img": img(number * 10_000 + i), "id": image_id, "dedup": False},
                        )
                    except httpx.TransportError:
                        return  # the server is gone
                    assert answer.status_code == 200 and answer.json()["status"] == 1, answer.text
                    with lock:
                        acknowledged.append(image_id)

        def writer(number: int) -> None:
            try:
                write(number)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=writer, args=(number,)) for number in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(acknowledged) < 60 and not failures:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(acknowledged)} adds acknowledged in 120 s; expected 60")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads), "a writer did not stop when the server died"

    # What the data directory holds once the process is gone (a restarted server loads the same).
    store = LocalStore(tiny_settings.replace(data_dir=str(data_dir)), 512)
    try:
        assert len(acknowledged) <= store.get_library("crash").image_count <= len(attempted)
        for image_id in acknowledged:
            assert store.get_image("crash", image_id).id == image_id
    finally:
        store.close()


def test_error_examples_are_the_api_s_real_answers(fresh, tiny_settings, tiny_engine):
    """The API Explorer's library error examples are what the API answers."""
    from runtime.api.library_schemas import ERROR_TEXTS

    server = fresh()
    triggers = {
        "invalid_library_name": lambda: server.post("/libraries", {"name": "my-library!"}),
        "library_not_found": lambda: server.client.get("/libraries/products"),
        "library_exists": lambda: server.post("/libraries", {"name": "products"}),
        "image_not_found": lambda: server.client.get("/libraries/products/images/sku-1042"),
        "metadata_too_large": lambda: server.post(
            "/libraries/products/images", {"img": img(1), "metadata": {"x": "y" * 5202}}
        ),
        "invalid_filter": lambda: server.post("/libraries/products/search", {"text": "a", "filter": {"tags": ["a"]}}),
        "library_quota_exceeded": lambda: server.post("/libraries", {"name": "one_too_many"}),
    }
    for code, trigger in triggers.items():
        if code == "library_exists":
            server.post("/libraries", {"name": "products"})
        if code == "library_quota_exceeded":
            for number in range(9):
                server.post("/libraries", {"name": f"filler{number}"})
        status, _, message = ERROR_TEXTS[code]
        answer = trigger()
        assert (answer.status_code, answer.json()["code"], answer.json()["message"]) == (status, code, message)
    with LiveServer.start(tiny_settings.replace(store="off"), tiny_engine) as off:
        answer = off.client.get("/libraries")
        assert (answer.status_code, answer.json()["message"]) == (404, ERROR_TEXTS["libraries_disabled"][2])


# --- the library API a catalog team needs -------------------------------------------------


@pytest.fixture
def forward_passes(tiny_engine, monkeypatch):
    """Counts the engine's image forward passes (the real engine still computes every vector)."""
    calls: list[int] = []
    encode = tiny_engine.encode_images

    def counted(pixels, priority):
        calls.append(len(pixels))
        return encode(pixels, priority)

    monkeypatch.setattr(tiny_engine, "encode_images", counted)
    return calls


def deep_metadata(levels: int) -> dict:
    value: object = "bottom"
    for _ in range(levels - 1):
        value = {"down": value}
    return {"kind": "deep", "down": value}


def test_batch_add_answers_each_item_in_order_after_one_forward_pass(fresh, forward_passes):
    server = fresh()
    server.post("/libraries", {"name": "batch"})
    server.post("/libraries/batch/images", {"img": img(1), "id": "taken", "dedup": False})
    forward_passes.clear()
    other = different_image(server, 1)
    forward_passes.clear()
    answer = server.post(
        "/libraries/batch/images",
        {
            "images": [
                {"img": img(other), "id": "new-1", "metadata": {"n": 1}},
                {"img": img(other), "id": "copy"},  # the same file as the one before it
                {"img": "not base64!"},
                {"id": "no-image"},
                {"img": img(other + 100), "id": "too-deep", "metadata": deep_metadata(11)},
                {"img": img(other + 101), "id": "taken"},
                {"img": img(1), "id": "file-in-library"},
                {"img": img(other + 102), "id": "bad id!"},
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [result["status"] for result in results] == [1, 0, -1, -1, -1, -1, 0, -1]
    assert results[0] == {"status": 1, "message": "Image added.", "id": "new-1", "score": results[0]["score"]}
    assert results[1]["exact"] is True and results[1]["match"]["id"] == "new-1"
    assert results[6]["exact"] is True and results[6]["match"]["id"] == "taken"
    codes = [result.get("code") for result in results]
    assert codes == [
        None,
        None,
        "invalid_base64",
        "missing_input",
        "invalid_metadata",
        "image_exists",
        None,
        "invalid_image_id",
    ]
    for position in (2, 3, 4, 5, 7):
        assert results[position]["message"].startswith(f"images[{position}]"), results[position]
    # One engine call of one image: bad ids, bad metadata and ids the library holds are refused before any
    # file is read, the file already in the library before decoding, and the copy within the batch shares
    # its first's vector (the store answers it as an exact duplicate of it).
    assert forward_passes == [1]
    listed = server.client.get("/libraries/batch/images").json()["images"]
    assert sorted(image["id"] for image in listed) == ["new-1", "taken"]


def test_batch_add_request_errors(server):
    server.post("/libraries", {"name": "batch_errors"})
    too_many = server.post("/libraries/batch_errors/images", {"images": [{"img": img(1)}] * 33})
    error_of(too_many, 400, "batch_too_large", write=True)
    error_of(server.post("/libraries/batch_errors/images", {"images": []}), 400, "missing_input", write=True)
    mixed = server.post("/libraries/batch_errors/images", {"images": [{"img": img(1)}], "img": img(2)})
    error_of(mixed, 400, "ambiguous_input", write=True)
    unknown = server.post("/libraries/batch_errors/images", {"images": [{"img": img(1), "dedup": False}]})
    assert "images[0].dedup" in error_of(unknown, 400, "unknown_field", write=True)["message"]
    error_of(server.post("/libraries/nope/images", {"images": [{"img": img(1)}]}), 404, "library_not_found", write=True)


def test_an_exact_duplicate_needs_no_model_work(fresh, forward_passes):
    server = fresh()
    server.post("/libraries", {"name": "exact"})
    first = server.post("/libraries/exact/images", {"img": img(5), "id": "a", "metadata": {"m": 1}}).json()
    assert first["status"] == 1
    forward_passes.clear()
    again = server.post("/libraries/exact/images", {"img": img(5), "id": "b"}).json()
    assert again == {
        "status": 0,
        "message": "Similar image found.",
        "match": {"id": "a", "score": 1.0, "metadata": {"m": 1}},
        "exact": True,
        "tier": "exact",
    }
    assert forward_passes == []
    kept = server.post("/libraries/exact/images", {"img": img(5), "id": "c", "dedup": False}).json()
    assert kept["status"] == 1 and forward_passes == [1]


def test_list_images_pages_through_the_api(fresh):
    server = fresh()
    server.post("/libraries", {"name": "pages"})
    added = server.post(
        "/libraries/pages/images",
        {
            "images": [{"img": img(seed), "id": f"p{seed:02d}", "metadata": {"n": seed}} for seed in range(5)],
            "dedup": False,
        },
    )
    assert [result["status"] for result in added.json()["results"]] == [1] * 5
    first = server.client.get("/libraries/pages/images", params={"limit": 2}).json()
    assert [image["id"] for image in first["images"]] == ["p00", "p01"]
    assert first["images"][1]["metadata"] == {"n": 1} and datetime.fromisoformat(first["images"][1]["create_time"])
    server.client.delete("/libraries/pages/images/p02")
    second = server.client.get("/libraries/pages/images", params={"limit": 2, "next_token": first["next_token"]})
    assert [image["id"] for image in second.json()["images"]] == ["p03", "p04"]
    assert second.json()["next_token"] is None
    error_of(server.client.get("/libraries/pages/images", params={"limit": 0}), 400, "invalid_value", write=False)
    bad_token = server.client.get("/libraries/pages/images", params={"next_token": "%%%"})
    error_of(bad_token, 400, "invalid_next_token", write=False)


def test_patch_replaces_metadata_and_keeps_the_vector(fresh):
    server = fresh()
    server.post("/libraries", {"name": "patch"})
    server.post("/libraries/patch/images", {"img": img(3), "id": "sku-1", "metadata": {"color": "red"}})
    patched = server.client.patch("/libraries/patch/images/sku-1", json={"metadata": {"color": "blue", "price": 9}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["metadata"] == {"color": "blue", "price": 9}
    assert server.client.get("/libraries/patch/images/sku-1").json()["metadata"] == {"color": "blue", "price": 9}
    found = server.post("/libraries/patch/search", {"img": img(3), "filter": {"price": {"$lt": 10}}}).json()
    assert found["matches"][0]["id"] == "sku-1" and found["matches"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    deep = server.client.patch("/libraries/patch/images/sku-1", json={"metadata": deep_metadata(11)})
    assert "10 levels" in error_of(deep, 400, "invalid_metadata", write=True)["message"]
    error_of(
        server.client.patch("/libraries/patch/images/zzz", json={"metadata": {}}), 404, "image_not_found", write=True
    )
    error_of(server.client.patch("/libraries/patch/images/sku-1", json={}), 400, "missing_field", write=True)


def test_search_by_a_stored_image_leaves_it_out(fresh):
    server = fresh()
    server.post("/libraries", {"name": "like"})
    other = different_image(server, 1)
    server.post(
        "/libraries/like/images", {"images": [{"img": img(1), "id": "sku-1"}, {"img": img(other), "id": "sku-2"}]}
    )
    like = server.post("/libraries/like/search", {"id": "sku-1"}).json()
    assert [match["id"] for match in like["matches"]] == ["sku-2"]
    error_of(server.post("/libraries/like/search", {"id": "nope"}), 404, "image_not_found", write=False)
    error_of(server.post("/libraries/like/search", {"id": "sku-1", "text": "x"}), 400, "ambiguous_input", write=False)


def test_filters_and_bad_filters_through_the_api(fresh):
    server = fresh()
    server.post("/libraries", {"name": "filters"})
    server.post(
        "/libraries/filters/images",
        {
            "images": [{"img": img(seed), "id": f"f{seed}", "metadata": {"price": seed * 10}} for seed in range(4)],
            "dedup": False,
        },
    )
    cheap = server.post("/libraries/filters/search", {"text": "x", "filter": {"price": {"$lte": 10}}}).json()
    assert sorted(match["id"] for match in cheap["matches"]) == ["f0", "f1"]
    either = {"$or": [{"price": 0}, {"price": {"$in": [30]}}]}
    assert sorted(
        m["id"] for m in server.post("/libraries/filters/search", {"text": "x", "filter": either}).json()["matches"]
    ) == ["f0", "f3"]
    bad = server.post("/libraries/filters/search", {"text": "x", "filter": {"$or": [{"price": {"$gt": "10"}}]}})
    assert error_of(bad, 400, "invalid_filter", write=False)["message"].startswith("filter.$or[0].price.$gt:")


def test_the_deepest_accepted_metadata_survives_a_restart(tiny_settings, tiny_engine, tmp_path):
    settings = tiny_settings.replace(data_dir=str(tmp_path / "data"))
    accepted = deep_metadata(10)
    with LiveServer.start(settings, tiny_engine) as server:
        server.post("/libraries", {"name": "deep"})
        added = server.post("/libraries/deep/images", {"img": img(1), "id": "deep", "metadata": accepted})
        assert added.json()["status"] == 1
        for levels in (11, 300):
            refused = server.post("/libraries/deep/images", {"img": img(2), "metadata": deep_metadata(levels)})
            error_of(refused, 400, "invalid_metadata", write=True)
    with LiveServer.start(settings, tiny_engine) as server:  # the same data directory, after a restart
        assert server.client.get("/libraries/deep/images/deep").json()["metadata"] == accepted
        assert server.post("/libraries/deep/search", {"img": img(1)}).json()["matches"][0]["metadata"] == accepted
        assert server.client.get("/libraries/deep/images").json()["images"][0]["metadata"] == accepted


@pytest.mark.parametrize("name", ["\u3164", "\u115f\u1160", "\u200b"])
def test_invisible_names_are_refused(server, name):
    error_of(server.post("/libraries", {"name": name}), 400, "invalid_library_name", write=True)


def test_image_ids_are_nfc_normalised_through_the_api(fresh):
    server = fresh()
    server.post("/libraries", {"name": "nfc"})
    added = server.post("/libraries/nfc/images", {"img": img(1), "id": "cafe\u0301"}).json()
    assert added["id"] == "caf\u00e9"
    assert server.client.get("/libraries/nfc/images/caf\u00e9").json()["id"] == "caf\u00e9"


def test_a_throttled_store_answers_503_with_retry_after_and_a_denied_one_502(fresh, request, tiny_engine):
    """S3 Vectors' own throttling code (TooManyRequestsException) is a retryable 503, not a 502."""
    from runtime.libraries.aws.s3vectors import S3VectorsStore
    from runtime.settings import Settings
    from tests.fakes.s3vectors import error
    from tests.runtime.libraries.test_stores import BUCKET, TABLE

    vectors, dynamodb, _ = request.getfixturevalue("aws")
    server = fresh()
    settings = Settings(store="s3vectors", vector_bucket=BUCKET, registry_table=TABLE)
    server.server.config.app.state.libraries = S3VectorsStore(
        settings, tiny_engine.dimension, s3vectors=vectors, dynamodb=dynamodb
    )
    assert server.post("/libraries", {"name": "shop"}).status_code == 201
    service_answers = {"code": "TooManyRequestsException", "status": 429}
    vectors.meta.events.register_first(
        "before-call.s3vectors.QueryVectors",
        lambda **_: error(service_answers["code"], service_answers["code"], service_answers["status"]),
    )
    busy = server.post("/libraries/shop/search", {"text": "a red shoe"})
    error_of(busy, 503, "library_busy", write=False)
    assert busy.headers["retry-after"] == "1" and "TooManyRequestsException" in busy.json()["message"]
    service_answers.update(code="AccessDeniedException", status=403)
    denied = server.post("/libraries/shop/search", {"text": "a red shoe"})
    error_of(denied, 502, "store_error", write=False)
    assert "retry-after" not in denied.headers


def test_thumbnails_are_kept_and_served_as_the_library_says(server):
    import io

    from PIL import Image as PILImage

    picture = b64(image_bytes(71, size=(400, 300)))
    assert server.post("/libraries", {"name": "thumbs"}).json()["thumbnails"] is True  # local default
    assert server.post("/libraries", {"name": "no_thumbs", "thumbnails": False}).json()["thumbnails"] is False
    for name in ("thumbs", "no_thumbs"):
        assert server.post(f"/libraries/{name}/images", {"img": picture, "id": "p"}).json()["status"] == 1
    kept = server.client.get("/libraries/thumbs/images/p/thumbnail")
    assert kept.status_code == 200 and kept.headers["content-type"] == "image/webp"
    assert len(kept.content) <= 8 * 1024
    width, height = PILImage.open(io.BytesIO(kept.content)).size  # the model input, at most 160 px (tiny model: 32)
    assert width == height and 0 < width <= 160
    none = server.client.get("/libraries/no_thumbs/images/p/thumbnail")
    assert none.status_code == 404 and none.json()["code"] == "thumbnail_not_found"
    missing = server.client.get("/libraries/thumbs/images/q/thumbnail")
    assert missing.status_code == 404 and missing.json()["code"] == "image_not_found"
