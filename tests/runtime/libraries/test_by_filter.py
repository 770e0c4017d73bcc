"""Count, delete by filter and ``order_by`` at the store: what the HTTP tests cannot see cheaply.

Synthetic unit vectors (this is storage, not the model): a library past one ListVectors page and one
DeleteVectors call on S3 Vectors, and the local index after many rows go at once.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.libraries.store import NewImage
from tests.runtime.libraries.test_stores import VERSION, aws, make_store, unit  # noqa: F401 (fixtures)

MANY = 1203  # two ListVectors pages of 1,000, three DeleteVectors calls of 500


def many_images(count: int) -> list[NewImage]:
    return [
        NewImage(unit(seed), f"img-{seed:05d}", {"keep": seed % 3 == 0, "rank": seed}, content_hash=f"{seed:064x}")
        for seed in range(count)
    ]


def test_s3_a_delete_by_filter_reads_every_page_and_deletes_500_keys_a_call(make_store, request):  # noqa: F811 (the fixture)
    if request.node.callspec.params["make_store"] != "s3vectors":
        pytest.skip("the S3 Vectors calls")
    _, _, fake = request.getfixturevalue("aws")
    store = make_store()
    store.create_library("big", VERSION)
    store.add_images("big", many_images(MANY), model_version=VERSION, dedup=None)
    fake.calls.clear()
    done = store.delete_images("big", {"keep": False})
    doomed = sum(1 for seed in range(MANY) if seed % 3)
    assert (done.count, done.deleted) == (doomed, doomed)
    listed = fake.operations("ListVectors")
    assert len(listed) == 2 and all(call["maxResults"] == 1000 and call["returnMetadata"] for call in listed)
    deletes = fake.operations("DeleteVectors")
    assert all(len(call["keys"]) <= 500 for call in deletes)
    images = [call for call in deletes if not call["indexName"].endswith("-files")]
    files = [call for call in deletes if call["indexName"].endswith("-files")]
    assert [len(call["keys"]) for call in images] == [500, 302] and sum(len(c["keys"]) for c in files) == doomed
    assert store.get_library("big").image_count == MANY - doomed
    assert store.count_images("big", {"keep": True}) == MANY - doomed


def test_the_rows_left_after_a_delete_by_filter_keep_their_own_vectors(make_store):  # noqa: F811 (the fixture)
    store = make_store()
    store.create_library("lib", VERSION)
    images = many_images(60)
    store.add_images("lib", images, model_version=VERSION, dedup=None)
    store.delete_images("lib", {"rank": {"$in": list(range(0, 60, 7))}})
    assert store.count_images("lib") == 60 - 9
    for image in images:
        found = store.search("lib", image.vector, model_version=VERSION, top_k=1).matches
        gone = image.metadata["rank"] % 7 == 0
        assert (found[0].id == image.id) != gone
        if not gone:
            assert found[0].metadata == image.metadata and found[0].score == pytest.approx(1.0, abs=1e-5)
    exact = store.find_exact("lib", [image.content_hash for image in images[:8]])
    assert sorted(exact) == [images[n].content_hash for n in range(1, 7)]  # 0 and 7 went with their images


def test_a_search_that_holds_the_old_snapshot_still_reads_it_whole(make_store, request):  # noqa: F811 (the fixture)
    if request.node.callspec.params["make_store"] != "local":
        pytest.skip("the local index's snapshots")
    store = make_store()
    store.create_library("lib", VERSION)
    images = many_images(20)
    store.add_images("lib", images, model_version=VERSION, dedup=None)
    with store._reading("lib") as (_, index):
        before = index.snapshot
    store.delete_images("lib", {})
    assert before.count == 20 and np.allclose(before.vectors[5], images[5].vector)
    assert store.count_images("lib") == 0 and store.list_images("lib").images == []
