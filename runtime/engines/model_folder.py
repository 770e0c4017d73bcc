"""The baked model folder: its file names, its ``manifest.json``, and whether it is complete.

Bake writes it, the engines read it, the benchmarks check it: all through this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.engines.torch_engine import TorchEngine
    from runtime.settings import Settings

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.pt"
IMAGE_GRAPH, TEXT_GRAPH, TOKENIZER_FILE = "image.onnx", "text.onnx", "tokenizer.json"
PRECISIONS = ("fp32", "int8")
GRAPHS_OPTIMIZED_BY = "graphs_optimized_by"
"""Manifest key: the ONNX Runtime version that optimised the graphs at bake time (runtime.bake.optimize)."""


def int8_name(graph: str) -> str:
    return graph.replace(".onnx", ".int8.onnx")


def graph_file(graph: str, precision: str) -> str:
    return int8_name(graph) if precision == "int8" else graph


def weights_data_file(graph_name: str) -> str:
    """The file beside an optimised graph that holds its weights (ONNX external data): ONNX Runtime
    maps it into memory instead of copying the weights out of the graph, which halves a session's
    load time at a cold start."""
    return graph_name + ".data"


def has_onnx_graphs(folder: str | Path | None, precision: str = "fp32") -> bool:
    """Whether ``folder`` holds a complete export for ``precision`` (graphs, their weights files when
    bake optimised them, tokenizer, manifest)."""
    if not folder:
        return False
    graphs = [graph_file(IMAGE_GRAPH, precision), graph_file(TEXT_GRAPH, precision)]
    if not all((Path(folder) / name).exists() for name in [*graphs, TOKENIZER_FILE, MANIFEST_FILE]):
        return False
    if GRAPHS_OPTIMIZED_BY in read_manifest(folder):
        return all((Path(folder) / weights_data_file(graph)).exists() for graph in graphs)
    return True


def served_precision(folder: str | Path | None, asked: str) -> str:
    """``auto``: int8 where bake measured a variant that keeps the agreement with fp32, else fp32."""
    if asked != "auto":
        return asked
    if not has_onnx_graphs(folder, "int8"):
        return "fp32"
    assert folder is not None
    return "int8" if read_manifest(folder).get("int8", {}).get("chosen") else "fp32"


def has_manifest(folder: str | Path | None) -> bool:
    if not folder:
        return False
    return (Path(folder) / MANIFEST_FILE).exists()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / MANIFEST_FILE).read_text())


def settings_for_model_dir(settings: Settings) -> Settings:
    """``settings`` with the model name, tag, weights and config of its baked ``model_dir``.

    Unchanged without a folder, or when the folder holds no weights manifest (an on-demand export).
    """
    if not settings.model_dir or not has_manifest(settings.model_dir):
        return settings
    folder = Path(settings.model_dir)
    manifest = read_manifest(folder)
    if "weights_file" not in manifest:
        return settings
    config = folder / manifest["config_file"] if manifest.get("config_file") else None
    weights = folder / manifest["weights_file"]
    return settings.replace(
        model=manifest["model"],
        pretrained=manifest["pretrained"],
        weights=str(weights) if weights.exists() else None,  # the Lambda image keeps only the graphs
        model_config_path=str(config) if config else settings.model_config_path,
        image_size=manifest.get("image_size", settings.image_size),
        smoke=False,
    )


def write_manifest(folder: Path, settings: Settings, engine: TorchEngine, **extra: Any) -> dict[str, Any]:
    from runtime.engines.tokenizer import tokenizer_kind

    spec = engine.spec
    manifest = {
        "model": settings.model,
        "pretrained": settings.pretrained,
        "model_version": settings.model_version,
        "image_size": spec.size,
        "image_mean": list(spec.mean),
        "image_std": list(spec.std),
        "image_resize": spec.resize,
        "image_interpolation": spec.interpolation,
        "dimension": engine.dimension,
        "tokenizer": tokenizer_kind(engine.tokenizer),  # which tokenizer.json the onnx engine loads
        **extra,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return manifest
