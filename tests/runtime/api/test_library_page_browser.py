"""The library page (``GET /libraries-ui``) in headless Chromium: search by text and by an uploaded file,
click a result for more like it, filter on metadata, page through the library.

Debian's ``chromium`` driven by Playwright (the ``browser`` fixture, conftest.py). Set ``UPDATE_DOCS_SCREENSHOT=1``
to also write docs/library-page.png (the README shows it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes.images import b64, image_bytes

DOCS_SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "library-page.png"
LIBRARY = "page_test"
COLORS = ["red", "blue", "red", "green", "red"]


@pytest.fixture(scope="module")
def library(server):
    assert server.post("/libraries", {"name": LIBRARY}).status_code == 201
    images = [
        {"img": b64(image_bytes(40 + n, size=(48, 48))), "id": f"item-{n}", "metadata": {"color": color, "n": n}}
        for n, color in enumerate(COLORS)
    ]
    added = server.post(f"/libraries/{LIBRARY}/images", {"images": images, "dedup": False})
    assert [result["status"] for result in added.json()["results"]] == [1] * len(COLORS)
    yield LIBRARY
    server.client.delete(f"/libraries/{LIBRARY}")


def card_ids(page) -> list[str]:
    return page.locator("#results .card .id").all_inner_texts()


def wait_for_status(page, text: str) -> None:
    page.locator("#status").filter(has_text=text).wait_for(timeout=30_000)


def test_search_browse_filter_and_page(browser, server, library, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside, console_errors = [], []
    page.on("request", lambda request: outside.append(request.url) if not request.url.startswith(server.url) else None)
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{server.url}/libraries-ui")
    page.locator("#library").select_option(library)
    wait_for_status(page, "5 images")
    assert sorted(card_ids(page)) == [f"item-{n}" for n in range(5)]
    thumbnails = page.locator("#results img.thumb")  # the library keeps them (the local store's default)
    assert thumbnails.count() == 5
    page.wait_for_function("[...document.querySelectorAll('#results img.thumb')].every(i => i.naturalWidth > 0)")

    page.locator("#text").fill("a red square")
    page.locator("#search-form button[type=submit]").click()
    wait_for_status(page, 'matches for "a red square"')
    assert len(card_ids(page)) == 5
    assert page.locator("#results .card .score").count() == 5

    picture = tmp_path / "query.png"
    picture.write_bytes(image_bytes(43, size=(48, 48)))  # item-3's own picture
    page.locator("#file").set_input_files(str(picture))
    wait_for_status(page, "matches like query.png")  # not "Searching like ..."
    assert card_ids(page)[0] == "item-3"
    assert page.locator("#results .card .score").first.inner_text() == "score 1.0000"

    clicked = card_ids(page)[1]
    page.locator("#results .card").nth(1).click()  # more like the second result
    wait_for_status(page, f"matches like {clicked}")
    assert clicked not in card_ids(page) and len(card_ids(page)) == 4

    page.locator("details summary").click()
    page.locator(".pair input").nth(0).fill("color")
    page.locator(".pair input").nth(1).fill("red")
    page.locator("#text").fill("a red square")
    page.locator("#search-form button[type=submit]").click()
    wait_for_status(page, "3 matches")
    assert sorted(card_ids(page)) == ["item-0", "item-2", "item-4"]

    screenshot = tmp_path / "library-page.png"
    page.screenshot(path=screenshot, full_page=False)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        DOCS_SCREENSHOT.write_bytes(screenshot.read_bytes())

    page.locator("#top-k").fill("2")
    page.locator("#browse").click()
    wait_for_status(page, "2 images")
    first = card_ids(page)
    page.locator("#next").click()
    wait_for_status(page, "(next page)")
    second = card_ids(page)
    assert len(first) == len(second) == 2 and not set(first) & set(second)
    assert outside == [], "the page loaded something from outside this server"
    assert console_errors == []
    page.close()


def test_a_page_of_a_library_holding_markup_shows_it_as_text(browser, server):
    """Metadata and ids reach the page as text: a stored ``<img onerror>`` is shown, never run."""
    name = "page_markup"
    assert server.post("/libraries", {"name": name}).status_code == 201
    markup = '<img src=x onerror="window.ran=1">'
    added = server.post(f"/libraries/{name}/images", {"img": b64(image_bytes(50)), "metadata": {"note": markup}})
    assert added.json()["status"] == 1
    page = browser.new_page()
    page.goto(f"{server.url}/libraries-ui")
    page.locator("#library").select_option(name)
    wait_for_status(page, "1 images")
    assert "<img src=x onerror=" in page.locator("#results .card .meta").inner_text()
    assert page.locator("#results img[src='x']").count() == 0
    assert page.evaluate("window.ran") is None
    page.close()
    server.client.delete(f"/libraries/{name}")


def test_with_an_api_key_the_page_asks_for_it_and_sends_it(browser, tiny_settings, tiny_engine):
    """``serve --api-key``: the page itself loads without the key, then its calls carry the one typed in."""
    from runtime.api.app import create_app
    from tests.fakes.servers import LiveServer

    settings = tiny_settings.replace(api_key="local-key-123", data_dir=tiny_settings.data_dir + "-keyed")
    app = create_app(settings, engine=tiny_engine, served_on="127.0.0.1")
    with LiveServer.serving(app) as live:
        headers = {"x-api-key": "local-key-123"}
        assert live.client.post("/libraries", json={"name": "keyed"}, headers=headers).status_code == 201
        page = browser.new_page()
        page.goto(f"{live.url}/libraries-ui")
        page.locator("#status").filter(has_text="invalid_api_key").or_(page.locator("#status.error")).wait_for()
        page.locator("#api-key").fill("local-key-123")
        page.locator("#api-key").dispatch_event("change")
        page.reload()
        page.locator("#library").select_option("keyed")
        wait_for_status(page, "0 images")
        page.close()
