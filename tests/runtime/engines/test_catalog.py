"""The model catalog (runtime/engines/catalog.csv) agrees with open_clip, and refuses bad rows."""

from __future__ import annotations

import pytest

from runtime.engines import catalog

CLEANING_OF_KIND = {"clip": None, "hf": "whitespace", "hf-canonicalize": "canonicalize"}


def test_every_row_is_what_open_clip_builds():
    """Dimension, input size, tokenizer kind and preprocessing: what open_clip's config and the pretrained
    tag's own settings say (read from open_clip's tables; nothing downloaded)."""
    import open_clip

    known = set(open_clip.list_pretrained())
    for model in catalog.catalog():
        assert (model.architecture, model.pretrained) in known, model.version
        config = open_clip.get_model_config(model.architecture)
        assert config["embed_dim"] == model.dimension, model.version
        assert config["vision_cfg"]["image_size"] == model.image_size, model.version
        text = config["text_cfg"]
        cleaning = text.get("tokenizer_kwargs", {}).get("clean", "whitespace") if "hf_tokenizer_name" in text else None
        assert CLEANING_OF_KIND[model.tokenizer] == cleaning, model.version
        tag = open_clip.get_pretrained_cfg(model.architecture, model.pretrained)
        assert (model.image_mean, model.image_std) == (tuple(tag["mean"]), tuple(tag["std"])), model.version
        assert (model.resize, model.interpolation) == (tag["resize_mode"], tag["interpolation"]), model.version


def test_the_newer_families_are_listed_with_their_own_dimension():
    versions = {model.version: model for model in catalog.catalog()}
    for version, dimension in [
        ("ViT-B-32-SigLIP2-256/webli", 768),
        ("ViT-B-16-SigLIP2/webli", 768),
        ("ViT-B-16-SigLIP-i18n-256/webli", 768),
        ("MobileCLIP2-S0/dfndr2b", 512),
        ("MobileCLIP2-S2/dfndr2b", 512),
    ]:
        assert versions[version].dimension == dimension and versions[version].runs_on("onnx"), version
    assert catalog.first_pretrained("MobileCLIP2-S0") == "dfndr2b"
    assert catalog.first_pretrained("no-such-architecture") is None


def test_the_default_model_and_the_multilingual_one_are_listed():
    from runtime.settings import DEFAULT_MODEL, DEFAULT_PRETRAINED

    default = catalog.find(DEFAULT_MODEL, DEFAULT_PRETRAINED)
    assert default is not None and default.runs_on("onnx") and default.tokenizer == "clip"
    multilingual = catalog.find("xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k")
    assert multilingual is not None and multilingual.tokenizer == "hf"
    assert multilingual.runs_on("onnx") and multilingual.runs_on("torch")
    assert catalog.find("ViT-B-32", "no-such-tag") is None


@pytest.fixture
def table(tmp_path, monkeypatch):
    """Point the catalog at a scratch table; the cache is cleared before and after."""
    path = tmp_path / "catalog.csv"
    monkeypatch.setattr(catalog, "CATALOG_FILE", path)
    catalog.catalog.cache_clear()
    yield path
    catalog.catalog.cache_clear()


HEADER = "architecture,pretrained,dimension,image_size,tokenizer,engines,image_mean,image_std,resize,interpolation\n"
PRE = ",0.5 0.5 0.5,0.5 0.5 0.5,shortest,bicubic"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("ViT-B-32,openai,512,224,sentencepiece,torch onnx" + PRE, "tokenizer 'sentencepiece'"),
        ("ViT-B-32,openai,512,224,clip,tensorrt" + PRE, "engines 'tensorrt'"),
        ("ViT-B-32,openai,512,224,clip," + PRE, "engines ''"),
        (
            "ViT-B-32,openai,512,224,clip,torch" + PRE + "\nViT-B-32,openai,512,224,clip,onnx" + PRE,
            "listed twice: ViT-B-32/openai",
        ),
        ("ViT-B-32,openai,512,224,clip,torch,0.5 0.5,0.5 0.5 0.5,shortest,bicubic", "image_mean '0.5 0.5'"),
        ("ViT-B-32,openai,512,224,clip,torch,0.5 0.5 0.5,a b c,shortest,bicubic", "image_std 'a b c'"),
        ("ViT-B-32,openai,512,224,clip,torch,0.5 0.5 0.5,0.5 0.5 0.5,longest,bicubic", "resize 'longest'"),
        ("ViT-B-32,openai,512,224,clip,torch,0.5 0.5 0.5,0.5 0.5 0.5,squash,lanczos", "interpolation 'lanczos'"),
    ],
)
def test_bad_rows_are_refused_with_their_line(table, row, reason):
    table.write_text(HEADER + row + "\n")
    with pytest.raises(ValueError, match=reason):
        catalog.catalog()
