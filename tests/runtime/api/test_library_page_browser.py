"""The library page (``GET /libraries-ui``) in headless Chromium: search by text and by an uploaded file,
click a result for more like it, filter on metadata, page through the library; see its duplicates and
delete the one the page suggests dropping.

Debian's ``chromium`` driven by Playwright (the ``browser`` fixture, conftest.py). Set ``UPDATE_DOCS_SCREENSHOT=1``
to also write docs/library-page.png (the README shows it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes.images import b64, image_bytes
from tests.runtime.api.test_duplicate_tiers import photo, reencoded_jpeg

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


def test_the_duplicates_view_suggests_the_keeper_and_deletes_the_copy(browser, server):
    """A photo and a smaller JPEG of it, both stored (dedup off): one ``copy`` group keeping the photo;
    the copy's Delete button asks first (dismissed: nothing deleted), then deletes it, and the group goes."""
    name = "page_dups"
    markup = '<img src=x onerror="window.ran=1">'
    assert server.post("/libraries", {"name": name}).status_code == 201
    original = photo(31)
    for image_id, data, metadata in [
        ("shared-copy", reencoded_jpeg(original, 0.5, 80), {"note": markup}),  # added first: size decides
        ("original", original, {}),
        ("unrelated", photo(32), {}),
    ]:
        added = server.post(
            f"/libraries/{name}/images", {"img": b64(data), "id": image_id, "metadata": metadata, "dedup": False}
        )
        assert added.json()["status"] == 1, added.text
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console_errors: list[str] = []
    deletes: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    page.on("request", lambda request: deletes.append(request.url) if request.method == "DELETE" else None)
    page.goto(f"{server.url}/libraries-ui")
    page.locator("#library").select_option(name)
    wait_for_status(page, "3 images")
    page.locator("#duplicates").click()
    wait_for_status(page, "1 duplicate groups in 3 images")
    assert page.locator("#results").is_hidden()
    groups = page.locator("#groups .group")
    assert groups.count() == 1 and groups.first.get_attribute("data-tier") == "copy"
    assert groups.locator(".tier").inner_text() == "copy"
    assert groups.locator(".keeper .id").all_inner_texts() == ["original"]
    assert groups.locator(".keeper .size").inner_text() == "320 x 240"
    assert groups.locator(".other .id").all_inner_texts() == ["shared-copy"]
    assert groups.locator(".keeper .delete").count() == 0  # nothing offers to delete the keeper
    assert "<img src=x onerror=" in groups.locator(".other .meta").inner_text()
    page.wait_for_function("[...document.querySelectorAll('#groups img.thumb')].every(i => i.naturalWidth > 0)")
    assert groups.locator("img.thumb").count() == 2

    page.once("dialog", lambda dialog: dialog.dismiss())
    groups.locator(".other .delete").click()
    page.once("dialog", lambda dialog: dialog.accept())
    groups.locator(".other .delete").click()
    wait_for_status(page, "Deleted shared-copy. No duplicates in 2 images")
    assert page.locator("#groups .group").count() == 0
    assert deletes == [f"{server.url}/libraries/{name}/images/shared-copy"]  # the dismissed one sent nothing
    assert server.client.get(f"/libraries/{name}/images/shared-copy").status_code == 404
    assert server.client.get(f"/libraries/{name}/images/original").status_code == 200
    assert page.evaluate("window.ran") is None and console_errors == []
    page.close()
    server.client.delete(f"/libraries/{name}")


def shown_groups(page) -> list[tuple[str, str, list[str]]]:
    return [
        (
            group.get_attribute("data-tier"),
            group.locator(".keeper .id").inner_text(),
            group.locator(".other .id").all_inner_texts(),
        )
        for group in page.locator("#groups .group").all()
    ]


def api_groups(server, name: str, **params) -> list[tuple[str, str, list[str]]]:
    body = server.client.get(f"/libraries/{name}/duplicates", params=params).json()
    return [(g["tier"], g["keeper"]["id"], [o["id"] for o in g["others"]]) for g in body["groups"]]


def test_the_duplicates_view_pages_with_more_and_asks_for_similar_with_a_threshold(browser, server):
    """One group a page (Results = 1): More adds the next; a threshold adds the ``similar`` tier the API finds."""
    name = "page_dup_pages"
    assert server.post("/libraries", {"name": name}).status_code == 201
    for image_id, data in [
        ("twin-a", photo(33)),
        ("twin-b", photo(33)),
        ("big", photo(34)),
        ("small", reencoded_jpeg(photo(34), 0.5, 80)),
        ("loner", photo(35)),
    ]:
        assert (
            server.post(f"/libraries/{name}/images", {"img": b64(data), "id": image_id, "dedup": False}).json()[
                "status"
            ]
            == 1
        )
    page = browser.new_page()
    page.goto(f"{server.url}/libraries-ui")
    page.locator("#library").select_option(name)
    wait_for_status(page, "5 images")
    page.locator("#top-k").fill("1")
    page.locator("#duplicates").click()
    wait_for_status(page, "1 duplicate groups in 5 images")
    assert [tier for tier, *_ in shown_groups(page)] == ["exact"]
    page.locator("#more-groups").click()
    wait_for_status(page, "2 duplicate groups in 5 images")
    assert shown_groups(page) == api_groups(server, name) and len(shown_groups(page)) == 2
    assert page.locator("#more-groups").is_hidden()

    nearest = server.post(f"/libraries/{name}/search", {"id": "loner", "top_k": 1}).json()["matches"][0]["score"]
    threshold = f"{nearest - 0.001:.4f}"  # the loner and its nearest are similar at this threshold
    page.locator("#top-k").fill("12")
    page.locator("#threshold").fill(threshold)
    page.locator("#duplicates").click()
    wait_for_status(page, "3 duplicate groups in 5 images")
    shown = shown_groups(page)
    assert shown == api_groups(server, name, threshold=threshold)
    assert [tier for tier, *_ in shown] == ["exact", "copy", "similar"]
    assert "loner" in [shown[2][1], *shown[2][2]]
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
        page.locator("#duplicates").click()  # the duplicates view's calls carry it too
        wait_for_status(page, "No duplicates in 0 images")
        page.close()
