"""The S3 Vectors documentation's own filter examples (tests/fakes/s3vectors_filter_examples.py) against
both library stores: the embedded store on a temporary data directory, and the S3 Vectors store over
moto with ``FakeS3Vectors``, built by test_stores.py's fixtures. Each store must answer each example's
filtered search with exactly the ids the table gives, and both must answer alike.

A documented example that one store refuses, or answers otherwise, is listed in ``DISAGREEMENTS`` with
its reason: the test for that example and store is then a strict xfail, so it turns into a failure the
day the store agrees with the table (fix the store, then drop the entry).
"""

from __future__ import annotations

import json
import re

import pytest

from runtime.libraries.aws.s3vectors import S3VectorsStore
from runtime.libraries.local import LocalStore
from runtime.settings import Settings
from tests.fakes.s3vectors import passes
from tests.fakes.s3vectors_filter_examples import EXAMPLES, OPERATORS, SOURCES
from tests.runtime.libraries import test_stores

aws = test_stores.aws
make_store = test_stores.make_store
"""test_stores.py's fixtures: moto's S3 Vectors and DynamoDB with FakeS3Vectors, and the store builder."""

VERSION = test_stores.VERSION
STORES = ("local", "s3vectors")
DISAGREEMENTS: dict[tuple[str, str], str] = {}
"""(example name, store) -> why that store does not answer the documented ids. None found so far."""


def example_params(per_store: bool, counted: tuple[str, ...] = STORES) -> list:
    """Each example (and store, ``per_store``), a strict xfail where ``DISAGREEMENTS`` lists it for one
    of the ``counted`` stores."""
    params = []
    for example in EXAMPLES:
        for kind in STORES if per_store else (None,):
            reasons = [
                f"{store}: {reason}"
                for (name, store), reason in DISAGREEMENTS.items()
                if name == example["name"] and store in ((kind,) if kind else counted)
            ]
            marks = [pytest.mark.xfail(strict=True, reason="; ".join(reasons))] if reasons else []
            values = (example, kind) if per_store else (example,)
            params.append(pytest.param(*values, marks=marks, id="-".join(filter(None, (example["name"], kind)))))
    return params


def fill(store, records: dict) -> None:
    store.create_library("docs", VERSION)
    for seed, (image_id, metadata) in enumerate(records.items()):
        store.add_image("docs", test_stores.unit(seed), model_version=VERSION, image_id=image_id, metadata=metadata)


def answer(store, example: dict) -> list:
    """The ids and scores of the filtered search, best first; every record can be among them."""
    query = test_stores.unit(1000)
    found = store.search("docs", query, model_version=VERSION, top_k=len(example["records"]), filter=example["filter"])
    assert not found.partial
    return [(match.id, match.score) for match in found.matches]


# --- the table itself -------------------------------------------------------------------------


def test_the_table_holds_the_documented_filters_and_exercises_each():
    assert len({example["name"] for example in EXAMPLES}) == len(EXAMPLES)
    used = set()
    for example in EXAMPLES:
        assert json.loads(example["documented"]) == example["filter"], example["name"]
        assert example["source"] in SOURCES
        records = example["records"]
        matches = set(example["matches"])
        assert len(matches) == len(example["matches"]) and matches <= records.keys(), example["name"]
        assert matches and records.keys() - matches, f"{example['name']}: needs matches and non-matches"
        assert example["undocumented"].keys() <= records.keys(), example["name"]
        used.update(re.findall(r"\$[a-zA-Z]+", example["documented"]))
    assert used == OPERATORS


@pytest.mark.parametrize("example", example_params(per_store=False, counted=("s3vectors",)))
def test_the_fakes_evaluator_reads_the_documentation_as_the_table_does(example):
    """``passes`` in tests/fakes/s3vectors.py, alone: if it disagrees, the S3 Vectors store test does too."""
    found = [image_id for image_id, metadata in example["records"].items() if passes(metadata, example["filter"])]
    assert sorted(found) == sorted(example["matches"])


# --- both stores ------------------------------------------------------------------------------


@pytest.mark.parametrize(("example", "make_store"), example_params(per_store=True), indirect=["make_store"])
def test_each_store_answers_the_documented_ids(make_store, example):
    store = make_store()
    fill(store, example["records"])
    found = [image_id for image_id, _ in answer(store, example)]
    assert sorted(found) == sorted(example["matches"])


@pytest.mark.parametrize(("example", "make_store"), example_params(per_store=True), indirect=["make_store"])
def test_each_store_counts_and_deletes_the_documented_ids(make_store, example):
    """Count and delete by filter evaluate the filter themselves (filter_eval, on S3 Vectors over
    ListVectors): they must keep the documented ids too, as the search on S3 Vectors (the service's
    reading, here the fake's) does."""
    store = make_store()
    fill(store, example["records"])
    assert store.count_images("docs", example["filter"]) == len(example["matches"])
    assert store.delete_images("docs", example["filter"], dry_run=True).count == len(example["matches"])
    store.delete_images("docs", example["filter"])
    left = {image.id for image in store.list_images("docs").images}
    assert left == example["records"].keys() - set(example["matches"])


@pytest.mark.parametrize("example", example_params(per_store=False))
def test_both_stores_answer_alike(aws, tmp_path, example):
    """The same ids in the same order with the same scores, from one set of records put in both stores."""
    settings = Settings(
        store="local",
        data_dir=str(tmp_path / "data"),
        vector_bucket=test_stores.BUCKET,
        registry_table=test_stores.TABLE,
    )
    local = LocalStore(settings, test_stores.DIM)
    remote = S3VectorsStore(settings.replace(store="s3vectors"), test_stores.DIM, s3vectors=aws[0], dynamodb=aws[1])
    try:
        answers = []
        for store in (local, remote):
            fill(store, example["records"])
            answers.append(answer(store, example))
    finally:
        local.close()
        remote.close()
    (local_answer, remote_answer) = answers
    assert [image_id for image_id, _ in local_answer] == [image_id for image_id, _ in remote_answer]
    assert [score for _, score in local_answer] == pytest.approx([score for _, score in remote_answer], abs=1e-5)
    assert sorted(image_id for image_id, _ in local_answer) == sorted(example["matches"])
