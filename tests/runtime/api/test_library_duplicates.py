"""GET /libraries/{name}/duplicates through the real HTTP server, on both stores (S3 Vectors: moto's)."""

from __future__ import annotations

from tests.runtime.api.test_duplicate_tiers import (  # noqa: F401 (fixtures)
    add,
    aws,
    close_pair,
    fresh,
    photo,
    reencoded_jpeg,
    server,
    similarity_of,
)


def group_ids(group: dict) -> tuple[str, list[str]]:
    return group["keeper"]["id"], [other["id"] for other in group["others"]]


def test_the_duplicates_a_library_holds_in_groups_by_tier_with_the_largest_as_keeper(server):  # noqa: F811
    assert server.post("/libraries", {"name": "held"}).status_code == 201
    original = photo(21)
    added = [
        ("big", original, {}),
        ("small", reencoded_jpeg(original, 0.5, 80), {"note": "thumbnail"}),
        ("twin-a", photo(22), {}),
        ("twin-b", photo(22), {"album": "kept"}),
    ]
    for image_id, data, metadata in added:
        assert add(server, "held", data, id=image_id, metadata=metadata, dedup=False)["status"] == 1

    answer = server.client.get("/libraries/held/duplicates")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    groups = [(group["tier"], *group_ids(group)) for group in body["groups"]]
    # twin-b keeps: the same size as twin-a, more metadata; big keeps: 320x240 beats 160x120.
    assert groups == [("exact", "twin-b", ["twin-a"]), ("copy", "big", ["small"])], groups
    assert body["groups"][1]["keeper"]["width"] == 320 and body["groups"][1]["others"][0]["height"] == 120
    assert body["next_token"] is None and body["scanned"] == 4

    first_page = server.client.get("/libraries/held/duplicates", params={"limit": 1}).json()
    assert [group_ids(group) for group in first_page["groups"]] == [("twin-b", ["twin-a"])]
    rest = server.client.get("/libraries/held/duplicates", params={"limit": 1, "next_token": first_page["next_token"]})
    assert [group_ids(group) for group in rest.json()["groups"]] == [("big", ["small"])]
    assert rest.json()["next_token"] is None


def test_a_threshold_groups_similar_images_too(server):  # noqa: F811 (the fixture)
    first, second, score = close_pair(server)
    threshold = round(score - 0.001, 4)
    far = next(
        seed
        for seed in range(60, 160)
        if max(similarity_of(server, photo(seed), photo(one)) for one in (first, second)) < threshold - 0.001
    )
    assert server.post("/libraries", {"name": "looks"}).status_code == 201
    for image_id, seed in (("close-1", first), ("close-2", second), ("far", far)):
        assert add(server, "looks", photo(seed), id=image_id, dedup=False)["status"] == 1
    assert server.client.get("/libraries/looks/duplicates").json()["groups"] == []
    body = server.client.get("/libraries/looks/duplicates", params={"threshold": threshold}).json()
    assert [(group["tier"], *group_ids(group)) for group in body["groups"]] == [("similar", "close-1", ["close-2"])]


def test_bad_duplicates_requests_name_the_field(server):  # noqa: F811 (the fixture)
    assert server.post("/libraries", {"name": "empty"}).status_code == 201
    assert server.client.get("/libraries/empty/duplicates").json() == {"groups": [], "next_token": None, "scanned": 0}
    bad = server.client.get("/libraries/empty/duplicates", params={"threshold": 2})
    assert bad.status_code == 400 and "threshold" in bad.json()["message"], bad.text
    token = server.client.get("/libraries/empty/duplicates", params={"next_token": "nope"})
    assert token.status_code == 400 and token.json()["code"] == "invalid_next_token", token.text
    missing = server.client.get("/libraries/nowhere/duplicates")
    assert missing.status_code == 404 and missing.json()["code"] == "library_not_found"


def test_the_cli_prints_every_group_across_pages(server, capsys, monkeypatch):  # noqa: F811 (the fixture)
    from runtime.cli import duplicates
    from runtime.cli.commands import main

    assert server.post("/libraries", {"name": "cli"}).status_code == 201
    for image_id, seed in (("a1", 31), ("a2", 31), ("b1", 32), ("b2", 32)):
        assert add(server, "cli", photo(seed), id=image_id, dedup=False)["status"] == 1
    monkeypatch.setattr(duplicates, "PAGE", 1)  # two pages of one group each
    assert main(["duplicates", "cli", "--api", server.url]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "exact: keep a1 320x240",
        "  duplicate a2 320x240",
        "exact: keep b1 320x240",
        "  duplicate b2 320x240",
        "2 groups of duplicates in library 'cli'",
    ]
    assert main(["duplicates", "nowhere", "--api", server.url]) == 2
    assert "does not exist" in capsys.readouterr().err
