"""The similarity API through a real HTTP server on loopback, with the tiny random model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import FileServer

PNG_A = image_bytes(1)
PNG_B = image_bytes(2)
JPEG_A = image_bytes(3, size=(96, 64), fmt="JPEG", quality=90)


@pytest.fixture(scope="module")
def files():
    server = FileServer(
        {
            "/a.png": (200, {"Content-Type": "image/png"}, PNG_A),
            "/b.png": (200, {"Content-Type": "image/png"}, PNG_B),
            "/a.jpg": (200, {"Content-Type": "image/jpeg"}, JPEG_A),
        }
    )
    yield server
    server.close()


def vector(server, **slot) -> np.ndarray:
    response = server.post("/image-similarity", slot)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "tiny-test-clip/tiny-random-test"
    assert len(body["result"]) == 512
    return np.asarray(body["result"])


@pytest.mark.parametrize("path", ["/image-similarity", "/text_similarity"])
def test_single_modes_return_unit_vectors(server, files, path):
    for slot in ({"img": b64(PNG_A)}, {"url": f"{files.base}/a.jpg"}, {"text": "a red square"}):
        response = server.post(path, slot)
        assert response.status_code == 200, response.text
        result = np.asarray(response.json()["result"])
        assert result.shape == (512,)
        assert abs(np.linalg.norm(result) - 1) < 1e-5


def test_same_image_by_url_and_base64_gives_the_same_vector(server, files):
    by_img = vector(server, img=b64(PNG_A))
    by_url = vector(server, url=f"{files.base}/a.png")
    assert np.allclose(by_img, by_url, atol=1e-6)


def test_data_url_prefix_is_accepted(server):
    plain = vector(server, img=b64(PNG_A))
    prefixed = vector(server, img="data:image/png;base64," + b64(PNG_A))
    assert np.allclose(plain, prefixed, atol=1e-6)


def test_identical_images_have_similarity_one(server, files):
    response = server.post("/image-similarity", {"img_1": b64(PNG_A), "url_2": f"{files.base}/a.png"})
    assert response.status_code == 200, response.text
    assert response.json()["similarity"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "first,second",
    [("img", "img"), ("img", "url"), ("url", "text"), ("text", "img"), ("text", "text"), ("url", "url")],
)
def test_pair_similarity_is_half_one_plus_dot_of_single_vectors(server, files, first, second):
    values = {"img": b64(PNG_A), "url": f"{files.base}/b.png", "text": "a photo of a dog"}
    other = {"img": b64(PNG_B), "url": f"{files.base}/a.jpg", "text": "a diagram"}
    body = {f"{first}_1": values[first], f"{second}_2": other[second]}
    response = server.post("/image-similarity", body)
    assert response.status_code == 200, response.text
    similarity = response.json()["similarity"]
    a = vector(server, **{first: values[first]})
    b = vector(server, **{second: other[second]})
    assert similarity == pytest.approx((1 + float(a @ b)) / 2, abs=1e-5)
    assert 0 <= similarity <= 1


def test_batch_results_equal_single_results_in_order(server, files):
    slots = [{"img": b64(PNG_A)}, {"text": "a cat"}, {"url": f"{files.base}/a.jpg"}, {"img": b64(PNG_B)}]
    response = server.post("/image-similarity", {"inputs": slots})
    assert response.status_code == 200, response.text
    results = np.asarray(response.json()["results"])
    assert results.shape == (4, 512)
    for slot, result in zip(slots, results):
        assert np.allclose(result, vector(server, **slot), atol=1e-5)


def test_batch_of_32_is_accepted_and_33_refused(server):
    ok = server.post("/image-similarity", {"inputs": [{"text": f"word {i}"} for i in range(32)]})
    assert ok.status_code == 200
    too_many = server.post("/image-similarity", {"inputs": [{"text": f"word {i}"} for i in range(33)]})
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "batch_too_large"
    assert "inputs" in too_many.json()["message"]


def test_different_images_are_less_similar_than_identical_ones(server):
    same = server.post("/image-similarity", {"img_1": b64(PNG_A), "img_2": b64(PNG_A)}).json()["similarity"]
    different = server.post("/image-similarity", {"img_1": b64(PNG_A), "img_2": b64(PNG_B)}).json()["similarity"]
    assert different < same


def test_formats_jpeg_png_bmp_webp_are_read(server):
    for fmt in ("JPEG", "PNG", "BMP", "WEBP"):
        response = server.post("/image-similarity", {"img": b64(image_bytes(5, fmt=fmt))})
        assert response.status_code == 200, (fmt, response.text)


def test_exif_orientation_is_applied(server):
    from io import BytesIO

    from PIL import Image

    upright = Image.open(BytesIO(image_bytes(7, size=(64, 40))))
    stored = upright.rotate(90, expand=True)  # what a camera stores before the orientation tag
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    with_tag, plain = BytesIO(), BytesIO()
    stored.save(with_tag, format="PNG", exif=exif)
    upright.save(plain, format="PNG")
    a = vector(server, img=b64(with_tag.getvalue()))
    b = vector(server, img=b64(plain.getvalue()))
    assert float(a @ b) > 0.999


def test_ping_answers_ok_with_model_version(server):
    response = server.client.get("/ping")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_version": "tiny-test-clip/tiny-random-test"}


def test_cors_headers_when_an_origin_is_configured(tiny_settings, tiny_engine):
    from tests.fakes.servers import LiveServer

    with LiveServer.start(tiny_settings.replace(cors_origin="https://app.example.com"), tiny_engine) as live:
        preflight = live.client.options(
            "/image-similarity",
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        )
        answer = live.post("/image-similarity", {"text": "x"}, headers={"Origin": "https://app.example.com"})
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert answer.headers["access-control-allow-origin"] == "https://app.example.com"


def test_no_cors_headers_by_default(server):
    answer = server.post("/image-similarity", {"text": "x"}, headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in answer.headers


def test_urls_with_non_ascii_paths_and_queries_are_fetched(server):
    files = FileServer({"/%E7%8C%AB.png?q=%E7%8C%AB&x=1": (200, {}, PNG_A)})
    try:
        response = server.post("/image-similarity", {"url": files.base + "/猫.png?q=猫&x=1"})
    finally:
        files.close()
    assert response.status_code == 200, response.text
    assert np.allclose(response.json()["result"], vector(server, img=b64(PNG_A)), atol=1e-6)


def test_the_root_links_to_where_a_user_goes_next(server):
    answer = server.client.get("/")
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_version"] == "tiny-test-clip/tiny-random-test"
    for name, link in body["links"].items():
        assert not link.startswith("/"), name  # relative: a deployed stage's path prefix stays
        target = server.client.get(f"/{link}") if name != "embeddings" else server.post(f"/{link}", {})
        assert target.status_code != 404, (name, link)
