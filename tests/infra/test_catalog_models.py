"""The CDK app reads the model catalog: the multilingual model synthesizes on the lambda backend, and a
model whose row does not list the onnx engine is refused there."""

from __future__ import annotations

import json
import re

import pytest

from infra.builder import build_app
from infra.config import ConfigError, load_config
from runtime.engines import catalog

XLM = "xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k"


def config_of(**flags):
    return load_config(lambda name: flags.get(name))


@pytest.mark.slow
def test_the_multilingual_model_synthesizes_on_the_lambda_backend(tmp_path):
    build_app({"backend": "lambda", "model": XLM}, nag=False, validation=False, outdir=str(tmp_path)).synth()
    assets = json.loads((tmp_path / "ImageSimilarity.assets.json").read_text())
    build_args = [body["source"].get("dockerBuildArgs", {}) for body in assets["dockerImages"].values()]
    assert {"MODEL": "xlm-roberta-base-ViT-B-32", "PRETRAINED": "laion5b_s13b_b90k"} in build_args
    templates = [json.loads(path.read_text()) for path in tmp_path.glob("*.template.json")]
    variables = [
        resource["Properties"]["Environment"]["Variables"]
        for template in templates
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function" and "Environment" in resource["Properties"]
    ]
    assert any(
        env.get("IMSIM_MODEL") == "xlm-roberta-base-ViT-B-32" and env.get("IMSIM_ENGINE", "onnx") for env in variables
    )


def test_a_model_without_the_onnx_engine_needs_the_sagemaker_backend(tmp_path, monkeypatch):
    table = tmp_path / "catalog.csv"
    table.write_text(
        "architecture,pretrained,dimension,image_size,tokenizer,engines,image_mean,image_std,resize,interpolation\n"
        "ViT-B-32,laion2b_s34b_b79k,512,224,clip,torch onnx,0.5 0.5 0.5,0.5 0.5 0.5,shortest,bicubic\n"
        "ViT-B-16,torch-only-tag,512,224,clip,torch,0.5 0.5 0.5,0.5 0.5 0.5,shortest,bicubic\n"
    )
    monkeypatch.setattr(catalog, "CATALOG_FILE", table)
    catalog.catalog.cache_clear()
    try:
        with pytest.raises(ConfigError, match="needs -c backend=sagemaker"):
            config_of(model="ViT-B-16/torch-only-tag", backend="lambda")
        assert config_of(model="ViT-B-16/torch-only-tag", backend="sagemaker").image_size == 224
        with pytest.raises(ConfigError, match=re.escape("ViT-B-32/laion2b_s34b_b79k | ViT-B-16/torch-only-tag")):
            config_of(model="ViT-B-32/openai")
    finally:
        catalog.catalog.cache_clear()


def test_an_unlisted_pretrained_tag_is_refused_with_the_catalog():
    with pytest.raises(ConfigError) as caught:
        config_of(model="ViT-B-32/no-such-tag")
    assert "runtime/engines/catalog.csv" in str(caught.value) and XLM in str(caught.value)
