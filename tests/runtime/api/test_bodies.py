"""Bodies by Content-Type (runtime/api/bodies.py), through a real HTTP server on loopback:
JSON whatever the header says, raw image bytes, and multipart/form-data."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import requests

from tests.fakes.images import b64, image_bytes

PNG = image_bytes(11)
JPEG = image_bytes(12, size=(96, 64), fmt="JPEG", quality=90)
SIMILARITY_PATHS = ["/image-similarity", "/text_similarity"]


def result_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["result"])


def error_of(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text
    return response.json()["message"]


def base64_vector(server, data: bytes) -> np.ndarray:
    return result_of(server.post("/image-similarity", {"img": b64(data)}))


# --- JSON without the JSON Content-Type ----------------------------------------------------


@pytest.mark.parametrize("path", SIMILARITY_PATHS)
def test_the_seed_python_client_gets_200(server, path):
    """The AI Solution Kit's example: ``requests.request("POST", url, data=json.dumps(...))``, no header."""
    response = requests.request("POST", server.url + path, data=json.dumps({"img": b64(PNG)}), timeout=60)
    assert "content-type" not in {name.lower() for name in response.request.headers}
    np.testing.assert_allclose(result_of(response), base64_vector(server, PNG), atol=1e-6)


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "application/x-anything"])
def test_json_is_read_whatever_the_content_type(server, content_type):
    headers = {"content-type": content_type} if content_type else {}
    body = json.dumps({"text_1": "a red square", "text_2": "a red square"}).encode()
    response = server.client.post("/image-similarity", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_libraries_read_json_without_its_content_type(server):
    form = {"content-type": "application/x-www-form-urlencoded"}
    created = server.client.post("/libraries", content=json.dumps({"name": "plain_json"}), headers=form)
    assert created.status_code == 201, created.text
    added = server.client.post(
        "/libraries/plain_json/images", content=json.dumps({"img": b64(PNG), "id": "p"}), headers={}
    )
    assert added.json()["status"] == 1, added.text
    found = server.client.post("/libraries/plain_json/search", content=json.dumps({"img": b64(PNG)}), headers=form)
    assert found.json()["matches"][0]["id"] == "p", found.text
    server.client.delete("/libraries/plain_json")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_d_without_a_header_gets_200(server):
    out = subprocess.run(
        ["curl", "-s", "-d", json.dumps({"text": "a cat"}), f"{server.url}/image-similarity"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert len(json.loads(out.stdout)["result"]) == 512


@pytest.mark.parametrize("content_type", ["text/plain", "TEXT/PLAIN; charset=utf-8"])
def test_text_plain_is_not_read_as_json(server, content_type):
    """What any web page may POST without a preflight: refused, naming the types to send, and nothing is created."""
    body = json.dumps({"name": "from_text_plain"}).encode()
    for path in ("/libraries", "/image-similarity", "/libraries/from_text_plain/images"):
        response = server.client.post(path, content=body, headers={"content-type": content_type})
        message = error_of(response, 415, "unsupported_media_type")
        assert message.startswith("Content-Type: text/plain is not read; send JSON as application/json")
    assert server.client.get("/libraries/from_text_plain").status_code == 404


def test_json_errors_are_unchanged_without_the_header(server):
    plain = {"content-type": "application/x-www-form-urlencoded"}
    message = error_of(
        server.client.post("/image-similarity", content=b"{not json", headers=plain), 400, "invalid_json"
    )
    assert message.startswith("request body: invalid JSON")
    error_of(server.client.post("/image-similarity", content=b"[1, 2]", headers=plain), 400, "invalid_json")
    error_of(server.client.post("/image-similarity", content=b'{"txt": "x"}', headers={}), 400, "unknown_field")


def test_the_json_value_guard_is_as_strict_without_the_header(server):
    crowded = b"[" + b"{}," * 100_001 + b"{}]"
    for headers in ({}, {"content-type": "application/x-www-form-urlencoded"}):
        response = server.client.post("/image-similarity", content=crowded, headers=headers)
        error_of(response, 400, "json_too_large")


# --- binary bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SIMILARITY_PATHS)
@pytest.mark.parametrize(
    ("data", "content_type"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (PNG, "application/octet-stream")]
)
def test_a_binary_body_answers_single_mode_with_the_base64_vector(server, path, data, content_type):
    response = server.client.post(path, content=data, headers={"content-type": content_type})
    np.testing.assert_allclose(result_of(response), base64_vector(server, data), atol=1e-6)


def test_a_binary_body_is_not_counted_as_json(server):
    """Image bytes hold commas and brackets by chance; the JSON value guard must not refuse them."""
    commas = b"," * 200_000
    response = server.client.post("/image-similarity", content=commas, headers={"content-type": "image/jpeg"})
    error_of(response, 400, "not_an_image")


def test_bad_binary_bodies(server):
    octets = {"content-type": "application/octet-stream"}
    error_of(server.client.post("/image-similarity", content=b"", headers=octets), 400, "not_an_image")
    error_of(server.client.post("/image-similarity", content=b"not an image", headers=octets), 400, "not_an_image")
    message = error_of(server.client.post("/libraries", content=PNG, headers=octets), 415, "unsupported_media_type")
    assert "JSON body" in message


def test_the_body_size_guard_holds_for_uploads(tiny_settings, tiny_engine):
    from tests.fakes.servers import LiveServer

    with LiveServer.start(tiny_settings.replace(max_request_bytes=2_000), tiny_engine) as small:
        big = image_bytes(3, size=(256, 256))
        assert len(big) > 2_000
        response = small.client.post("/image-similarity", content=big, headers={"content-type": "image/png"})
        error_of(response, 413, "payload_too_large")
        response = small.client.post("/image-similarity", files={"img": ("big.png", big, "image/png")})
        error_of(response, 413, "payload_too_large")


def test_library_search_by_binary_body(server):
    assert server.post("/libraries", {"name": "binary_search"}).status_code == 201
    for seed in (21, 22, 23):
        added = server.post(
            "/libraries/binary_search/images", {"img": b64(image_bytes(seed)), "id": f"i{seed}", "dedup": False}
        )
        assert added.json()["status"] == 1, added.text
    query = image_bytes(22)
    response = server.client.post(
        "/libraries/binary_search/search", content=query, headers={"content-type": "image/png"}
    )
    assert response.status_code == 200, response.text
    best = response.json()["matches"][0]
    assert (best["id"], best["score"]) == ("i22", pytest.approx(1.0, abs=1e-5))
    server.client.delete("/libraries/binary_search")


# --- multipart/form-data --------------------------------------------------------------------


def test_a_file_part_gives_the_base64_vector(server):
    response = server.client.post("/text_similarity", files={"img": ("photo.jpg", JPEG, "image/jpeg")})
    np.testing.assert_allclose(result_of(response), base64_vector(server, JPEG), atol=1e-6)


def test_multipart_pair_mixes_a_file_and_a_text_part(server):
    by_form = server.client.post(
        "/image-similarity", files={"img_1": ("a.png", PNG, "image/png")}, data={"text_2": "a red square"}
    )
    by_json = server.post("/image-similarity", {"img_1": b64(PNG), "text_2": "a red square"})
    assert by_form.status_code == 200, by_form.text
    assert by_form.json()["similarity"] == pytest.approx(by_json.json()["similarity"], abs=1e-6)
    two_files = server.client.post(
        "/image-similarity", files={"img_1": ("a.png", PNG, "image/png"), "img_2": ("b.png", PNG, "image/png")}
    )
    assert two_files.json()["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_multipart_text_parts_hold_urls_texts_base64_and_json(server):
    by_text = server.client.post("/image-similarity", files={"text": (None, "a cat")})
    np.testing.assert_allclose(result_of(by_text), result_of(server.post("/image-similarity", {"text": "a cat"})))
    by_base64_part = server.client.post("/image-similarity", files={"img": (None, b64(PNG))})
    np.testing.assert_allclose(result_of(by_base64_part), base64_vector(server, PNG), atol=1e-6)
    batch = json.dumps([{"img": b64(PNG)}, {"text": "a cat"}])
    response = server.client.post("/image-similarity", files={"inputs": (None, batch)})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["results"][0], base64_vector(server, PNG), atol=1e-6)


def test_blank_form_fields_count_as_not_given(server):
    """An HTML form sends every field: empty text fields, and file inputs with no file chosen."""
    response = server.client.post(
        "/image-similarity",
        files=[("img", ("a.png", PNG, "image/png")), ("url", (None, "")), ("text", (None, "")), ("img_1", ("", b""))],
    )
    np.testing.assert_allclose(result_of(response), base64_vector(server, PNG), atol=1e-6)


def test_the_openapi_document_offers_the_uploads(server):
    document = server.client.get("/api-explorer/openapi.json").json()
    for path in ("/image-similarity", "/text_similarity", "/libraries/{name}/images", "/libraries/{name}/search"):
        content = document["paths"][path]["post"]["requestBody"]["content"]
        assert list(content) == ["application/json", "image/*", "application/octet-stream", "multipart/form-data"]
        assert content["application/octet-stream"]["schema"]["format"] == "binary"
        assert content["multipart/form-data"]["schema"]["properties"]["img"]["format"] == "binary"
    assert list(document["paths"]["/libraries"]["post"]["requestBody"]["content"]) == ["application/json"]
    form = document["paths"]["/libraries/{name}/images"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "a JSON string" in form["schema"]["properties"]["metadata"]["description"]


def test_library_add_and_search_by_multipart(server):
    assert server.post("/libraries", {"name": "forms"}).status_code == 201
    added = server.client.post(
        "/libraries/forms/images",
        files={"img": ("a.png", PNG, "image/png")},
        data={"id": "shirt-1", "metadata": json.dumps({"color": "red", "size": 2}), "dedup": "true"},
    )
    assert added.status_code == 200, added.text
    assert added.json()["id"] == "shirt-1"
    duplicate = server.client.post(
        "/libraries/forms/images", files={"img": ("again.png", PNG, "image/png")}, data={"threshold": "0.99"}
    )
    assert duplicate.json()["status"] == 0, duplicate.text
    found = server.client.post(
        "/libraries/forms/search",
        files={"img": ("q.png", PNG, "image/png")},
        data={"top_k": "1", "filter": json.dumps({"color": "red"})},
    )
    assert found.status_code == 200, found.text
    assert found.json()["matches"] == [
        {"id": "shirt-1", "score": pytest.approx(1.0, abs=1e-5), "metadata": {"color": "red", "size": 2}}
    ]
    server.client.delete("/libraries/forms")


def test_bad_parts_are_named(server):
    png = ("a.png", PNG, "image/png")
    post = server.client.post
    message = error_of(post("/image-similarity", files={"image": png}), 400, "unknown_field")
    assert message.startswith("part 'image': unknown part")
    message = error_of(post("/image-similarity", files=[("img", png), ("img", png)]), 400, "duplicate_part")
    assert message.startswith("part 'img': given twice")
    message = error_of(post("/image-similarity", files={"text": png}), 400, "invalid_part")
    assert message.startswith("part 'text'")
    message = error_of(post("/image-similarity", files={"img": png}, data={"text": "x"}), 400, "ambiguous_input")
    message = error_of(post("/image-similarity", files={"img": ("e.png", b"", "image/png")}), 400, "not_an_image")
    assert message.startswith("img:")
    message = error_of(post("/image-similarity", files={"inputs": (None, "[{")}), 400, "invalid_json")
    assert message.startswith("part 'inputs': not JSON")
    crowded = "[" + "{}," * 100_001 + "{}]"
    error_of(post("/image-similarity", files={"inputs": (None, crowded)}), 400, "json_too_large")
    message = error_of(post("/libraries", files={"img": png}), 415, "unsupported_media_type")
    broken = {"content-type": "multipart/form-data; boundary=xyz"}
    error_of(
        post(
            "/image-similarity",
            content=b"--xyz\r\nContent-Type: text/plain\r\n\r\nno name\r\n--xyz--\r\n",
            headers=broken,
        ),
        400,
        "invalid_multipart",
    )


def test_bad_library_parts_are_named_and_carry_status(server):
    assert server.post("/libraries", {"name": "bad_parts"}).status_code == 201
    png = ("a.png", PNG, "image/png")
    response = server.client.post("/libraries/bad_parts/images", files={"img": png}, data={"metadata": "{oops"})
    assert error_of(response, 400, "invalid_json").startswith("part 'metadata': not JSON")
    assert response.json()["status"] == -1
    response = server.client.post("/libraries/bad_parts/images", files={"img": png}, data={"metadata": "[1]"})
    error_of(response, 400, "invalid_type")
    response = server.client.post("/libraries/bad_parts/search", files={"img": png}, data={"top_k": "many"})
    assert error_of(response, 400, "invalid_type").startswith("top_k")
    server.client.delete("/libraries/bad_parts")


def test_a_file_part_over_the_image_limit_is_refused(tiny_settings, tiny_engine):
    from tests.fakes.servers import LiveServer

    with LiveServer.start(tiny_settings.replace(max_image_bytes=1000), tiny_engine) as small:
        big = image_bytes(4, size=(128, 128))
        message = error_of(
            small.client.post("/image-similarity", files={"img": ("b.png", big, "image/png")}), 400, "image_too_large"
        )
        assert message.startswith("part 'img'")
        octets = {"content-type": "application/octet-stream"}
        error_of(small.client.post("/image-similarity", content=big, headers=octets), 400, "image_too_large")


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded", "application/json", "text/plain"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF"])
def test_an_image_body_is_an_image_whatever_the_header_says(server, content_type, fmt):
    """curl's --data-binary @photo.jpg sends application/x-www-form-urlencoded: the bytes say what they are."""
    picture = image_bytes(7, fmt=fmt)
    headers = {"content-type": content_type} if content_type else {}
    sniffed = server.client.post("/image-similarity", content=picture, headers=headers)
    assert sniffed.status_code == 200, sniffed.text
    declared = server.client.post("/image-similarity", content=picture, headers={"content-type": "image/png"})
    assert sniffed.json()["result"] == declared.json()["result"]


def test_a_body_neither_json_nor_an_image_says_how_to_send_one(server):
    answer = server.client.post("/image-similarity", content=b"hello", headers={"content-type": "application/octet"})
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_json"
    assert "or the image itself with its type (image/jpeg)" in answer.json()["message"]
    plain = server.client.post("/libraries", content=b"hello")  # no image field: no image hint
    assert plain.json()["code"] == "invalid_json" and "image/jpeg" not in plain.json()["message"]
