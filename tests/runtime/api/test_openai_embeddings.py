"""``POST /v1/embeddings`` through the official ``openai`` package, pointed at a real loopback server."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import FileServer

PNG = image_bytes(1)
JPEG = image_bytes(3, size=(96, 64), fmt="JPEG", quality=90)
VERSION = "tiny-test-clip/tiny-random-test"


@pytest.fixture(scope="module")
def files():
    server = FileServer({"/a.jpg": (200, {"Content-Type": "image/jpeg"}, JPEG)})
    yield server
    server.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def similarity_vector(server, **slot) -> np.ndarray:
    response = server.post("/image-similarity", slot)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["result"], dtype=np.float32)


def test_text_image_and_mixed_lists_equal_image_similarity(server, client, files):
    data_url = f"data:image/png;base64,{b64(PNG)}"
    inputs = ["a red square", data_url, f"{files.base}/a.jpg"]
    answer = client.embeddings.create(model=VERSION, input=inputs, encoding_format="float")
    assert answer.model == VERSION
    assert [item.index for item in answer.data] == [0, 1, 2]
    expected = [
        similarity_vector(server, text="a red square"),
        similarity_vector(server, img=b64(PNG)),
        similarity_vector(server, url=f"{files.base}/a.jpg"),
    ]
    for item, want in zip(answer.data, expected, strict=True):
        assert len(item.embedding) == 512
        np.testing.assert_allclose(np.asarray(item.embedding, dtype=np.float32), want, atol=1e-6)
    assert answer.usage.prompt_tokens == 3


def test_one_string_and_base64_encoding(server, client):
    # The SDK asks for base64 when no encoding is given, and decodes it itself.
    by_default = client.embeddings.create(model="tiny-test-clip", input="a red square")
    want = similarity_vector(server, text="a red square")
    np.testing.assert_allclose(np.asarray(by_default.data[0].embedding, dtype=np.float32), want, atol=1e-6)
    raw = server.post("/v1/embeddings", {"model": VERSION, "input": ["a red square"], "encoding_format": "base64"})
    encoded = raw.json()["data"][0]["embedding"]
    assert np.array_equal(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), want)


def test_object_parts_name_the_kind(server):
    body = {"model": VERSION, "input": [{"image": b64(PNG)}, {"text": "http://example.com/not-fetched a text"}]}
    answer = server.post("/v1/embeddings", body)
    assert answer.status_code == 200, answer.text
    got = [np.asarray(item["embedding"], dtype=np.float32) for item in answer.json()["data"]]
    np.testing.assert_allclose(got[0], similarity_vector(server, img=b64(PNG)), atol=1e-6)
    np.testing.assert_allclose(
        got[1], similarity_vector(server, text="http://example.com/not-fetched a text"), atol=1e-6
    )


def test_errors_arrive_in_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as unknown_model:
        client.embeddings.create(model="text-embedding-3-small", input="a cat")
    assert unknown_model.value.body["code"] == "model_not_found"
    assert VERSION in unknown_model.value.body["message"]
    with pytest.raises(openai.BadRequestError) as wrong_size:
        client.embeddings.create(model=VERSION, input="a cat", dimensions=256)
    assert wrong_size.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError) as bad_image:
        client.embeddings.create(model=VERSION, input=["a cat", "data:image/png;base64,bm90IGFuIGltYWdl"])
    assert bad_image.value.body["param"] == "input[1]"
    assert bad_image.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": VERSION, "input": []}, "input", "missing_input"),
        ({"model": VERSION, "input": ["t"] * 33}, "input", "batch_too_large"),
        ({"model": VERSION, "input": [[1, 2, 3]]}, None, "invalid_type"),
        ({"model": VERSION, "input": "a", "encoding_format": "int8"}, "encoding_format", "invalid_value"),
        ({"model": VERSION, "input": "a", "temperature": 1}, "temperature", "unknown_field"),
        ({"input": "a"}, "model", "missing_field"),
    ],
)
def test_bad_bodies_name_the_field(server, body, param, code):
    answer = server.post("/v1/embeddings", body)
    assert 400 <= answer.status_code < 500
    error = answer.json()["error"]
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param


def test_other_routes_keep_their_error_shape(server):
    answer = server.post("/image-similarity", {"text": ""})
    assert set(answer.json()) == {"message", "code"}


def test_models_lists_the_served_one(client):
    assert [model.id for model in client.models.list()] == [VERSION]


def test_the_sdk_can_sign_for_an_iam_deployment(server):
    """docs/api.md's recipe for ``auth=AWS_IAM``: the SDK's HTTP client signs each request (SigV4)."""
    import httpx

    from runtime.client import SigV4

    sent: list[httpx.Headers] = []
    signing = httpx.Client(
        event_hooks={"request": [SigV4("us-east-1").sign, lambda request: sent.append(request.headers)]}
    )
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", http_client=signing, max_retries=0)
    answer = client.embeddings.create(model=VERSION, input="a red square")
    assert len(answer.data[0].embedding) == 512
    assert sent[0]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "x-amz-date" in sent[0]
