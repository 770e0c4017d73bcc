"""Search by positive and negative examples, and ``group_by``, through the real HTTP server on both stores
(the embedded store, and S3 Vectors on moto), with the tiny random-weights model.

The expected answers are computed from the model's own vectors of the same pictures and texts (the
server's embedder, the path every request takes), so they hold whatever the random weights score.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.engines.priority import INTERACTIVE
from runtime.libraries.examples import MAX_EXAMPLES
from runtime.libraries.grouping import MAX_PER_GROUP
from runtime.libraries.local import LocalStore
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer
from tests.runtime.libraries.test_stores import aws  # noqa: F401 (moto's S3 Vectors and DynamoDB, a fixture)

IMAGES = 8


def img(seed: int) -> str:
    return b64(image_bytes(seed))


class RecordingEngine:
    """The real engine, recording each forward pass: (kind, how many, priority)."""

    def __init__(self, engine):
        self.engine = engine
        self.passes: list[tuple[str, int, object]] = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def encode_images(self, pixels, priority=INTERACTIVE):
        self.passes.append(("images", len(pixels), priority))
        return self.engine.encode_images(pixels, priority)

    def encode_texts(self, texts, priority=INTERACTIVE):
        self.passes.append(("texts", len(texts), priority))
        return self.engine.encode_texts(texts, priority)


@pytest.fixture(params=["local", "s3vectors"])
def api(request, tiny_settings, tiny_engine, tmp_path):
    """A server on loopback whose libraries are in the store of the parameter; ``api.engine`` records passes."""
    from runtime.libraries.aws.s3vectors import S3VectorsStore
    from runtime.settings import Settings
    from tests.runtime.libraries.test_stores import BUCKET, TABLE

    engine = RecordingEngine(tiny_engine)
    with LiveServer.start(tiny_settings.replace(data_dir=str(tmp_path / "data")), engine) as server:
        state = server.server.config.app.state
        if request.param == "s3vectors":
            vectors, dynamodb, _ = request.getfixturevalue("aws")
            settings = Settings(store="s3vectors", vector_bucket=BUCKET, registry_table=TABLE)
            state.libraries = S3VectorsStore(settings, tiny_engine.dimension, s3vectors=vectors, dynamodb=dynamodb)
        server.engine = engine
        server.embed = lambda inputs: state.embedder.embed(inputs, INTERACTIVE)
        yield server


def fill(api, metadata=lambda n: {"n": n}, count=IMAGES, name="shop") -> None:
    assert api.post("/libraries", {"name": name}).status_code == 201
    for start in range(0, count, 32):
        images = [{"img": img(n), "id": f"p{n}", "metadata": metadata(n)} for n in range(start, min(start + 32, count))]
        answer = api.post(f"/libraries/{name}/images", {"images": images, "dedup": False})
        assert [item["status"] for item in answer.json()["results"]] == [1] * len(images), answer.text


def vectors_of(api, inputs) -> np.ndarray:
    from runtime.embedder import Input

    return api.embed([Input(kind, value, "test") for kind, value in inputs])


def search(api, body, name="shop") -> dict:
    answer = api.post(f"/libraries/{name}/search", body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_more_like_these_not_those_is_the_documented_query_with_the_stored_examples_left_out(api):
    fill(api)
    stored = vectors_of(api, [("img", img(n)) for n in range(IMAGES)])
    positive, negative = [{"id": "p0"}, {"img": img(20)}, {"text": "a red square"}], [{"id": "p1"}, {"img": img(21)}]
    api.engine.passes.clear()
    answer = search(api, {"positive": positive, "negative": negative, "top_k": 4})
    # every image example in one forward pass, the text in another, both at interactive priority
    assert sorted(api.engine.passes) == [("images", 2, INTERACTIVE), ("texts", 1, INTERACTIVE)]

    p = np.stack([stored[0], *vectors_of(api, [("img", img(20)), ("text", "a red square")])]).mean(axis=0)
    n = np.stack([stored[1], vectors_of(api, [("img", img(21))])[0]]).mean(axis=0)
    query = (2 * p - n) / np.linalg.norm(2 * p - n)
    scores = {f"p{k}": (1 + float(stored[k] @ query)) / 2 for k in range(2, IMAGES)}  # p0, p1: examples
    expected = sorted(scores, key=lambda image_id: -scores[image_id])[:4]
    assert [match["id"] for match in answer["matches"]] == expected
    assert [match["score"] for match in answer["matches"]] == pytest.approx([scores[i] for i in expected], abs=1e-4)
    assert answer["partial"] is False and "groups" not in answer

    one = search(api, {"positive": [{"id": "p3"}], "top_k": 5})  # one stored positive: "more like this"
    assert one["matches"] == search(api, {"id": "p3", "top_k": 5})["matches"]


def test_bad_examples_are_refused_naming_the_field(api):
    fill(api, count=2)

    def refused(body, status, code, field):
        answer = api.post("/libraries/shop/search", body)
        assert answer.status_code == status, answer.text
        assert answer.json()["code"] == code and answer.json()["message"].startswith(f"{field}"), answer.text

    many = [{"id": "p0"}] * MAX_EXAMPLES
    refused({"positive": many, "negative": [{"id": "p1"}]}, 400, "batch_too_large", "negative[0]:")
    refused({"negative": [{"id": "p1"}]}, 400, "missing_input", "positive:")
    refused({"positive": []}, 400, "missing_input", "positive:")
    refused({"positive": [{}]}, 400, "missing_input", "positive[0]:")
    refused({"positive": [{"id": "p0"}, {"id": "p1", "text": "x"}]}, 400, "ambiguous_input", "positive[1]:")
    refused({"positive": [{"img": img(1), "text": "x"}]}, 400, "ambiguous_input", "positive[0]:")
    refused({"positive": [{"id": "p0"}], "text": "a shoe"}, 400, "ambiguous_input", "request body:")
    refused({"positive": [{"id": "p0"}], "negative": [{"id": "zz"}]}, 404, "image_not_found", "negative[0].id:")
    refused({"positive": [{"id": "a b"}]}, 400, "invalid_image_id", "positive[0].id:")
    refused({"positive": [{"img": "not base64!"}]}, 400, "invalid_base64", "positive[0].img")
    refused({"positive": [{"text": "  "}]}, 400, "text_empty", "positive[0].text")
    refused({"positive": [{"id": "p0", "color": "red"}]}, 400, "unknown_field", "positive[0].color")


def test_group_by_answers_the_best_per_group_of_each_album_best_group_first(api):
    albums = ["summer", "winter", "autumn"]
    fill(api, metadata=lambda n: {"album": albums[n % 3]} if n != 7 else {"note": "no album"}, count=12)
    query = {"text": "a red square"}
    everything = search(api, {**query, "top_k": 12})["matches"]
    assert len(everything) == 12
    expected: dict[str, list[str]] = {}
    for match in everything:
        album = match["metadata"].get("album")
        if album is not None and len(expected.setdefault(album, [])) < 2:
            expected[album].append(match["id"])
    answer = search(api, {**query, "group_by": "album", "per_group": 2, "top_k": 2})
    assert [(group["value"], [m["id"] for m in group["matches"]]) for group in answer["groups"]] == list(
        expected.items()
    )[:2]
    assert [m["id"] for m in answer["matches"]] == [i for ids in list(expected.values())[:2] for i in ids]
    assert answer["partial"] is False

    like = search(api, {"id": everything[0]["id"], "group_by": "album", "top_k": 3})
    assert everything[0]["id"] not in [m["id"] for m in like["matches"]] and len(like["groups"]) == 3
    examples = search(api, {"positive": [{"id": "p0"}], "group_by": "album", "top_k": 3, "filter": {"album": "winter"}})
    assert [group["value"] for group in examples["groups"]] == ["winter"] and examples["partial"] is False


def test_group_by_says_partial_when_s3_vectors_could_not_see_far_enough(api):
    """101 images of one album, 2 groups asked: S3 Vectors sees 100 a query, so it cannot know no second
    album follows (``partial``); the local store saw every image (its bound is 10,000)."""
    fill(api, metadata=lambda n: {"album": "one"}, count=101)
    answer = search(api, {"text": "a red square", "group_by": "album", "top_k": 2})
    assert [group["value"] for group in answer["groups"]] == ["one"]
    local = isinstance(api.server.config.app.state.libraries, LocalStore)
    assert answer["partial"] is (not local)
    assert search(api, {"text": "a red square", "group_by": "album", "top_k": 1})["partial"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"per_group": 2}, "per_group"),
        ({"group_by": "album", "per_group": 0}, "per_group"),
        ({"group_by": "album", "per_group": MAX_PER_GROUP + 1}, "per_group"),
        ({"group_by": "$album"}, "group_by"),
        ({"group_by": ""}, "group_by"),
    ],
)
def test_a_bad_grouping_is_refused_before_any_model_work(api, body, field):
    fill(api, count=1)
    api.engine.passes.clear()
    answer = api.post("/libraries/shop/search", {"text": "a red square", **body})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_value" and answer.json()["message"].startswith(f"{field}: ")
    assert api.engine.passes == []


def test_the_explorer_shows_both_and_its_examples_are_answered(api):
    document = api.client.get("/api-explorer/openapi.json").json()
    operation = document["paths"]["/libraries/{name}/search"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert {"examples", "group_by"} <= set(examples)
    answers = operation["responses"]["200"]["content"]["application/json"]["examples"]
    assert answers["groups"]["value"]["groups"][0]["value"] == "summer"
    assert f"1 to {MAX_EXAMPLES} examples" in document["info"]["description"]
    assert f"`per_group` (1 to {MAX_PER_GROUP})" in document["info"]["description"]
    assert api.post("/libraries", {"name": "products"}).status_code == 201
    for image_id, seed in (("sku-1042", 1), ("sku-1043", 2), ("sku-1044", 3)):  # the examples' ids, and one more
        added = api.post(
            "/libraries/products/images", {"img": img(seed), "id": image_id, "metadata": {"album": "a"}, "dedup": False}
        )
        assert added.status_code == 200, added.text
    for name in ("examples", "group_by"):
        answer = search(api, examples[name]["value"], name="products")
        assert answer["matches"] and {m["id"] for m in answer["matches"]} <= {"sku-1042", "sku-1043", "sku-1044"}
    examples_answer = search(api, examples["examples"]["value"], name="products")
    assert [m["id"] for m in examples_answer["matches"]] == ["sku-1044"]  # the stored examples are left out
