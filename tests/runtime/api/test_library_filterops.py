"""Count, delete by filter, ``order_by`` and ``$startsWith``, through a real HTTP server on both stores.

Each test runs twice: on the local store, and on the S3 Vectors store over moto (with the fake's
QueryVectors and paged ListVectors, tests/fakes/s3vectors.py). The expected answers are written once, so
the two stores answering them both is the two stores answering identically.
"""

from __future__ import annotations

import threading

import pytest

from runtime.libraries.aws.s3vectors import S3VectorsStore
from runtime.libraries.store import encode_token
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer
from tests.runtime.libraries.test_stores import BUCKET, TABLE, aws  # noqa: F401 (moto's S3 Vectors, a fixture)

PHOTOS = {
    "p01": {"album": "2019/summer", "date": "2019-07-01", "sku": "AB-1"},
    "p02": {"album": "2019/winter", "date": "2019-12-24T18:00:00Z", "sku": "AB-2"},
    "p03": {"album": "2020/summer", "date": "2020-07-01T10:00:00+02:00", "sku": "ab-3"},  # 08:00 UTC
    "p04": {"album": "2020/summer", "date": "2020-07-01T09:00:00Z", "sku": "CD-4"},  # after p03 by the clock
    "p05": {"album": ["2021/spring", "favourites"], "date": 1615000000, "sku": "AB-5"},  # a number
    "p06": {"album": "2021/spring", "date": 1615000000.0},  # ties p05: by id
    "p07": {"album": "2022", "date": None},  # not an orderable value: last
    "p08": {"album": "2022/autumn"},  # no date: last
    "p09": {"album": "20", "date": "not a date", "tags": {"nested": True}},  # other strings after dates
}
ORDER_ASC = ["p05", "p06", "p01", "p02", "p03", "p04", "p09", "p07", "p08"]
ORDER_DESC = ["p09", "p04", "p03", "p02", "p01", "p05", "p06", "p07", "p08"]


@pytest.fixture(params=["local", "s3vectors"])
def live(request, tiny_settings, tiny_engine, tmp_path):
    """A server on one store kind; ``live(**settings)`` starts it (the S3 Vectors store gets them too)."""
    started = []

    def start(**overrides):
        settings = tiny_settings.replace(data_dir=str(tmp_path / "data"), **overrides)
        context = LiveServer.start(settings, tiny_engine)
        started.append(context)
        server = context.__enter__()
        if request.param == "s3vectors":
            vectors, dynamodb, _ = request.getfixturevalue("aws")
            aws_settings = settings.replace(store="s3vectors", vector_bucket=BUCKET, registry_table=TABLE)
            server.server.config.app.state.libraries = S3VectorsStore(
                aws_settings, tiny_engine.dimension, s3vectors=vectors, dynamodb=dynamodb
            )
        server.store = server.server.config.app.state.libraries
        return server

    yield start
    for context in reversed(started):
        context.__exit__(None, None, None)


def library_of(server, name: str, photos: dict[str, dict]) -> None:
    assert server.post("/libraries", {"name": name}).status_code == 201
    images = [
        {"img": b64(image_bytes(seed)), "id": image_id, "metadata": metadata}
        for seed, (image_id, metadata) in enumerate(photos.items())
    ]
    for start in range(0, len(images), 32):
        answer = server.post(f"/libraries/{name}/images", {"images": images[start : start + 32], "dedup": False})
        assert [result["status"] for result in answer.json()["results"]] == [1] * len(images[start : start + 32])


def count(server, name: str, conditions=None) -> int:
    answer = server.post(f"/libraries/{name}/count", {} if conditions is None else {"filter": conditions})
    assert answer.status_code == 200, answer.text
    return answer.json()["count"]


def listed(server, name: str, **params) -> list[str]:
    """Every id of a listing, following ``next_token`` page after page."""
    ids = []
    while True:
        page = server.client.get(f"/libraries/{name}/images", params=params)
        assert page.status_code == 200, page.text
        ids += [image["id"] for image in page.json()["images"]]
        if page.json()["next_token"] is None:
            return ids
        params = {**params, "next_token": page.json()["next_token"]}


COUNTS = [
    (None, 9),
    ({"album": {"$startsWith": "2019/"}}, 2),
    ({"album": {"$startsWith": "2021/"}}, 2),  # p05 by an element of its list
    ({"album": {"$startsWith": "20"}}, 9),
    ({"sku": {"$startsWith": "AB"}}, 3),  # case-sensitive: not ab-3
    ({"album": {"$startsWith": "2020/"}, "sku": {"$startsWith": "CD"}}, 1),
    ({"$or": [{"date": {"$gte": 1615000000}}, {"sku": "CD-4"}]}, 3),
    ({"date": {"$exists": False}}, 2),  # null is stored but not filterable: p07 counts as without, as p08
    ({"tags": {"$exists": True}}, 0),  # nested objects are never matched
]


@pytest.mark.parametrize(("conditions", "expected"), COUNTS)
def test_count_with_a_filter_is_the_same_on_both_stores(live, conditions, expected):
    server = live()
    library_of(server, "photos", PHOTOS)
    assert count(server, "photos", conditions) == expected


def test_starts_with_filters_a_search_on_both_stores(live):
    server = live()
    library_of(server, "photos", PHOTOS)
    found = server.post(
        "/libraries/photos/search", {"text": "a photo", "top_k": 9, "filter": {"album": {"$startsWith": "2019/"}}}
    )
    assert found.status_code == 200, found.text
    assert sorted(match["id"] for match in found.json()["matches"]) == ["p01", "p02"]


def test_delete_by_filter_counts_first_with_dry_run_then_deletes_on_both_stores(live):
    server = live()
    library_of(server, "photos", PHOTOS)
    doomed = {"album": {"$startsWith": "2020/"}}
    dry = server.post("/libraries/photos/delete-images", {"filter": doomed, "dry_run": True})
    assert dry.json() == {"count": 2, "deleted": 0, "dry_run": True}
    assert count(server, "photos") == 9 and len(listed(server, "photos")) == 9
    done = server.post("/libraries/photos/delete-images", {"filter": doomed})
    assert done.json() == {"count": 2, "deleted": 2, "dry_run": False}
    assert count(server, "photos", doomed) == 0
    assert server.client.get("/libraries/photos").json()["image_count"] == 7
    assert listed(server, "photos") == ["p01", "p02", "p05", "p06", "p07", "p08", "p09"]
    assert server.client.get("/libraries/photos/images/p03").status_code == 404
    found = server.post("/libraries/photos/search", {"text": "a photo", "top_k": 9}).json()["matches"]
    assert sorted(match["id"] for match in found) == ["p01", "p02", "p05", "p06", "p07", "p08", "p09"]
    # The ones left are whole: each is found by its own vector (the local store moved rows to close the gaps).
    for image_id in ("p01", "p09"):
        like = server.post("/libraries/photos/search", {"id": image_id, "top_k": 1}).json()["matches"]
        assert like and like[0]["id"] != image_id
    everything = server.post("/libraries/photos/delete-images", {"filter": {}})
    assert everything.json() == {"count": 7, "deleted": 7, "dry_run": False}
    assert listed(server, "photos") == [] and count(server, "photos") == 0


def test_a_deleted_file_may_be_added_again(live):
    """Delete by filter removes the exact-duplicate keys too: the same file is not refused as a duplicate."""
    server = live()
    library_of(server, "photos", {"p01": PHOTOS["p01"]})
    again = {"img": b64(image_bytes(0)), "id": "again"}
    assert server.post("/libraries/photos/images", again).json()["exact"] is True
    server.post("/libraries/photos/delete-images", {"filter": {"sku": "AB-1"}})
    assert server.post("/libraries/photos/images", again).json()["status"] == 1


@pytest.mark.parametrize(("order", "expected"), [("asc", ORDER_ASC), ("desc", ORDER_DESC), (None, ORDER_ASC)])
def test_order_by_a_metadata_key_pages_the_same_on_both_stores(live, order, expected):
    server = live()
    library_of(server, "photos", PHOTOS)
    params = {"order_by": "date", **({"order": order} if order else {})}
    assert listed(server, "photos", limit=1000, **params) == expected
    assert listed(server, "photos", limit=2, **params) == expected  # five pages, each a full read


def test_an_ordered_listing_neither_repeats_nor_skips_across_writes(live):
    server = live()
    library_of(server, "photos", PHOTOS)
    first = server.client.get("/libraries/photos/images", params={"order_by": "date", "limit": 3}).json()
    assert [image["id"] for image in first["images"]] == ORDER_ASC[:3]  # p05, p06, p01
    server.client.delete("/libraries/photos/images/p02")  # not served yet
    server.client.delete("/libraries/photos/images/p06")  # served
    for seed, (image_id, date) in enumerate([("p00", "2000-01-01"), ("p10", "2030-01-01")]):  # before, after
        image = {"img": b64(image_bytes(50 + seed)), "id": image_id, "metadata": {"date": date}, "dedup": False}
        assert server.post("/libraries/photos/images", image).json()["status"] == 1
    rest = listed(server, "photos", order_by="date", limit=2, next_token=first["next_token"])
    assert rest == ["p03", "p04", "p10", "p09", "p07", "p08"]


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"order_by": "date", "order": "newest"}, "invalid_value", "order:"),
        ({"order": "desc"}, "invalid_value", "order:"),
        ({"order_by": "$date"}, "invalid_value", "order_by:"),
        ({"order_by": "__imsim__"}, "invalid_value", "order_by:"),
        ({"order_by": "date", "next_token": encode_token({"after": "p01"})}, "invalid_next_token", "next_token:"),
        (
            {"next_token": encode_token({"order_by": "date", "desc": False, "id": "p01"})},
            "invalid_next_token",
            "next_token:",
        ),
    ],
)
def test_bad_orders_are_400_naming_the_field(live, params, code, field):
    """The last two: an unordered listing's token given to an ordered one, and an ordered token unordered."""
    server = live()
    library_of(server, "photos", {"p01": PHOTOS["p01"]})
    answer = server.client.get("/libraries/photos/images", params=params)
    assert answer.status_code == 400 and answer.json()["code"] == code, answer.text
    assert answer.json()["message"].startswith(field)


def test_an_ordered_token_is_refused_by_another_order(live):
    server = live()
    library_of(server, "photos", PHOTOS)
    page = server.client.get("/libraries/photos/images", params={"order_by": "date", "limit": 2}).json()
    other = server.client.get(
        "/libraries/photos/images", params={"order_by": "date", "order": "desc", "next_token": page["next_token"]}
    )
    assert other.status_code == 400 and other.json()["code"] == "invalid_next_token"


@pytest.mark.parametrize(
    ("route", "body", "code", "field"),
    [
        ("count", {"filter": {"sku": {"$startsWith": ""}}}, "invalid_filter", "filter.sku.$startsWith:"),
        ("count", {"filter": {"sku": {"$startsWith": 1}}}, "invalid_filter", "filter.sku.$startsWith:"),
        ("count", {"filter": {"sku": {"$prefix": "A"}}}, "invalid_filter", "filter.sku.$prefix:"),
        ("count", {"filter": []}, "invalid_type", "filter"),
        ("delete-images", {"dry_run": True}, "missing_field", "filter"),
        ("delete-images", {"filter": {"sku": {"$startsWith": ""}}}, "invalid_filter", "filter.sku.$startsWith:"),
        ("delete-images", {"filter": {}, "dry_run": "yes"}, "invalid_type", "dry_run"),
        ("delete-images", {"filter": {}, "dryrun": True}, "unknown_field", "dryrun"),
    ],
)
def test_bad_count_and_delete_requests_are_400_naming_the_field(live, route, body, code, field):
    server = live()
    library_of(server, "photos", {"p01": PHOTOS["p01"]})
    answer = server.post(f"/libraries/photos/{route}", body)
    assert answer.status_code == 400 and answer.json()["code"] == code, answer.text
    assert field in answer.json()["message"]
    assert ("status" in answer.json()) == (route == "delete-images")  # a write's error carries status -1
    assert count(server, "photos") == 1


def test_a_full_read_past_the_bound_is_409_naming_the_setting(live):
    server = live(max_scan_images=2)
    library_of(server, "photos", {key: PHOTOS[key] for key in ("p01", "p02", "p03")})
    refused = [
        server.post("/libraries/photos/count", {"filter": {"sku": "AB-1"}}),
        server.post("/libraries/photos/delete-images", {"filter": {"sku": "AB-1"}, "dry_run": True}),
        server.client.get("/libraries/photos/images", params={"order_by": "date"}),
    ]
    for answer, field in zip(refused, ["filter:", "filter:", "order_by:"], strict=True):
        assert answer.status_code == 409 and answer.json()["code"] == "scan_too_large", answer.text
        assert answer.json()["message"].startswith(field) and "IMSIM_MAX_SCAN_IMAGES" in answer.json()["message"]
    assert count(server, "photos") == 3  # no filter: the library's own count, no read
    assert len(listed(server, "photos", limit=2)) == 3  # the unordered listing is a page at a time


def test_the_s3_vectors_bound_is_ten_thousand_unless_set(tiny_settings):
    assert S3VectorsStore.scan_limit_by_default == 10_000
    from runtime.libraries.local import LocalStore

    assert LocalStore.scan_limit_by_default is None


def test_a_write_that_comes_while_a_delete_by_filter_holds_the_library_is_not_lost(live):
    """A metadata update sent while the delete holds the library waits for it: it then finds the image
    gone (404), and is never acknowledged (200) for an image the delete then removes."""
    server = live()
    library_of(server, "photos", PHOTOS)
    store = server.store
    holding, release = threading.Event(), threading.Event()
    remove_many = store._remove_many

    def held_remove(held, images):
        holding.set()
        release.wait(30)
        remove_many(held, images)

    store._remove_many = held_remove
    answers = {}
    deleting = threading.Thread(
        target=lambda: answers.update(
            delete=server.post("/libraries/photos/delete-images", {"filter": {"album": {"$startsWith": "2019/"}}})
        )
    )
    deleting.start()
    assert holding.wait(30)
    patching = threading.Thread(
        target=lambda: answers.update(
            patch=server.client.patch("/libraries/photos/images/p01", json={"metadata": {"album": "kept"}})
        )
    )
    patching.start()
    patching.join(1.0)  # gives an update that did not wait the time to be answered while the delete holds
    release.set()
    deleting.join(30)
    patching.join(30)
    assert answers["delete"].json()["deleted"] == 2
    assert answers["patch"].status_code == 404, answers["patch"].text
    assert server.client.get("/libraries/photos/images/p01").status_code == 404
