"""Engines agree with the torch reference; the tokenizer without torch matches open_clip's."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from runtime.bake.export import TOKENIZER_FILE, export_onnx
from runtime.engines import load_engine
from runtime.engines.batching import MicroBatcher
from runtime.engines.model_folder import settings_for_model_dir
from runtime.engines.onnx_engine import OnnxEngine
from runtime.engines.tokenizer import ClipTokenizer
from runtime.engines.torch_engine import TorchEngine

TEXTS = [
    "a photo of a cat",
    "It's a DOG's life, isn't it?",
    "  weird   spacing\n\ttabs ",
    "数字 123 and 中文 文字",
    "emoji 🐱🐶 and café naïve",
    "&amp; html &lt;b&gt;",
    "word " * 100,  # longer than the context: truncated, still ends with the end token
    "3.14159 e=mc^2 !!!??",
    "l'avion d'été",
    "<end_of_text> inside a text",
]


@pytest.fixture(scope="module")
def reference(tiny_settings):
    return TorchEngine.load(tiny_settings)


@pytest.fixture(scope="module")
def exported(reference, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    cosines = export_onnx(reference, folder, int8=True)
    return folder, cosines


def pixels(count: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)


def test_tokenizer_without_torch_matches_open_clip(reference, exported):
    folder, _ = exported
    ours = ClipTokenizer(folder / TOKENIZER_FILE)
    expected = reference.tokenizer(TEXTS).numpy()
    assert np.array_equal(ours(TEXTS), expected)


@pytest.mark.parametrize("precision,floor", [("fp32", 0.99999), ("int8", 0.99)])
def test_onnx_engine_agrees_with_torch(reference, exported, precision, floor):
    folder, _ = exported
    onnx = OnnxEngine.load(folder, model_version=reference.model_version, precision=precision, spec=reference.spec)
    images = pixels(5, reference.image_size)
    image_cos = np.sum(onnx.encode_images(images) * reference.encode_images(images), axis=1)
    text_cos = np.sum(onnx.encode_texts(TEXTS) * reference.encode_texts(TEXTS), axis=1)
    assert image_cos.min() >= floor and text_cos.min() >= floor, (image_cos, text_cos)


def test_onnx_engine_loads_its_text_tower_on_the_first_text_request_only(reference, exported):
    folder, _ = exported
    onnx = OnnxEngine.load(folder, model_version=reference.model_version, precision="fp32", spec=reference.spec)
    onnx.encode_images(pixels(1, reference.image_size))
    assert not onnx.text.built  # a cold start's first image does not pay for the text graph
    vectors = onnx.encode_texts(TEXTS[:2])
    assert onnx.text.built
    assert np.sum(vectors * reference.encode_texts(TEXTS[:2]), axis=1).min() > 0.99999


def test_onnx_engine_refuses_a_folder_without_its_text_graph_at_load(reference, exported, tmp_path):
    folder, _ = exported
    for path in folder.iterdir():
        if not path.name.startswith("text"):
            (tmp_path / path.name).symlink_to(path)
    with pytest.raises(FileNotFoundError, match="text"):
        OnnxEngine.load(tmp_path, model_version=reference.model_version, precision="fp32", spec=reference.spec)


@pytest.mark.slow
def test_auto_engine_serves_onnx_from_a_baked_folder(tiny_settings, tmp_path):
    from runtime.bake.bake import bake

    bake(tiny_settings, tmp_path)
    settings = settings_for_model_dir(tiny_settings.replace(model_dir=str(tmp_path), micro_batching=False))
    engine = load_engine(settings.replace(onnx_precision="fp32"))  # int8 by default is tests/runtime/bake's
    assert isinstance(engine, OnnxEngine)
    reference = TorchEngine.load(settings)
    images = pixels(2, engine.image_size)
    assert np.sum(engine.encode_images(images) * reference.encode_images(images), axis=1).min() > 0.99999


def test_micro_batcher_answers_each_request_with_its_own_vectors(reference):
    batcher = MicroBatcher(reference, max_batch=32, max_wait_ms=20)
    requests = [pixels(1 + i % 3, reference.image_size, seed=i) for i in range(12)]
    answers: dict[int, np.ndarray] = {}

    def send(index: int) -> None:
        answers[index] = batcher.encode_images(requests[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, request in enumerate(requests):
        assert np.allclose(answers[index], reference.encode_images(request), atol=1e-5)
    assert batcher.batches_run < len(requests)  # requests shared forward passes


def test_micro_batcher_passes_engine_errors_to_every_waiting_request(reference):
    batcher = MicroBatcher(reference, max_wait_ms=50)  # the requests below share one failing pass
    errors: list[BaseException] = []

    def send() -> None:
        try:
            batcher.encode_images(np.zeros((1, 3, 3, 3), dtype=np.uint8))  # wrong size for the model
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == 4
    assert batcher.encode_texts(["still works"]).shape == (1, 512)
