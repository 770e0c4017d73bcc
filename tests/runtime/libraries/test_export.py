"""Export and restore (runtime/libraries/export.py): the round trip local -> S3 Vectors (moto) -> local
through the real HTTP server, the refusals (another model, a bad line), the CLI both ways, and the
store primitive an export pages with, on both stores."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.libraries.export import FORMAT, FORMAT_VERSION
from runtime.libraries.hashing import content_hash
from runtime.libraries.store import NewImage
from runtime.libraries.values import check_vector
from tests.fakes.images import b64, image_bytes
from tests.fakes.servers import LiveServer
from tests.runtime.libraries.test_stores import BUCKET, DIM, TABLE, aws, make_store, unit  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[3]
NDJSON = {"content-type": "application/x-ndjson"}


def lines_of(export: bytes) -> list[dict]:
    return [json.loads(line) for line in export.splitlines() if line.strip()]


def by_id(export: bytes) -> dict[str, dict]:
    """Each image line by id, without what a restore does not keep (the time it was added)."""
    return {
        line["id"]: {key: value for key, value in line.items() if key != "create_time"}
        for line in lines_of(export)[1:-1]
    }


@pytest.fixture
def servers(tiny_settings, tiny_engine, tmp_path):
    """Starts loopback servers on the tiny model: ``store="local"`` (a data directory of its own) or
    ``"s3vectors"`` (moto's S3 Vectors and DynamoDB, in this process)."""
    started = []

    def start(store: str, request=None):
        from runtime.libraries.aws.s3vectors import S3VectorsStore
        from runtime.settings import Settings

        settings = tiny_settings.replace(data_dir=str(tmp_path / f"data-{len(started)}"))
        context = LiveServer.start(settings, tiny_engine)
        started.append(context)
        live = context.__enter__()
        if store == "s3vectors":
            vectors, dynamodb, _ = request.getfixturevalue("aws")
            aws_settings = Settings(store="s3vectors", vector_bucket=BUCKET, registry_table=TABLE)
            live.server.config.app.state.libraries = S3VectorsStore(
                aws_settings, tiny_engine.dimension, s3vectors=vectors, dynamodb=dynamodb
            )
        return live

    yield start
    for context in reversed(started):
        context.__exit__(None, None, None)


def test_local_to_s3_vectors_to_local_gives_the_same_library_byte_for_byte(servers, request):
    first = servers("local")
    assert first.post("/libraries", {"name": "shop"}).status_code == 201
    for seed in range(6):
        body = {"img": b64(image_bytes(seed)), "id": f"p{seed}", "metadata": {"album": f"a{seed % 2}", "n": seed}}
        assert first.post("/libraries/shop/images", {**body, "dedup": False}).json()["status"] == 1
    exported = first.client.get("/libraries/shop/export")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/x-ndjson")
    header, *images, end = lines_of(exported.content)
    assert (header["format"], header["format_version"], header["name"]) == (FORMAT, FORMAT_VERSION, "shop")
    assert header["dimension"] == 512 and header["thumbnails"] is True and end == {"format_end": True, "images": 6}
    assert {image["content_hash"] for image in images} == {content_hash(image_bytes(seed)) for seed in range(6)}

    on_aws = servers("s3vectors", request)
    restored = on_aws.client.post("/libraries/moved/restore", content=exported.content, headers=NDJSON)
    assert restored.status_code == 200, restored.text
    assert restored.json()["counts"] == {"processed": 6, "added": 6, "already_present": 0, "failed": 0}
    assert restored.json()["created"] is True and restored.json()["complete"] is True
    like = on_aws.post("/libraries/moved/search", {"id": "p3", "top_k": 5}).json()["matches"]
    assert len(like) == 5 and "p3" not in {match["id"] for match in like}  # the vectors work there
    from_aws = on_aws.client.get("/libraries/moved/export").content

    back = servers("local")
    assert back.client.post("/libraries/shop/restore", content=from_aws, headers=NDJSON).status_code == 200
    again = back.client.get("/libraries/shop/export").content
    assert by_id(again) == by_id(from_aws) == by_id(exported.content)  # vectors, metadata, hashes, thumbnails
    vectors = [base64.b64decode(line["vector"]) for line in lines_of(again)[1:-1]]
    assert all(len(vector) == 512 * 4 for vector in vectors)
    # Restoring again adds nothing: every id is already there.
    twice = back.client.post("/libraries/shop/restore", content=from_aws, headers=NDJSON).json()
    assert twice["counts"] == {"processed": 6, "added": 0, "already_present": 6, "failed": 0}


@pytest.mark.parametrize("store", ["local", "s3vectors"])
def test_restored_vectors_are_the_exports_byte_for_byte(servers, request, store):
    """Vectors of unit length as float32 rounds it (not exactly 1.0): the store keeps them as they are."""
    server = servers(store, request)
    version = server.server.config.app.state.embedder.model_version
    rng = np.random.default_rng(7)
    vectors = [check_vector(rng.normal(size=512).astype(np.float32), 512) for _ in range(40)]
    header = {"format": FORMAT, "format_version": 1, "name": "v", "model_version": version, "dimension": 512}
    lines = [{**header, "create_time": 0.0, "thumbnails": False}]
    lines += [
        {"id": f"v{n}", "metadata": {}, "model_version": version, "vector": b64(vector.tobytes())}
        for n, vector in enumerate(vectors)
    ]
    body = "\n".join(json.dumps(line) for line in [*lines, {"format_end": True, "images": 40}])
    assert server.client.post("/libraries/v/restore", content=body, headers=NDJSON).json()["counts"]["added"] == 40
    exported = by_id(server.client.get("/libraries/v/export").content)
    assert {image_id: line["vector"] for image_id, line in exported.items()} == {
        f"v{n}": b64(vector.tobytes()) for n, vector in enumerate(vectors)
    }


def test_another_models_export_is_refused_naming_both_versions(servers):
    server = servers("local")
    header = {"format": FORMAT, "format_version": 1, "name": "x", "model_version": "ViT-L-14/laion2b"}
    body = json.dumps({**header, "dimension": 512, "create_time": 0.0, "thumbnails": False}) + "\n"
    refused = server.client.post("/libraries/x/restore", content=body, headers=NDJSON)
    assert refused.status_code == 409 and refused.json()["code"] == "model_version_mismatch"
    assert refused.json()["status"] == -1  # a library write's error, as every other write's
    served = server.server.config.app.state.embedder.model_version
    assert "ViT-L-14/laion2b" in refused.json()["message"] and served in refused.json()["message"]
    assert server.client.get("/libraries/x").status_code == 404  # nothing was created
    damaged = json.dumps({**header, "model_version": served, "dimension": 16, "create_time": 0.0, "thumbnails": False})
    refused = server.client.post("/libraries/x/restore", content=damaged, headers=NDJSON)
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_export"
    assert "dimension 16" in refused.json()["message"] and server.client.get("/libraries/x").status_code == 404
    newer = json.dumps({**header, "format_version": 2})
    refused = server.client.post("/libraries/x/restore", content=newer, headers=NDJSON)
    assert refused.status_code == 400 and "format_version 2" in refused.json()["message"]
    as_text = server.client.post("/libraries/x/restore", content=body, headers={"content-type": "text/plain"})
    assert as_text.status_code == 415


def test_a_bad_line_is_that_lines_failure_and_the_others_go_on(servers):
    server = servers("local")
    version = server.server.config.app.state.embedder.model_version
    header = {"format": FORMAT, "format_version": 1, "name": "x", "model_version": version, "dimension": 512}
    good = np.ones(512, dtype="<f4") / np.float32(np.sqrt(512))

    def image(image_id: str, vector: bytes = good.tobytes(), **more) -> dict:
        return {"id": image_id, "metadata": {}, "model_version": version, "vector": b64(vector), **more}

    lines = [
        {**header, "create_time": 0.0, "thumbnails": False},
        image("ok-1"),
        "{not json",
        image("short", good[:10].tobytes()),
        image("bad id!"),
        image("ok-2", metadata={"$bad": 1}),
        image("ok-3"),
        image("ok-3"),
        {"format_end": True, "images": 7},
    ]
    body = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    answer = server.client.post("/libraries/x/restore", content=body, headers=NDJSON).json()
    assert answer["counts"] == {"processed": 7, "added": 2, "already_present": 0, "failed": 5}
    failed = {failure["line"]: (failure["code"], failure["field"]) for failure in answer["failures"]}
    assert failed == {
        3: ("invalid_json", ""),
        4: ("invalid_vector", "vector"),
        5: ("invalid_image_id", "id"),
        6: ("invalid_metadata", "metadata"),
        8: ("duplicate_id", "id"),
    }
    listed = server.client.get("/libraries/x/images").json()["images"]
    assert sorted(one["id"] for one in listed) == ["ok-1", "ok-3"]


def test_the_cli_exports_and_restores_directly_and_through_the_api(servers, tmp_path):
    server = servers("local")
    server.post("/libraries", {"name": "cats"})
    for seed in range(3):
        server.post("/libraries/cats/images", {"img": b64(image_bytes(seed)), "id": f"c{seed}", "dedup": False})

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "runtime", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    through_api = tmp_path / "cats.jsonl"
    assert cli("export", "cats", "--api", server.url, "--out", str(through_api)).returncode == 0
    restored = cli("restore", str(through_api), "--data-dir", str(tmp_path / "copy"), "--library", "kittens")
    assert restored.returncode == 0, restored.stderr
    assert "added 3" in restored.stdout and "(created)" in restored.stdout
    directly = tmp_path / "kittens.jsonl"
    assert cli("export", "kittens", "--data-dir", str(tmp_path / "copy"), "--out", str(directly)).returncode == 0
    assert by_id(directly.read_bytes()) == by_id(through_api.read_bytes())
    back = cli("restore", str(directly), "--api", server.url)
    assert back.returncode == 0 and "'kittens' (created): added 3" in back.stdout, back.stdout + back.stderr
    missing = cli("export", "nope", "--api", server.url, "--out", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "'nope' does not exist" in missing.stderr
    assert not (tmp_path / "nope.jsonl").exists()


def test_the_store_pages_through_images_with_their_vectors(make_store):  # noqa: F811 (the fixture)
    store = make_store()
    store.create_library("lib", "m1")
    images = [NewImage(unit(seed), f"i{seed}", {"n": seed}, content_hash(bytes([seed]))) for seed in range(5)]
    store.add_batch("lib", images, model_version="m1", dedup=None)
    seen, token = [], None
    while True:
        page = store.stored_images("lib", limit=2, next_token=token)
        assert len(page.images) <= 2
        seen.extend(page.images)
        token = page.next_token
        if token is None:
            break
    assert sorted(image.id for image in seen) == [f"i{seed}" for seed in range(5)]
    for image in seen:
        seed = int(image.id[1:])
        assert image.vector.astype("<f4").tobytes() == check_vector(unit(seed), DIM).tobytes()
        assert (image.metadata, image.content_hash) == ({"n": seed}, content_hash(bytes([seed])))


def test_a_unit_vector_is_stored_as_it_is():
    """Dividing a float32 unit vector by its norm again changes the last bits of about a third of them."""
    rng = np.random.default_rng(0)
    vectors = [check_vector(rng.normal(size=512).astype(np.float32), 512) for _ in range(50)]
    assert all(check_vector(vector, 512).tobytes() == vector.tobytes() for vector in vectors)


def test_a_library_named_outside_latin_1_exports_with_its_name_as_the_file_name(servers):
    """Headers are Latin-1: the name goes in ``filename*`` (UTF-8), an ASCII fallback in ``filename``
    (the fuzzer found a 500 on a library named 商品图库)."""
    live = servers("local")
    assert live.post("/libraries", {"name": "商品图库"}).status_code == 201
    exported = live.client.get("/libraries/商品图库/export")
    assert exported.status_code == 200, exported.text
    disposition = exported.headers["content-disposition"]
    assert (
        disposition
        == "attachment; filename=\"library.jsonl\"; filename*=UTF-8''%E5%95%86%E5%93%81%E5%9B%BE%E5%BA%93.jsonl"
    )
    assert lines_of(exported.content)[0]["name"] == "商品图库"
