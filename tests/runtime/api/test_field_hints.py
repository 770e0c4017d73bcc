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
