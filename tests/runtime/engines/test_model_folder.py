"""The baked folder's manifest names the model; settings take it from there, and only from there."""

from __future__ import annotations

import json

from runtime.engines.model_folder import (
    IMAGE_GRAPH,
    MANIFEST_FILE,
    TEXT_GRAPH,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    has_onnx_graphs,
    settings_for_model_dir,
    weights_data_file,
)
from runtime.settings import Settings


def write_folder(folder, **manifest) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_baked_folder_names_the_model_its_weights_and_config(tmp_path):
    write_folder(
        tmp_path,
        model="tiny",
        pretrained="baked-tag",
        weights_file=WEIGHTS_FILE,
        config_file="tiny.json",
        image_size=64,
    )
    (tmp_path / WEIGHTS_FILE).write_bytes(b"weights")
    settings = settings_for_model_dir(Settings(model_dir=str(tmp_path), smoke=True))
    assert settings.model_version == "tiny/baked-tag"  # the folder's weights are real: smoke is off
    assert settings.weights == str(tmp_path / WEIGHTS_FILE)
    assert settings.model_config_path == str(tmp_path / "tiny.json")
    assert settings.image_size == 64


def test_graphs_without_weights_keep_the_version_and_name_no_weights(tmp_path):
    """The Lambda image copies only the graphs and the manifest out of the bake stage."""
    write_folder(tmp_path, model="tiny", pretrained="baked-tag", weights_file=WEIGHTS_FILE)
    settings = settings_for_model_dir(Settings(model_dir=str(tmp_path), weights=None))
    assert settings.model_version == "tiny/baked-tag" and settings.weights is None


def test_settings_without_a_baked_folder_are_unchanged(tmp_path):
    plain = Settings(model_dir=str(tmp_path / "missing"))
    assert settings_for_model_dir(plain) == plain
    write_folder(tmp_path / "export", model="tiny", pretrained="x")  # an on-demand export: no weights_file
    exported = Settings(model_dir=str(tmp_path / "export"))
    assert settings_for_model_dir(exported) == exported
    assert settings_for_model_dir(Settings()) == Settings()


def test_an_optimised_folder_without_a_graph_s_weights_file_is_incomplete(tmp_path):
    write_folder(tmp_path, model="tiny", graphs_optimized_by="1.32.0")
    for name in (IMAGE_GRAPH, TEXT_GRAPH, TOKENIZER_FILE):
        (tmp_path / name).write_bytes(b"graph")
    (tmp_path / weights_data_file(IMAGE_GRAPH)).write_bytes(b"weights")
    assert not has_onnx_graphs(tmp_path)  # the text graph's weights are missing
    (tmp_path / weights_data_file(TEXT_GRAPH)).write_bytes(b"weights")
    assert has_onnx_graphs(tmp_path)
