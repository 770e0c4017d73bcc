"""Multilingual text on the ONNX engine: a tiny XLM-RoBERTa-shaped model (built offline, random weights)
baked through the real bake step; its Hugging Face tokenizer runs from ``tokenizer.json`` with the
``tokenizers`` library only, and gives open_clip's token ids and vectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.engines import load_engine
from runtime.engines.model_folder import TOKENIZER_FILE, read_manifest, settings_for_model_dir
from runtime.engines.onnx_engine import OnnxEngine
from runtime.engines.tokenizer import HfTokenizer
from runtime.engines.torch_engine import TorchEngine
from tests.fakes.multilingual_model import CORPUS, build_tiny_multilingual_checkpoint

ROOT = Path(__file__).resolve().parents[3]
TEXTS = [
    *CORPUS,
    "  Ein   Foto\n\teiner Katze  ",
    "&amp; html &lt;b&gt; entities",
    "mojibake: cafÃ©",
    "UPPER and lower Case kept",
    "猫の写真 " * 40,  # longer than the context: truncated, still ends with </s>
    "emoji 🐱🐶 and unknown ߷ signs",
    "",
    "<s> </s> <pad> in a text",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def multilingual_settings(tmp_path_factory):
    from runtime.settings import Settings

    model = build_tiny_multilingual_checkpoint(tmp_path_factory.mktemp("tiny-xlm"))
    return Settings(
        model=model.name,
        pretrained="tiny-xlm-random",
        weights=str(model.weights),
        model_config_path=str(model.config),
        device="cpu",
        micro_batching=False,
        data_dir=str(tmp_path_factory.mktemp("data")),
    )


@pytest.fixture(scope="module")
def reference(multilingual_settings):
    return TorchEngine.load(multilingual_settings)


@pytest.fixture(scope="module")
def baked(multilingual_settings, tmp_path_factory) -> Path:
    """Through the real bake step: it fails when the fp32 graphs drift from torch."""
    from runtime.bake.bake import bake

    folder = tmp_path_factory.mktemp("baked-xlm")
    bake(multilingual_settings, folder)
    return folder


def test_the_tiny_model_goes_through_open_clips_hf_path(reference):
    from open_clip.hf_model import HFTextEncoder
    from open_clip.tokenizer import HFTokenizer

    assert isinstance(reference.model.text, HFTextEncoder)
    assert isinstance(reference.tokenizer, HFTokenizer)
    assert reference.dimension == 512


def test_bake_saves_the_hf_tokenizer_and_says_so(baked):
    manifest = read_manifest(baked)
    assert manifest["tokenizer"] == "hf"
    assert min(manifest["onnx_cosine_vs_torch"].values()) > 0.99
    saved = json.loads((baked / TOKENIZER_FILE).read_text())
    assert saved["model"]["type"] == "Unigram" and saved["padding"]["strategy"] == {"Fixed": 77}


def test_token_ids_match_open_clip(reference, baked):
    ours = HfTokenizer(baked / TOKENIZER_FILE)(TEXTS)
    expected = reference.tokenizer(TEXTS).numpy()
    assert ours.shape == expected.shape == (len(TEXTS), 77)
    assert np.array_equal(ours, expected)
    truncated = ours[TEXTS.index("猫の写真 " * 40)]
    assert truncated[0] == 0 and truncated[-1] == 2  # <s> ... </s>, as open_clip truncates
    assert HfTokenizer(baked / TOKENIZER_FILE)([]).shape == (0, 77)


@pytest.mark.parametrize(("precision", "floor"), [("fp32", 0.99999), ("int8", 0.99)])
def test_onnx_engine_vectors_match_torch(reference, baked, precision, floor):
    settings = reference_settings(baked, engine="onnx", onnx_precision=precision)
    onnx = load_engine(settings)
    assert isinstance(onnx, OnnxEngine) and onnx.model_version == reference.model_version
    texts = TEXTS
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, onnx.image_size, onnx.image_size, 3), dtype=np.uint8)
    if precision == "int8":
        # Bake chose the int8 graphs by their agreement with fp32 on its probe set (runtime/bake/int8.py):
        # that set, and the floor it promises, are what the served int8 graphs are held to.
        from runtime.bake.int8 import AGREEMENT, PROBE_TEXTS, probe_images
        from runtime.engines.model_folder import read_manifest

        texts, pixels = PROBE_TEXTS, probe_images(onnx.image_size, 3, seed=1)
        if read_manifest(baked)["int8"]["chosen"]:
            floor = AGREEMENT["cosine_min"] - 1e-3  # torch against the fp32 graphs adds its own 1e-5
    cosines = np.sum(onnx.encode_texts(texts) * reference.encode_texts(texts), axis=1)
    assert cosines.min() >= floor, cosines
    assert np.sum(onnx.encode_images(pixels) * reference.encode_images(pixels), axis=1).min() >= floor


def reference_settings(folder: Path, **overrides):
    from runtime.settings import Settings

    return settings_for_model_dir(Settings(model_dir=str(folder), device="cpu", micro_batching=False, **overrides))


LAMBDA_LIKE = """
import json, sys
sys.modules["torch"] = None  # as in the Lambda image: neither is installed there
sys.modules["transformers"] = None
sys.modules["open_clip"] = None
from runtime.api.app import create_app
from runtime.engines.model_folder import settings_for_model_dir
from runtime.settings import Settings
from fastapi.testclient import TestClient

# fp32 pinned: the default (auto) serves the int8 graphs bake chose; their agreement is tested above
settings = Settings(model_dir=sys.argv[1], engine="onnx", onnx_precision="fp32", data_dir=sys.argv[2], store="off")
settings = settings_for_model_dir(settings)
client = TestClient(create_app(settings))
texts = json.loads(sys.argv[3])
answers = [client.post("/text_similarity", content=json.dumps({"text": text})).json() for text in texts]
print(json.dumps(answers))
"""


def test_the_api_answers_multilingual_text_on_onnx_without_torch_or_transformers(reference, baked, tmp_path):
    texts = ["una foto de un gato", "猫の写真", "фотография кошки"]
    out = subprocess.run(
        [sys.executable, "-c", LAMBDA_LIKE, str(baked), str(tmp_path), json.dumps(texts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answers = json.loads(out.stdout.strip().splitlines()[-1])
    vectors = np.array([answer["result"] for answer in answers])
    cosines = np.sum(vectors * reference.encode_texts(texts), axis=1)
    assert cosines.min() > 0.99999, cosines
    assert answers[0]["model_version"] == "tiny-xlm-test-clip/tiny-xlm-random"


def requirement_names(path: Path) -> set[str]:
    """Package names a requirements file installs, following its ``-r`` includes."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= requirement_names(path.parent / line[2:].strip())
        elif line:
            names.add(line.split("==", 1)[0].strip().lower())
    return names


@pytest.mark.parametrize("file", ["requirements-onnx.txt", "requirements-front.txt"])
def test_the_lambda_images_install_neither_torch_nor_transformers(file):
    """The Lambda images install these files only (lambda_image/Dockerfile); bake and the torch path
    get transformers from runtime/requirements.txt."""
    names = requirement_names(ROOT / "runtime" / file)
    assert not names & {"torch", "torchvision", "transformers", "open_clip_torch"}
    assert file == "requirements-front.txt" or "tokenizers" in names
    assert "transformers" in requirement_names(ROOT / "runtime" / "requirements.txt")
