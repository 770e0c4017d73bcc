"""Searches cut and shaped, on both stores (the embedded one and S3 Vectors on moto): ``group_by`` with
``per_group``, several images left out (the stored examples of a search by examples), and the query
vector of positive and negative examples.

The vectors are synthetic unit vectors at chosen cosines from the query, so the expected ranking is
known exactly; the same suite runs on both stores (``make_store`` from test_stores).
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import BadRequest, NotFound
from runtime.libraries import filters
from runtime.libraries.examples import MAX_EXAMPLES, Example, check_examples, query_vector
from runtime.libraries.grouping import MAX_PER_GROUP
from runtime.libraries.store import NewImage
from tests.runtime.libraries import test_stores
from tests.runtime.libraries.test_stores import VERSION, at_cosine, unit

aws = test_stores.aws
make_store = test_stores.make_store
store = test_stores.store
"""test_stores.py's fixtures: moto's S3 Vectors and DynamoDB with FakeS3Vectors, the store builder, a store."""

QUERY = unit(1)


def fill(store, rows: list[tuple[str, float, dict]]) -> None:
    """Images ``(id, cosine with QUERY, metadata)``, in a library "lib"."""
    store.create_library("lib", VERSION)
    images = [
        NewImage(at_cosine(QUERY, cosine, seed=100 + n), image_id, metadata)
        for n, (image_id, cosine, metadata) in enumerate(rows)
    ]
    store.add_images("lib", images, model_version=VERSION, dedup=None)


ALBUMS = [
    ("s1", 0.95, {"album": "summer"}),
    ("w1", 0.90, {"album": "winter"}),
    ("s2", 0.85, {"album": "summer"}),
    ("x1", 0.83, {}),  # no album: in no group
    ("s3", 0.80, {"album": "summer"}),
    ("w2", 0.75, {"album": "winter"}),
    ("l1", 0.70, {"album": ["summer", "winter"]}),  # a list: in no group
    ("n1", 0.65, {"album": 1}),
    ("n2", 0.60, {"album": 1.0}),  # the same number as 1
    ("b1", 0.55, {"album": True}),  # not 1
    ("t1", 0.50, {"album": "1"}),  # not 1 either
    ("a1", 0.45, {"album": "autumn"}),
]


def grouped(found) -> list[tuple[object, list[str]]]:
    return [(group.value, [match.id for match in group.matches]) for group in found.groups]


def test_group_by_answers_the_best_per_group_of_each_value_best_group_first(store):
    fill(store, ALBUMS)
    found = store.search("lib", QUERY, model_version=VERSION, top_k=10, group_by="album")
    assert grouped(found) == [
        ("summer", ["s1"]),
        ("winter", ["w1"]),
        (1, ["n1"]),
        (True, ["b1"]),
        ("1", ["t1"]),
        ("autumn", ["a1"]),
    ]
    assert [match.id for match in found.matches] == ["s1", "w1", "n1", "b1", "t1", "a1"]
    assert found.partial is False  # every image was a candidate

    two = store.search("lib", QUERY, model_version=VERSION, top_k=2, group_by="album", per_group=2)
    assert grouped(two) == [("summer", ["s1", "s2"]), ("winter", ["w1", "w2"])]
    assert [match.score for match in two.matches] == pytest.approx([(1 + c) / 2 for c in (0.95, 0.85, 0.90, 0.75)])
    assert two.partial is False

    numbers = store.search("lib", QUERY, model_version=VERSION, top_k=10, group_by="album", per_group=3)
    assert (1, ["n1", "n2"]) in grouped(numbers)  # 1 and 1.0 are one value


def test_group_by_takes_the_filter_min_score_and_the_left_out_image(store):
    fill(store, ALBUMS)
    filtered = store.search(
        "lib", QUERY, model_version=VERSION, top_k=3, group_by="album", filter={"album": {"$in": ["winter", "autumn"]}}
    )
    assert grouped(filtered) == [("winter", ["w1"]), ("autumn", ["a1"])]
    assert filtered.partial is False
    high = store.search("lib", QUERY, model_version=VERSION, top_k=5, group_by="album", per_group=5, min_score=0.89)
    assert grouped(high) == [("summer", ["s1", "s2", "s3"]), ("winter", ["w1"])]  # 0.89 is cosine 0.78
    like = store.search_like("lib", "s1", model_version=VERSION, top_k=1, group_by="album", per_group=2)
    assert all("s1" not in ids for _, ids in grouped(like))


@pytest.mark.parametrize(
    ("group_by", "per_group", "field"),
    [
        (None, 2, "per_group"),
        ("album", 0, "per_group"),
        ("album", MAX_PER_GROUP + 1, "per_group"),
        ("album", True, "per_group"),
        ("$album", None, "group_by"),
        ("", None, "group_by"),
        ("__imsim__", None, "group_by"),
        ("a" * 64, None, "group_by"),
    ],
)
def test_a_bad_grouping_is_refused_naming_the_field(store, group_by, per_group, field):
    fill(store, ALBUMS[:2])
    with pytest.raises(BadRequest) as refused:
        store.search("lib", QUERY, model_version=VERSION, group_by=group_by, per_group=per_group)
    assert refused.value.code == "invalid_value" and str(refused.value).startswith(f"{field}: ")


def test_grouping_that_cannot_see_far_enough_says_partial(make_store, monkeypatch):
    """101 images of one album: asked for 2 groups, a store that saw only its candidate bound (S3 Vectors'
    100 a query; the local store's bound, lowered here to the same 100) cannot know there is no second
    album further down. Asked for 1 group of 1, the first candidate answers it completely."""
    monkeypatch.setattr(filters, "MAX_FILTERED_CANDIDATES", 100)
    store = make_store()
    fill(store, [(f"p{n:03d}", 0.9 - n / 1000, {"album": "one"}) for n in range(101)])
    two = store.search("lib", QUERY, model_version=VERSION, top_k=2, group_by="album")
    assert (grouped(two), two.partial) == ([("one", ["p000"])], True)
    one = store.search("lib", QUERY, model_version=VERSION, top_k=1, group_by="album")
    assert (grouped(one), one.partial) == ([("one", ["p000"])], False)
    seen_all = store.search("lib", QUERY, model_version=VERSION, top_k=2, group_by="album", min_score=0.925)
    assert (grouped(seen_all), seen_all.partial) == ([("one", ["p000"])], False)  # 51 pass: fewer than the bound


def test_a_grouped_search_looks_further_down_while_its_groups_are_not_complete(make_store):
    """The second album first appears at rank 1,501: past the first head of candidates (1,024), within
    the local store's bound (10,000), past S3 Vectors' 100."""
    store = make_store()
    fill(store, [(f"p{n:04d}", 0.9 - n / 10_000, {"album": "one" if n < 1500 else "two"}) for n in range(2000)])
    found = store.search("lib", QUERY, model_version=VERSION, top_k=2, group_by="album", per_group=2)
    if store.query_limit is None:
        assert (grouped(found), found.partial) == ([("one", ["p0000", "p0001"]), ("two", ["p1500", "p1501"])], False)
    else:
        assert (grouped(found), found.partial) == ([("one", ["p0000", "p0001"])], True)


def test_a_search_leaves_out_every_image_it_is_told_to(store):
    fill(store, [(f"i{n}", 0.9 - n / 100, {"i": n}) for n in range(8)])
    found = store.search("lib", QUERY, model_version=VERSION, top_k=4, exclude={"i0", "i2", "i3"})
    assert [match.id for match in found.matches] == ["i1", "i4", "i5", "i6"]
    assert found.partial is False
    filtered = store.search(
        "lib", QUERY, model_version=VERSION, top_k=4, exclude={"i0", "i2"}, filter={"i": {"$gte": 5}}
    )
    assert [match.id for match in filtered.matches] == ["i5", "i6", "i7"]
    assert filtered.partial is False


def test_left_out_images_s3_vectors_cannot_give_back_make_the_answer_partial(make_store):
    """top_k 100 without three images: S3 Vectors answers at most 100 a query, so 97 are all it can give
    (``partial``); the local store, with no such limit, gives 100."""
    store = make_store()
    fill(store, [(f"p{n:03d}", 0.9 - n / 1000, {}) for n in range(110)])
    found = store.search("lib", QUERY, model_version=VERSION, top_k=100, exclude={"p000", "p001", "p002"})
    assert found.matches[0].id == "p003"
    if store.query_limit is None:
        assert (len(found.matches), found.partial) == (100, False)
    else:
        assert (len(found.matches), found.partial) == (97, True)


def test_stored_vectors_are_read_in_order_and_a_missing_one_is_named(store):
    fill(store, [("a", 0.9, {}), ("b", 0.5, {})])
    a, b, again = store.stored_vectors(
        "lib", ["a", "b", "a"], ["positive[0]", "negative[0]", "positive[1]"], model_version=VERSION
    )
    assert float(a @ QUERY) == pytest.approx(0.9, abs=1e-5) and float(b @ QUERY) == pytest.approx(0.5, abs=1e-5)
    assert np.array_equal(a, again)
    with pytest.raises(NotFound) as missing:
        store.stored_vectors("lib", ["a", "zz"], ["positive[0]", "negative[3]"], model_version=VERSION)
    assert missing.value.code == "image_not_found" and str(missing.value).startswith("negative[3].id: ")
    with pytest.raises(BadRequest) as bad:
        store.stored_vectors("lib", ["a b"], ["positive[2]"], model_version=VERSION)
    assert bad.value.code == "invalid_image_id" and str(bad.value).startswith("positive[2].id: ")


def test_the_stored_vectors_of_s3_vectors_are_one_batched_read(make_store, request):
    store = make_store()
    if store.query_limit is None:
        pytest.skip("the local store reads its own memory")
    fill(store, [(f"i{n}", 0.9 - n / 100, {}) for n in range(5)])
    fake = request.getfixturevalue("aws")[2]
    before = len(fake.operations("GetVectors"))
    store.stored_vectors("lib", ["i0", "i3", "i4"], ["p[0]", "p[1]", "n[0]"], model_version=VERSION)
    assert len(fake.operations("GetVectors")) == before + 1


# --- the query vector --------------------------------------------------------------------


def test_the_query_is_twice_the_positive_mean_less_the_negative_mean_normalised():
    a, b, c = unit(11), unit(12), unit(13)
    expected = 2 * (a + b) / 2 - c
    assert query_vector(np.stack([a, b]), np.stack([c])) == pytest.approx(expected / np.linalg.norm(expected), abs=1e-6)
    alone = query_vector(np.stack([a, b]), None)
    assert alone == pytest.approx((a + b) / np.linalg.norm(a + b), abs=1e-6)
    assert query_vector(np.stack([a]), None) == pytest.approx(a, abs=1e-6)  # one positive: search by it


def test_examples_that_cancel_out_are_refused():
    a = unit(11)
    with pytest.raises(BadRequest) as opposite:
        query_vector(np.stack([a, -a]), None)
    assert opposite.value.code == "invalid_value" and str(opposite.value).startswith("positive: ")
    # positives at 120 degrees average to half a unit vector; a negative at twice that cancels it
    b = at_cosine(a, -0.5)
    with pytest.raises(BadRequest):
        query_vector(np.stack([a, b]), np.stack([a + b]))


def test_the_examples_limit_names_the_first_example_past_it():
    def examples(field: str, count: int) -> list[Example]:
        return [Example(f"{field}[{n}]", image_id="a") for n in range(count)]

    check_examples(examples("positive", MAX_EXAMPLES), [])
    with pytest.raises(BadRequest) as many:
        check_examples(examples("positive", 10), examples("negative", MAX_EXAMPLES - 9))
    assert many.value.code == "batch_too_large" and str(many.value).startswith(f"negative[{MAX_EXAMPLES - 10}]: ")
    with pytest.raises(BadRequest) as positives:
        check_examples(examples("positive", MAX_EXAMPLES + 2), [])
    assert str(positives.value).startswith(f"positive[{MAX_EXAMPLES}]: ")
    with pytest.raises(BadRequest) as none:
        check_examples([], examples("negative", 1))
    assert none.value.code == "missing_input" and str(none.value).startswith("positive: ")
