"""Uploads through API Gateway: the REST API declares the binary media types, and Lambda proxy events
built the way API Gateway builds them from that declaration are answered by the real Lambda handler.

API Gateway base64-encodes a request body (``isBase64Encoded: true``) when its Content-Type matches
one of the API's binary media types (``*`` a wildcard), and passes every other body as text.
"""

from __future__ import annotations

import base64
import fnmatch
import json
from pathlib import Path

import numpy as np
import pytest

from infra.builder import build_app
from tests.fakes.images import b64, image_bytes
from tests.fakes.lambda_events import LambdaContext, proxy_event

ROOT = Path(__file__).resolve().parents[2]
PNG = image_bytes(31)
JSON_TYPES = [None, "application/json", "application/x-www-form-urlencoded"]


@pytest.fixture(scope="module")
def binary_media_types(tmp_path_factory) -> list[str]:
    outdir = tmp_path_factory.mktemp("cdk")
    build_app({"backend": "lambda"}, nag=False, validation=False, outdir=str(outdir)).synth()
    for path in outdir.glob("*.template.json"):
        for resource in json.loads(path.read_text())["Resources"].values():
            if resource["Type"] == "AWS::ApiGateway::RestApi":
                return resource["Properties"]["Body"]["x-amazon-apigateway-binary-media-types"]
    raise AssertionError("no REST API in the synthesized templates")


def is_binary(content_type: str | None, media_types: list[str]) -> bool:
    """API Gateway's rule: the Content-Type (without parameters) matches a declared type."""
    if not content_type:
        return False
    media_type = content_type.split(";")[0].strip().lower()
    return any(fnmatch.fnmatchcase(media_type, pattern) for pattern in media_types)


@pytest.mark.slow
def test_uploads_are_binary_and_json_stays_text(binary_media_types):
    assert set(binary_media_types) == {"image/*", "application/octet-stream", "multipart/form-data"}
    for content_type in ("image/jpeg", "image/png", "image/heic", "application/octet-stream"):
        assert is_binary(content_type, binary_media_types), content_type
    assert is_binary("multipart/form-data; boundary=x", binary_media_types)
    for content_type in (*JSON_TYPES, "text/plain"):  # text/plain: passed as text, and refused (415)
        assert not is_binary(content_type, binary_media_types), content_type
    assert not any(pattern in ("*/*", "*", "application/*", "text/*") for pattern in binary_media_types)


# --- the Lambda handler with API Gateway's events ------------------------------------------------


def api_event(path: str, body: bytes, content_type: str | None, media_types: list[str]) -> dict:
    """The proxy event of a request, its body encoded as API Gateway encodes it for these media types."""
    return proxy_event(path, body, content_type=content_type, binary=is_binary(content_type, media_types))


def invoke(handler, event: dict) -> dict:
    answer = handler(event, LambdaContext())  # Lambda always passes its context; Powertools reads it
    assert answer["statusCode"] == 200, answer
    assert not answer.get("isBase64Encoded"), "a JSON answer goes back as text"
    return json.loads(answer["body"])


@pytest.mark.slow
def test_json_bodies_reach_lambda_as_text_and_are_read_whatever_their_type(lambda_handler, binary_media_types):
    body = json.dumps({"img": b64(PNG)}).encode()
    expected = None
    for content_type in JSON_TYPES:
        event = api_event("/image-similarity", body, content_type, binary_media_types)
        assert event["isBase64Encoded"] is False
        result = np.asarray(invoke(lambda_handler, event)["result"])
        expected = result if expected is None else expected
        np.testing.assert_allclose(result, expected, atol=1e-6)


@pytest.mark.slow
def test_json_without_a_header_is_read_even_if_it_arrives_base64_encoded(lambda_handler, binary_media_types):
    """Whichever way API Gateway passes a body without Content-Type, it is read as JSON."""
    body = json.dumps({"text": "a photo of a cat"}).encode()
    as_text = api_event("/text_similarity", body, None, binary_media_types)
    as_base64 = {**as_text, "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
    np.testing.assert_allclose(invoke(lambda_handler, as_base64)["result"], invoke(lambda_handler, as_text)["result"])


@pytest.mark.slow
def test_binary_and_multipart_bodies_are_decoded_from_base64(lambda_handler, binary_media_types):
    as_json = api_event(
        "/image-similarity", json.dumps({"img": b64(PNG)}).encode(), "application/json", binary_media_types
    )
    expected = np.asarray(invoke(lambda_handler, as_json)["result"])

    raw = api_event("/image-similarity", PNG, "image/png", binary_media_types)
    assert raw["isBase64Encoded"] is True
    np.testing.assert_allclose(invoke(lambda_handler, raw)["result"], expected, atol=1e-6)

    boundary = "----upload7MA4YWxkTrZu0gW"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="img"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + PNG
        + f"\r\n--{boundary}--\r\n".encode()
    )
    multipart = api_event("/text_similarity", form, f"multipart/form-data; boundary={boundary}", binary_media_types)
    assert multipart["isBase64Encoded"] is True
    np.testing.assert_allclose(invoke(lambda_handler, multipart)["result"], expected, atol=1e-6)
