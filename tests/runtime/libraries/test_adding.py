"""The one add path (runtime/libraries/adding.py) behind all four entry points: the HTTP batch add, the
HTTP single add, the local import runner and the AWS import worker add the same 20 files, with exact
duplicates and copies, bad files and a file that is not an image among them, and end with the same library and
the same answer for every item."""

from __future__ import annotations

import io
import re

import boto3
import pytest
from PIL import Image

from runtime.embedder import Embedder
from runtime.libraries.imports.jobs import FileJobs, ImportJob, new_import_id
from runtime.libraries.imports.runner import ImportRunner
from runtime.libraries.local import LocalStore
from tests.fakes.images import image_bytes
from tests.fakes.servers import LiveServer
from tests.runtime.libraries.imports.conftest import PHOTOS, moto_aws  # noqa: F401 (the fixture)
from tests.runtime.libraries.imports.test_worker import make_worker
from tests.runtime.libraries.test_stores import REGION, aws  # noqa: F401 (the fixture, used by moto_aws)

PREFIX = "same/"
THRESHOLD = 0.9999
"""The tiny random model scores distinct test pictures up to 0.9994, a re-encoded one above 0.99999."""


def reencoded(seed: int, fmt: str, scale: float = 1.0) -> bytes:
    """Picture ``seed`` again, re-encoded (and resized): other bytes, nearly the same picture."""
    image = Image.open(io.BytesIO(image_bytes(seed)))
    if scale != 1.0:
        image = image.resize((int(image.width * scale), int(image.height * scale)))
    out = io.BytesIO()
    image.save(out, format=fmt, quality=92) if fmt == "JPEG" else image.save(out, format=fmt)
    return out.getvalue()


def the_files() -> dict[str, bytes]:
    """20 files, in the order every entry point takes them (a listing's key order)."""
    files = {f"a/p{n:02d}.png": image_bytes(n) for n in range(12)}
    files |= {"b/copy-of-p00.png": image_bytes(0), "b/copy-of-p03.png": image_bytes(3)}  # exact duplicates
    files |= {"c/p05-again.jpg": reencoded(5, "JPEG"), "c/p07-larger.png": reencoded(7, "PNG", 1.5)}  # near
    files |= {"d/cut.png": image_bytes(20)[:60], "d/empty.png": b"", "d/text.jpg": b"plain text"}
    files["e/notes.txt"] = b"not an image name"
    assert list(files) == sorted(files) and len(files) == 20
    return files


def image_id(key: str) -> str:
    return key.replace("/", ":")


def answer_of_body(body: dict) -> tuple:
    """One item's answer, as every entry point can tell it: added, a duplicate (exact or not), or its code."""
    if body["status"] == 1:
        return ("added",)
    if body["status"] == 0:
        return ("duplicate", body["tier"])
    return ("refused", body["code"], re.sub(r"^images\[\d+\]\.", "", body["message"]))


def answers_of_import(counts: dict, failures: list[dict], library_ids: set[str], keys: list[str]) -> dict:
    """What an import tells of each image file: in the library, failed with its code and message, or
    neither (a duplicate: its tier is in the counts); the files it ignored are counted."""
    failed = {failure["item"]: failure for failure in failures}
    answers = {}
    for key in keys:
        if image_id(key) in library_ids:
            answers[key] = ("added",)
        elif image_id(key) in failed:
            answers[key] = ("refused", failed[image_id(key)]["code"], failed[image_id(key)]["message"])
        else:
            answers[key] = ("duplicate",)
    tiers = {tier: counts[f"duplicates_{tier}"] for tier in ("exact", "copy", "similar")}
    return {"answers": answers, "tiers": tiers, "ignored": counts["ignored_not_an_image_name"]}


def as_import_tells_it(answers: dict[str, tuple]) -> dict:
    """An API's per-item answers, told as an import tells them."""
    tiers = {"exact": 0, "copy": 0, "similar": 0}
    for answer in answers.values():
        if answer[0] == "duplicate":
            tiers[answer[1]] += 1
    plain = {key: answer[:1] if answer[0] == "duplicate" else answer for key, answer in answers.items()}
    return {"answers": plain, "tiers": tiers, "ignored": 1}  # the API is never sent the file that is no image


@pytest.fixture
def world(moto_aws, tiny_settings, tiny_engine, tmp_path):  # noqa: F811 (the fixture imported above)
    vectors, dynamodb, _, _ = moto_aws
    s3 = boto3.client("s3", region_name=REGION)
    for key, body in the_files().items():
        s3.put_object(Bucket=PHOTOS, Key=PREFIX + key, Body=body)
    settings = tiny_settings.replace(data_dir=str(tmp_path / "data"), s3_allowed_buckets=(PHOTOS,))
    return settings, tiny_engine, vectors, dynamodb, s3


def url_of(key: str) -> str:
    return f"s3://{PHOTOS}/{PREFIX}{key}"


def test_the_four_entry_points_give_the_same_library_and_answers(world):
    settings, engine, vectors, dynamodb, s3 = world
    keys = list(the_files())
    images = [key for key in keys if not key.endswith(".txt")]
    told: dict[str, dict] = {}
    libraries: dict[str, set[str]] = {}

    with LiveServer.start(settings, engine) as live:
        for name in ("batch", "single"):
            assert live.post("/libraries", {"name": name}).status_code == 201
        batch = live.post(
            "/libraries/batch/images",
            {"images": [{"url": url_of(key), "id": image_id(key)} for key in images], "threshold": THRESHOLD},
        )
        assert batch.status_code == 200, batch.text
        told["batch"] = as_import_tells_it(
            {key: answer_of_body(body) for key, body in zip(images, batch.json()["results"], strict=True)}
        )
        single = {}
        for key in images:
            answer = live.post(
                "/libraries/single/images", {"url": url_of(key), "id": image_id(key), "threshold": THRESHOLD}
            )
            single[key] = answer_of_body({**answer.json(), "status": answer.json().get("status", -1)})
        told["single"] = as_import_tells_it(single)
        for name in ("batch", "single"):
            listed = live.client.get(f"/libraries/{name}/images").json()["images"]
            libraries[name] = {image["id"] for image in listed}

    store = LocalStore(settings.replace(data_dir=str(settings.data_dir) + "-runner"), engine.dimension)
    try:
        store.create_library("runner", engine.model_version)
        jobs = FileJobs(str(settings.data_dir) + "-runner")
        job = jobs.save(
            ImportJob(new_import_id(), "runner", {"source": url_of("")}, threshold=THRESHOLD, batch_size=32)
        )
        job = ImportRunner(Embedder(settings, engine), store, jobs).run(job)
        assert job.status == "succeeded", job
        libraries["runner"] = {image.id for image in store.list_images("runner", limit=100).images}
        told["runner"] = answers_of_import(job.counts, jobs.failures(job.import_id), libraries["runner"], images)
    finally:
        store.close()

    worker = make_worker(settings, engine, vectors, dynamodb)
    worker.importer.store.create_library("worker", engine.model_version)
    objects = s3.list_objects_v2(Bucket=PHOTOS, Prefix=PREFIX)["Contents"]
    event = {
        "Items": [{"Key": o["Key"], "Size": o["Size"]} for o in objects],
        "BatchInput": {
            "import_id": "",
            "library": "worker",
            "threshold": THRESHOLD,
            "kind": "prefix",
            "bucket": PHOTOS,
            "prefix": PREFIX,
        },
    }
    result = worker.handle(event)
    libraries["worker"] = {image.id for image in worker.importer.store.list_images("worker", limit=100).images}
    told["worker"] = answers_of_import(result, result["failures"], libraries["worker"], images)

    assert libraries["batch"] == libraries["single"] == libraries["runner"] == libraries["worker"]
    assert told["batch"] == told["single"] == told["runner"] == told["worker"], told
    # The set holds what it is meant to: both exact copies refused as such, the re-encoded and resized ones
    # as copies (their perceptual hashes, before the threshold is asked), the bad files refused one by one.
    answers = told["batch"]["answers"]
    assert told["batch"]["tiers"] == {"exact": 2, "copy": 2, "similar": 0}
    assert [answers[key][1] for key in ("d/cut.png", "d/empty.png", "d/text.jpg")] == [
        "invalid_image",
        "url_not_image",
        "url_not_image",
    ]
    assert libraries["batch"] == {image_id(f"a/p{n:02d}.png") for n in range(12)}
