"""The API Explorer in headless Chromium: expand the similarity operation, Try it out, Execute.

Debian's ``chromium`` driven by Playwright (the ``browser`` fixture, conftest.py).
Set ``UPDATE_DOCS_SCREENSHOT=1`` to also write the README's screenshot, docs/explorer.png.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fakes.images import b64, image_bytes

DOCS_SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "explorer.png"
OPERATION = "#operations-similarity-image_similarity_image_similarity_post"


def test_try_it_out_answers_a_vector(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    outside, console_errors = [], []
    page.on("request", lambda request: outside.append(request.url) if not request.url.startswith(server.url) else None)
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{server.url}/api-explorer")

    operation = page.locator(OPERATION)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    body = json.dumps({"img": b64(image_bytes(5, size=(24, 16)))})
    operation.locator("textarea.body-param__text").fill(body)
    operation.get_by_role("button", name="Execute").click()

    response = operation.locator(".live-responses-table .response").first
    response.locator(".response-col_status").filter(has_text="200").wait_for(timeout=30_000)
    answer = json.loads(response.locator(".response-col_description pre").first.inner_text())
    assert len(answer["result"]) == 512
    assert all(isinstance(value, float) for value in answer["result"])
    assert answer["model_version"] == "tiny-test-clip/tiny-random-test"
    assert outside == [], "the page loaded something from outside this server"
    assert console_errors == []

    screenshot = tmp_path / "explorer.png"
    operation.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.screenshot(path=screenshot, full_page=False)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        DOCS_SCREENSHOT.write_bytes(screenshot.read_bytes())
    page.close()


def test_try_it_out_sends_the_api_key_when_the_authorization_is_api_key(browser, tiny_settings, tiny_engine):
    """Deployed with ApiAuthorization API_KEY (API Gateway checks the key): Authorize takes the key and
    Try it out sends it in ``x-api-key``."""
    from tests.fakes.servers import LiveServer

    with LiveServer.start(tiny_settings.replace(auth="API_KEY"), tiny_engine) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        sent: list[dict[str, str]] = []
        page.on("request", lambda r: sent.append(r.headers) if r.url.endswith("/image-similarity") else None)
        page.goto(f"{server.url}/api-explorer")

        page.get_by_role("button", name="Authorize").first.click()
        page.locator(".auth-container input").fill("partner-key-123")
        page.locator(".modal-ux .auth-btn-wrapper button.authorize").click()
        page.locator(".modal-ux .auth-btn-wrapper button.btn-done").click()

        operation = page.locator(OPERATION)
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.locator("textarea.body-param__text").fill(json.dumps({"text": "a photo of a cat"}))
        operation.get_by_role("button", name="Execute").click()
        response = operation.locator(".live-responses-table .response").first
        response.locator(".response-col_status").filter(has_text="200").wait_for(timeout=30_000)
        assert [headers.get("x-api-key") for headers in sent] == ["partner-key-123"]
        page.close()


@pytest.mark.parametrize("content_type", ["multipart/form-data", "application/octet-stream"])
def test_try_it_out_uploads_a_file(browser, server, tmp_path, content_type):
    """The file upload Swagger UI offers for the upload bodies (runtime/api/bodies.py) answers a vector,
    the same one the image's base64 gives."""
    picture = image_bytes(6, size=(40, 30), fmt="JPEG", quality=90)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(picture)
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{server.url}/api-explorer")

    operation = page.locator(OPERATION)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("select.content-type").first.select_option(content_type)
    file_inputs = operation.locator(".opblock-section-request-body input[type=file]")
    if content_type == "multipart/form-data":
        row = operation.locator(".opblock-section-request-body tr").filter(has_text="img").first
        row.locator("input[type=file]").set_input_files(str(photo))
    else:
        assert file_inputs.count() == 1
        file_inputs.set_input_files(str(photo))
    operation.get_by_role("button", name="Execute").click()

    response = operation.locator(".live-responses-table .response").first
    response.locator(".response-col_status").filter(has_text="200").wait_for(timeout=30_000)
    answer = json.loads(response.locator(".response-col_description pre").first.inner_text())
    expected = server.post("/image-similarity", {"img": b64(picture)}).json()["result"]
    assert len(answer["result"]) == 512
    assert max(abs(a - b) for a, b in zip(answer["result"], expected)) < 1e-6
    assert console_errors == []
    page.close()
