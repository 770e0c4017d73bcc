"""Field names a user guesses are refused with the one they meant (through the real HTTP server)."""

from __future__ import annotations

import pytest

from runtime.api.field_hints import fields_at, unknown_field_hint
from runtime.api.library_schemas import SearchRequest
from runtime.api.schemas import SimilarityRequest
from tests.fakes.images import b64, image_bytes

PNG = b64(image_bytes(1))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"image": PNG}, "image: unknown field; did you mean 'img'?"),
        ({"file": PNG}, "file: unknown field; did you mean 'img'?"),
        ({"b64": PNG}, "b64: unknown field; did you mean 'img'?"),
        ({"image_url": "https://example.com/a.jpg"}, "image_url: unknown field; did you mean 'url'?"),
        ({"imageUrl": "https://example.com/a.jpg"}, "imageUrl: unknown field; did you mean 'url'?"),
        ({"image_1": PNG, "img_2": PNG}, "image_1: unknown field; did you mean 'img_1'?"),
        ({"inputs": [{"image": PNG}]}, "inputs[0].image: unknown field; did you mean 'img'?"),
    ],
)
def test_similarity_names_the_field_meant(server, body, message):
    answer = server.post("/image-similarity", body)
    assert answer.status_code == 400
    assert answer.json() == {"message": message, "code": "unknown_field"}


def test_library_writes_and_searches_name_it_too(server):
    assert server.post("/libraries", {"name": "hints"}).status_code in (201, 409)
    added = server.post("/libraries/hints/images", {"image": PNG})
    assert added.json() == {
        "message": "image: unknown field; did you mean 'img'?",
        "code": "unknown_field",
        "status": -1,
    }
    searched = server.post("/libraries/hints/search", {"text": "a cat", "topk": 3})
    assert searched.json()["message"] == "topk: unknown field; did you mean 'top_k'?"


def test_a_form_part_is_named_the_same_way(server):
    answer = server.client.post("/image-similarity", files={"image": ("a.png", image_bytes(1), "image/png")})
    assert answer.status_code == 400
    assert answer.json()["message"] == "part 'image': unknown part; did you mean 'img'?"


def test_a_name_far_from_any_lists_the_fields():
    assert unknown_field_hint("zzz", ["url", "img", "text"]) == "this body takes url, img, text"


def test_fields_at_walks_into_lists_of_models():
    assert fields_at(SimilarityRequest, ["inputs", "0"]) == ["url", "img", "text"]
    assert "top_k" in fields_at(SearchRequest, [])
    assert fields_at(SimilarityRequest, ["text"]) == []


def test_an_image_body_carries_the_add_s_options_in_the_query(server):
    assert server.post("/libraries", {"name": "query_opts"}).status_code == 201
    picture = image_bytes(61)
    added = server.client.post(
        "/libraries/query_opts/images",
        params={"id": "shoe-1", "metadata": '{"color": "red", "price": 59}', "dedup": "false"},
        content=picture,
        headers={"content-type": "image/png"},
    )
    assert added.status_code == 200, added.text
    assert added.json()["id"] == "shoe-1"
    stored = server.client.get("/libraries/query_opts/images/shoe-1").json()
    assert stored["metadata"] == {"color": "red", "price": 59}
    again = server.client.post(  # dedup=false: the same picture is added again under its own id
        "/libraries/query_opts/images", params={"id": "shoe-2", "dedup": "false"}, content=picture
    )
    assert again.json()["id"] == "shoe-2"
    form = server.client.post(
        "/libraries/query_opts/images",
        params={"id": "shoe-3", "dedup": "false"},
        files={"img": ("a.png", image_bytes(62), "image/png")},
    )
    assert form.json()["id"] == "shoe-3"
    searched = server.client.post("/libraries/query_opts/search", params={"top_k": "2"}, content=picture)
    assert len(searched.json()["matches"]) == 2


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        ({"id": "x", "metadata": "{not json"}, "invalid_json", "query parameter 'metadata': not JSON"),
        ({"threshold": "high"}, "invalid_type", "threshold"),
        ({"idd": "x"}, "unknown_field", "query parameter 'idd': unknown; did you mean 'id'?"),
    ],
)
def test_query_options_are_checked_like_fields(server, params, code, message):
    server.post("/libraries", {"name": "query_bad"})
    answer = server.client.post("/libraries/query_bad/images", params=params, content=image_bytes(63))
    assert answer.status_code == 400
    assert answer.json()["code"] == code and message in answer.json()["message"]
    assert answer.json()["status"] == -1


def test_unknown_query_parameters_are_refused_on_every_route(server):
    listing = server.client.get("/libraries/query_opts/images", params={"limt": "3"})
    assert listing.json() == {
        "message": "query parameter 'limt': unknown; did you mean 'limit'?",
        "code": "unknown_field",
    }
    assert server.client.get("/ping", params={"verbose": "1"}).json()["code"] == "unknown_field"
    similarity = server.post("/image-similarity?foo=1", {"text": "a cat"})
    assert similarity.status_code == 400 and similarity.json()["code"] == "unknown_field"


def test_with_a_json_body_the_fields_go_in_the_body(server):
    answer = server.post("/libraries/query_opts/images?id=shoe-9", {"img": b64(image_bytes(64))})
    assert answer.status_code == 400
    assert answer.json()["message"] == "query parameter 'id': with a JSON body, give id in the body"
