"""The model catalog (runtime/engines/catalog.csv) agrees with open_clip, and refuses bad rows."""

from __future__ import annotations

import pytest

from runtime.engines import catalog


def test_every_row_is_what_open_clip_builds():
    import open_clip

    known = set(open_clip.list_pretrained())
    for model in catalog.catalog():
        assert (model.architecture, model.pretrained) in known, model.version
        config = open_clip.get_model_config(model.architecture)
        assert config["embed_dim"] == model.dimension == 512, model.version  # the API's 512-d contract
        assert config["vision_cfg"]["image_size"] == model.image_size, model.version
        assert ("hf_tokenizer_name" in config["text_cfg"]) == (model.tokenizer == "hf"), model.version


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


HEADER = "architecture,pretrained,dimension,image_size,tokenizer,engines\n"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("ViT-B-32,openai,512,224,sentencepiece,torch onnx", "tokenizer 'sentencepiece'"),
        ("ViT-B-32,openai,512,224,clip,tensorrt", "engines 'tensorrt'"),
        ("ViT-B-32,openai,512,224,clip,", "engines ''"),
        ("ViT-B-32,openai,512,224,clip,torch\nViT-B-32,openai,512,224,clip,onnx", "listed twice: ViT-B-32/openai"),
    ],
)
def test_bad_rows_are_refused_with_their_line(table, row, reason):
    table.write_text(HEADER + row + "\n")
    with pytest.raises(ValueError, match=reason):
        catalog.catalog()
