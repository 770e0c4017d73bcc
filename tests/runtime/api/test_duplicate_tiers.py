"""The three tiers of duplicates through the real HTTP server, on both stores (S3 Vectors: moto's).

``exact``: the same file; ``copy``: the same picture re-encoded or resized (perceptual hash); ``similar``:
an image scoring at or above a threshold, refused only when the add or the library gives one."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.fakes.images import b64, image_bytes
from tests.runtime.api.test_libraries import fresh, similarity  # noqa: F401 (fixture)
from tests.runtime.libraries.test_stores import aws  # noqa: F401 (moto's S3 Vectors and DynamoDB, a fixture)

PHOTO = (320, 240)


def photo(seed: int) -> bytes:
    return image_bytes(seed, size=PHOTO)


def reencoded_jpeg(data: bytes, scale: float, quality: int) -> bytes:
    """The picture again, resized and saved as a JPEG: other bytes, another embedding, the same picture."""
    image = Image.open(io.BytesIO(data))
    image = image.resize((int(image.width * scale), int(image.height * scale)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(params=["local", "s3vectors"])
def server(request, fresh, tiny_engine):  # noqa: F811 (the fixture imported above)
    """A live server on loopback with the local store, or with the S3 Vectors store on moto."""
    live = fresh()
    if request.param == "s3vectors":
        from runtime.libraries.aws.s3vectors import S3VectorsStore
        from runtime.settings import Settings
        from tests.runtime.libraries.test_stores import BUCKET, TABLE

        vectors, dynamodb, _ = request.getfixturevalue("aws")
        settings = Settings(store="s3vectors", vector_bucket=BUCKET, registry_table=TABLE)
        live.server.config.app.state.libraries = S3VectorsStore(
            settings, tiny_engine.dimension, s3vectors=vectors, dynamodb=dynamodb
        )
    return live


def add(server, library: str, data: bytes, **fields) -> dict:
    answer = server.post(f"/libraries/{library}/images", {"img": b64(data), **fields})
    assert answer.status_code == 200, answer.text
    return answer.json()


def close_pair(server) -> tuple[int, int, float]:
    """Two distinct photos the model scores at 0.97 or more (the old default refused the second)."""
    for second in range(2, 60):
        score = similarity_of(server, photo(1), photo(second))
        if 0.97 <= score < 0.9999:
            return 1, second, score
    raise AssertionError("no pair of distinct photos scores 0.97 or more")


def similarity_of(server, first: bytes, second: bytes) -> float:
    answer = server.post("/image-similarity", {"img_1": b64(first), "img_2": b64(second)})
    return float(answer.json()["similarity"])


def test_a_re_encoded_jpeg_of_an_added_photo_is_a_copy(server):
    assert server.post("/libraries", {"name": "shots"}).status_code == 201
    original = photo(11)
    assert add(server, "shots", original, id="original", metadata={"album": "rome"})["status"] == 1
    for scale, quality in ((1.0, 40), (0.5, 85), (1.5, 70)):
        answer = add(server, "shots", reencoded_jpeg(original, scale, quality))
        assert answer["status"] == 0 and answer["tier"] == "copy" and answer["exact"] is False, answer
        assert answer["match"]["id"] == "original" and answer["match"]["metadata"] == {"album": "rome"}
    again = add(server, "shots", original)
    assert again["tier"] == "exact" and again["exact"] is True
    assert add(server, "shots", reencoded_jpeg(original, 1.0, 40), dedup=False)["status"] == 1
    assert server.client.get("/libraries/shots").json()["image_count"] == 2


def test_copies_within_one_batch_are_found(server):
    assert server.post("/libraries", {"name": "batch"}).status_code == 201
    original = photo(12)
    images = [{"img": b64(original), "id": "a"}, {"img": b64(reencoded_jpeg(original, 0.5, 60)), "id": "b"}]
    results = server.post("/libraries/batch/images", {"images": images}).json()["results"]
    assert [result["status"] for result in results] == [1, 0]
    assert results[1]["tier"] == "copy" and results[1]["match"]["id"] == "a"


def test_a_distinct_photo_is_added_by_default_however_close_its_embedding(server):
    first, second, score = close_pair(server)
    assert server.post("/libraries", {"name": "trip"}).status_code == 201
    assert add(server, "trip", photo(first), id="first")["status"] == 1
    kept = add(server, "trip", photo(second), id="second")
    assert kept["status"] == 1 and kept["score"] == pytest.approx(score, abs=1e-4)


def test_a_threshold_refuses_similar_images(server):
    first, second, score = close_pair(server)
    assert server.post("/libraries", {"name": "strict"}).status_code == 201
    assert add(server, "strict", photo(first), id="first")["status"] == 1
    refused = add(server, "strict", photo(second), threshold=round(score - 0.001, 4))
    assert refused["status"] == 0 and refused["tier"] == "similar" and refused["match"]["id"] == "first"
    assert add(server, "strict", photo(second), threshold=round(score + 0.0005, 5))["status"] == 1


def test_the_library_s_threshold_applies_and_the_call_s_overrides_it(server):
    first, second, score = close_pair(server)
    created = server.post("/libraries", {"name": "shop", "threshold": round(score - 0.001, 4)})
    assert created.status_code == 201 and created.json()["threshold"] == round(score - 0.001, 4)
    assert server.client.get("/libraries/shop").json()["threshold"] == round(score - 0.001, 4)
    assert server.post("/libraries", {"name": "plain"}).json()["threshold"] is None
    assert add(server, "shop", photo(first), id="first")["status"] == 1
    refused = add(server, "shop", photo(second))
    assert refused["status"] == 0 and refused["tier"] == "similar"
    assert add(server, "shop", photo(second), threshold=0.99999)["status"] == 1
    assert add(server, "shop", photo(second + 100), dedup=False)["status"] == 1


def test_a_bad_library_threshold_is_refused(server):
    answer = server.post("/libraries", {"name": "bad", "threshold": 1.5})
    assert answer.status_code == 400 and "threshold" in answer.json()["message"], answer.text
