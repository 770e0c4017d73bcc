"""The catalog's newer families (SigLIP 2 / SigLIP i18n, MobileCLIP 2) through every engine the catalog
claims for them, on tiny random-weight models of the same tower types (tests/fakes/families.py): torch,
the ONNX export (MobileCLIP reparameterised), bake's int8 decision, ONNX against torch, and the API
answering with the model's own dimension on every route."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from runtime.engines import load_engine
from runtime.engines.model_folder import TOKENIZER_FILE, read_manifest, settings_for_model_dir
from runtime.engines.tokenizer import HfTokenizer, tokenizer_kind
from runtime.engines.torch_engine import TorchEngine
from tests.fakes.families import CORPUS, build_tiny_mobileclip_checkpoint, build_tiny_siglip_checkpoint
from tests.fakes.images import b64, image_bytes

pytestmark = pytest.mark.slow

FAMILIES = {
    "siglip": (build_tiny_siglip_checkpoint, 768, "hf-canonicalize"),
    "mobileclip": (build_tiny_mobileclip_checkpoint, 512, "clip"),
}
TEXTS = [
    *CORPUS,
    "UPPER Case, Punctuation!!! and snake_case",
    "  spaces\n\tand &amp; entities  ",
    "photo " * 80,  # longer than SigLIP's 64 tokens: truncated, still ends with </s>
    "",
]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    from runtime.settings import Settings

    build, dimension, kind = FAMILIES[request.param]
    model = build(tmp_path_factory.mktemp(request.param))
    settings = Settings(
        model=model.name,
        pretrained="tiny-random",
        weights=str(model.weights),
        model_config_path=str(model.config),
        device="cpu",
        micro_batching=False,
        data_dir=str(tmp_path_factory.mktemp("data")),
    )
    reference = TorchEngine.load(settings)
    folder = tmp_path_factory.mktemp(f"baked-{request.param}")
    from runtime.bake.bake import bake

    bake(settings, folder)  # fails when the fp32 graphs drift from torch or the reload differs
    return request.param, settings, reference, folder, dimension, kind


def test_torch_builds_the_familys_towers_with_its_dimension_and_tokenizer(family):
    name, _, reference, _, dimension, kind = family
    trunk = type(reference.model.visual.trunk).__name__
    assert trunk == {"siglip": "VisionTransformer", "mobileclip": "FastVit"}[name]
    assert reference.dimension == dimension and tokenizer_kind(reference.tokenizer) == kind
    assert reference.encode_texts(["a cat"]).shape == (1, dimension)


def test_bake_records_the_dimension_tokenizer_and_int8_decision(family):
    _, _, _, folder, dimension, kind = family
    manifest = read_manifest(folder)
    assert manifest["dimension"] == dimension and manifest["tokenizer"] == kind
    assert min(manifest["onnx_cosine_vs_torch"].values()) >= 0.99999
    assert "chosen" in manifest["int8"] and manifest["int8"]["variants"]


def test_siglip_token_ids_match_open_clip(family):
    name, _, reference, folder, _, _ = family
    if name != "siglip":
        pytest.skip("the clip tokenizer is held to open_clip in test_engines")
    ours = HfTokenizer(folder / TOKENIZER_FILE, canonical=True)(TEXTS)
    expected = reference.tokenizer(TEXTS).numpy()
    assert ours.shape == expected.shape == (len(TEXTS), 64)
    assert np.array_equal(ours, expected)
    assert ours[TEXTS.index("photo " * 80)][-1] == 1  # </s> kept at the end of a truncated text


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_engine_vectors_match_torch(family, precision):
    from runtime.bake.int8 import AGREEMENT, PROBE_TEXTS, probe_images
    from runtime.engines.onnx_engine import OnnxEngine
    from runtime.settings import Settings

    _, _, reference, folder, dimension, _ = family
    settings = settings_for_model_dir(
        Settings(model_dir=str(folder), device="cpu", micro_batching=False, engine="onnx", onnx_precision=precision)
    )
    onnx = load_engine(settings)
    assert isinstance(onnx, OnnxEngine) and onnx.dimension == dimension
    texts, pixels = PROBE_TEXTS, probe_images(onnx.image_size, 4, seed=1)
    floor = 0.99999
    if precision == "int8":
        # Bake serves int8 only when it kept AGREEMENT on its probe set; else the folder's int8 graphs
        # are the plain dynamic ones, held to a loose floor.
        floor = AGREEMENT["cosine_min"] - 1e-3 if read_manifest(folder)["int8"]["chosen"] else 0.9
    assert np.sum(onnx.encode_texts(texts) * reference.encode_texts(texts), axis=1).min() >= floor
    assert np.sum(onnx.encode_images(pixels) * reference.encode_images(pixels), axis=1).min() >= floor


def conv_count(path: Path) -> int:
    import onnx

    return sum(node.op_type == "Conv" for node in onnx.load(str(path)).graph.node)


def test_mobileclip_is_exported_reparameterised(family, tmp_path):
    """Each MobileOne/RepMixer block's branches are one convolution in the graph: fewer Conv nodes
    than the model as trained, and the same vectors (bake checked those against torch)."""
    import torch

    from runtime.bake.export import _export, _tower, export_onnx

    name, _, reference, _, _, _ = family
    if name != "mobileclip":
        pytest.skip("only MobileCLIP has blocks to reparameterise")
    export_onnx(reference, tmp_path / "deployed", int8=False)
    size = reference.image_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice, as export_onnx silences it
        _export(
            _tower(reference.model, "encode_image"), torch.zeros(1, 3, size, size), tmp_path / "trained.onnx", "pixels"
        )
    assert conv_count(tmp_path / "deployed" / "image.onnx") < conv_count(tmp_path / "trained.onnx")


def test_the_api_answers_with_the_models_dimension_on_every_route(family):
    from tests.fakes.servers import LiveServer

    _, settings, _, _, dimension, _ = family
    smoke = settings.replace(smoke=True, weights=None)  # serve --model NAME --smoke: random weights
    engine = load_engine(smoke)
    assert engine.dimension == dimension
    img = b64(image_bytes(3, size=(48, 40)))
    with LiveServer.start(smoke, engine) as server:
        assert len(server.post("/image-similarity", {"img": img}).json()["result"]) == dimension
        assert len(server.post("/text_similarity", {"text": "a cat"}).json()["result"]) == dimension
        batch = server.post("/image-similarity", {"inputs": [{"img": img}, {"text": "a cat"}]}).json()
        assert [len(vector) for vector in batch["results"]] == [dimension, dimension]
        assert 0 <= server.post("/image-similarity", {"img_1": img, "text_2": "a cat"}).json()["similarity"] <= 1
        openai = server.post("/v1/embeddings", {"model": engine.model_version, "input": ["a cat"]}).json()
        assert len(openai["data"][0]["embedding"]) == dimension
        wrong = server.post(
            "/v1/embeddings", {"model": engine.model_version, "input": "x", "dimensions": 512 + 768 - dimension}
        )
        assert wrong.status_code == 400
        assert server.post("/libraries", {"name": "family"}).status_code == 201
        assert server.post("/libraries/family/images", {"img": img, "id": "a"}).json()["id"] == "a"
        found = server.post("/libraries/family/search", {"img": img}).json()
        assert [match["id"] for match in found["matches"]] == ["a"]


def test_a_catalogued_model_is_preprocessed_as_its_row_says_with_local_weights(family, tmp_path, monkeypatch):
    """open_clip knows a tag's preprocessing only when it downloads the tag: with bake's local checkpoint
    (or --smoke) it would give OpenAI's mean and std and a bicubic shortest-side resize. The engines take
    the catalog's row instead, and the baked folder's manifest carries it to the ONNX engine."""
    from runtime.engines import catalog
    from runtime.engines.model_folder import write_manifest
    from runtime.engines.onnx_engine import _image_spec
    from runtime.inputs.images import catalog_spec

    name, settings, reference, _, dimension, kind = family
    preprocessing = {"siglip": "0.5 0.5 0.5,0.5 0.5 0.5,squash,bicubic", "mobileclip": "0 0 0,1 1 1,shortest,bilinear"}
    table = tmp_path / "catalog.csv"
    table.write_text(
        "architecture,pretrained,dimension,image_size,tokenizer,engines,image_mean,image_std,resize,interpolation\n"
        f"{settings.model},{settings.pretrained},{dimension},{reference.image_size},{kind},torch onnx,"
        f"{preprocessing[name]}\n"
    )
    monkeypatch.setattr(catalog, "CATALOG_FILE", table)
    catalog.catalog.cache_clear()
    try:
        listed = catalog.find(settings.model, settings.pretrained)
        assert listed is not None
        engine = TorchEngine.load(settings)
        assert engine.spec == catalog_spec(listed) != reference.spec
        write_manifest(tmp_path, settings, engine)
        assert _image_spec(read_manifest(tmp_path)) == engine.spec
    finally:
        catalog.catalog.cache_clear()


def test_a_store_of_another_dimension_opens_and_refuses_only_the_other_models_libraries(
    family, tiny_settings, tiny_engine, tmp_path
):
    """A data directory made by the 512-d default-shaped model, served by this family's model: the old
    library loads with its own dimension and answers 409 (vectors of two models do not compare); a new
    library takes this model's vectors."""
    from tests.fakes.servers import LiveServer

    _, settings, _, _, dimension, _ = family
    img = b64(image_bytes(4, size=(48, 40)))
    with LiveServer.start(tiny_settings.replace(data_dir=str(tmp_path)), tiny_engine) as before:
        assert before.post("/libraries", {"name": "old"}).status_code == 201
        assert before.post("/libraries/old/images", {"img": img, "id": "a"}).json()["id"] == "a"
    engine = load_engine(settings)
    with LiveServer.start(settings.replace(data_dir=str(tmp_path)), engine) as after:
        assert [library["name"] for library in after.client.get("/libraries").json()["libraries"]] == ["old"]
        refused = after.post("/libraries/old/search", {"img": img})
        assert refused.status_code == 409 and refused.json()["code"] == "model_version_mismatch"
        assert after.post("/libraries", {"name": "new"}).status_code == 201
        assert after.post("/libraries/new/images", {"img": img, "id": "b"}).json()["id"] == "b"
        assert [match["id"] for match in after.post("/libraries/new/search", {"img": img}).json()["matches"]] == ["b"]
    assert engine.dimension == dimension
