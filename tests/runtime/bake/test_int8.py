"""int8 is decided by measurement at bake time, recorded in the manifest, and served by default only when it agrees."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.bake.int8 import (
    AGREEMENT,
    LIBRARY_SIZE,
    PROBE_TEXTS,
    QUERY_COUNT,
    VARIANTS,
    agreement,
    altered_copies,
    probe_images,
)
from runtime.engines import load_engine
from runtime.engines.model_folder import served_precision
from runtime.engines.onnx_engine import OnnxEngine
from runtime.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def baked(tiny_settings, tmp_path_factory):
    from runtime.bake.bake import bake

    out = tmp_path_factory.mktemp("int8") / "model"
    manifest = bake(tiny_settings.replace(pretrained="tiny-int8"), out)
    return out, manifest


def test_bake_records_every_variant_against_fp32(baked):
    _, manifest = baked
    decision = manifest["int8"]
    assert decision["thresholds"] == AGREEMENT
    assert set(decision["variants"]) == {variant.name for variant in VARIANTS}
    measured = [figures for figures in decision["variants"].values() if "error" not in figures]
    assert measured, decision["variants"]
    for figures in measured:
        assert -1.0 <= figures["cosine_min"] <= figures["cosine_mean"] <= 1.0 + 1e-6
        for key in ("image_to_image_top1", "image_to_image_top10_overlap", "text_to_image_top1", "top10_overlap"):
            assert 0.0 <= figures[key] <= 1.0
        assert figures["speedup"] > 0
        holds = all(figures[key] >= floor for key, floor in AGREEMENT.items())
        assert figures["meets_agreement"] == holds


def test_the_chosen_variant_is_the_fastest_that_keeps_the_agreement(baked):
    _, manifest = baked
    variants = manifest["int8"]["variants"]
    candidates = {name: f["speedup"] for name, f in variants.items() if f["meets_agreement"] and f["speedup"] > 1.0}
    expected = max(candidates, key=candidates.get) if candidates else None
    assert manifest["int8"]["chosen"] == expected


def test_auto_serves_what_bake_chose(baked):
    out, manifest = baked
    chosen = manifest["int8"]["chosen"]
    assert served_precision(out, "auto") == ("int8" if chosen else "fp32")
    assert served_precision(out, "fp32") == "fp32"
    served = load_engine(Settings(model_dir=str(out), engine="auto", micro_batching=False, data_dir=str(out)))
    version = served.model_version
    pixels = probe_images(served.image_size, 4, seed=9)
    expected = OnnxEngine.load(out, model_version=version, precision="int8" if chosen else "fp32")
    assert np.array_equal(served.encode_images(pixels), expected.encode_images(pixels))


def test_the_recorded_figures_are_those_of_the_served_int8_graphs(baked):
    out, manifest = baked
    chosen = manifest["int8"]["chosen"]
    if chosen is None:
        pytest.skip("no variant kept the agreement on these random weights; fp32 is served")
    fp32 = OnnxEngine.load(out, model_version="v", precision="fp32")
    int8 = OnnxEngine.load(out, model_version="v", precision="int8")
    library = probe_images(fp32.image_size, LIBRARY_SIZE, seed=1)
    again = agreement(fp32, int8, library, altered_copies(library[:QUERY_COUNT], seed=2), PROBE_TEXTS)
    recorded = manifest["int8"]["variants"][chosen]
    for key, value in again.items():
        assert value == pytest.approx(recorded[key], abs=1e-5), key


def test_an_engine_agrees_perfectly_with_itself_and_not_with_another_model(baked):
    out, _ = baked
    fp32 = OnnxEngine.load(out, model_version="v", precision="fp32")
    library = probe_images(fp32.image_size, 40, seed=1)
    queries = altered_copies(library[:10], seed=2)
    same = agreement(fp32, fp32, library, queries, PROBE_TEXTS)
    assert same["cosine_min"] == pytest.approx(1.0, abs=1e-5)
    assert same["top10_overlap"] == 1.0 and same["image_to_image_top1"] == 1.0
    other = OnnxEngine.load(out, model_version="v", precision="fp32")
    other.image_session, other.text = _sessions_of_a_model_with_other_weights(tmp_for=out)
    assert agreement(fp32, other, library, queries, PROBE_TEXTS)["cosine_min"] < 0.9


def _sessions_of_a_model_with_other_weights(tmp_for):
    """The same architecture with other random weights, exported to ONNX: a model that must disagree."""
    from runtime.bake.export import export_onnx
    from runtime.engines.torch_engine import TorchEngine
    from tests.fakes.model import build_tiny_checkpoint

    folder = tmp_for.parent / "other"
    folder.mkdir(exist_ok=True)
    tiny = build_tiny_checkpoint(folder, seed=7)
    settings = Settings(model=tiny.name, weights=str(tiny.weights), model_config_path=str(tiny.config), device="cpu")
    export_onnx(TorchEngine.load(settings), folder, int8=False)
    other = OnnxEngine.load(folder, model_version="v", precision="fp32", spec=TorchEngine.load(settings).spec)
    return other.image_session, other.text
