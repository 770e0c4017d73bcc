"""Bake a model into a folder at image build time: ``python -m runtime.bake --out /opt/model``.

Loads the weights once (downloading them when given a pretrained tag), saves them as a local
checkpoint with a ``manifest.json``, then reloads the folder through the runtime's own loading
code and checks that both give the same vectors. The containers then never fetch at run time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from runtime.bake.export import export_onnx
from runtime.bake.int8 import PROBE_TEXTS, bake_int8
from runtime.bake.optimize import optimize_graphs
from runtime.engines.catalog import find
from runtime.engines.model_folder import (
    GRAPHS_OPTIMIZED_BY,
    IMAGE_GRAPH,
    TEXT_GRAPH,
    WEIGHTS_FILE,
    settings_for_model_dir,
    write_manifest,
)
from runtime.engines.tokenizer import tokenizer_kind
from runtime.engines.torch_engine import TorchEngine
from runtime.settings import DEFAULT_MODEL, DEFAULT_PRETRAINED, Settings


def bake(settings: Settings, out: Path, *, onnx: bool = True) -> dict:
    import torch

    source = TorchEngine.load(settings)
    check_catalog(settings, source)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(source.model.state_dict(), out / WEIGHTS_FILE)
    extra: dict = {"weights_file": WEIGHTS_FILE}
    if settings.model_config_path:
        config_file = f"{settings.model}.json"  # open_clip names a registered config after its file
        shutil.copy(settings.model_config_path, out / config_file)
        extra["config_file"] = config_file
    if onnx:
        extra["onnx_cosine_vs_torch"] = export_onnx(source, out, int8=False)
        worst = min(extra["onnx_cosine_vs_torch"][key] for key in ("image-fp32", "text-fp32"))
        if worst < 0.99999:
            raise SystemExit(f"bake: the fp32 ONNX graphs drift from torch (cosine {worst:.6f})")
        extra.update(bake_graphs(out, source))
    manifest = write_manifest(out, settings, source, **extra)
    check_reload(source, out)
    return manifest


def check_catalog(settings: Settings, source: TorchEngine) -> None:
    """A catalogued model must be what its row says: the CDK app and the front engine trust the row."""
    listed = find(settings.model, settings.pretrained)
    if listed is None:
        return
    actual = (source.dimension, source.image_size, tokenizer_kind(source.tokenizer))
    if actual != (listed.dimension, listed.image_size, listed.tokenizer):
        raise SystemExit(
            f"bake: {listed.version} is {actual[0]}-d, {actual[1]} px, tokenizer {actual[2]}; "
            f"the catalog (runtime/engines/catalog.csv) says {listed.dimension}-d, {listed.image_size} px, "
            f"tokenizer {listed.tokenizer}"
        )


def bake_graphs(out: Path, source: TorchEngine) -> dict:
    """Optimise the fp32 graphs for fast loading, then measure and keep the int8 variant (runtime.bake.int8)."""
    raw = out / "exported"
    raw.mkdir()
    for graph in (IMAGE_GRAPH, TEXT_GRAPH):
        shutil.copy(out / graph, raw / graph)
    try:
        tokens = np.asarray(source.tokenizer(PROBE_TEXTS))
        optimized_by = optimize_graphs(out, source.image_size, ("fp32",), tokens=tokens)
        kind = tokenizer_kind(source.tokenizer)
        return {GRAPHS_OPTIMIZED_BY: optimized_by, "int8": bake_int8(out, raw, source.spec, source.model_version, kind)}
    finally:
        shutil.rmtree(raw)


def check_reload(source: TorchEngine, out: Path) -> None:
    """The baked folder must load through the runtime's loader and give the same vectors."""
    baked = TorchEngine.load(settings_for_model_dir(Settings(model_dir=str(out), device="cpu", engine="torch")))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, source.image_size, source.image_size, 3), dtype=np.uint8)
    texts = ["a photo of a cat", "a diagram"]
    for expected, actual in (
        (source.encode_images(pixels), baked.encode_images(pixels)),
        (source.encode_texts(texts), baked.encode_texts(texts)),
    ):
        if not np.allclose(expected, actual, atol=1e-5):
            raise SystemExit("bake: the reloaded model gives different vectors")
    if baked.model_version != source.model_version:
        raise SystemExit(f"bake: model version {baked.model_version} != {source.model_version}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.bake", description=__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--pretrained", default=DEFAULT_PRETRAINED, help="pretrained tag (the version label)")
    parser.add_argument("--weights", help="bake this local checkpoint instead of downloading the tag")
    parser.add_argument("--model-config", help="extra OpenCLIP model config JSON, copied into the folder")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the ONNX export")
    args = parser.parse_args(argv)
    settings = Settings(
        model=args.model,
        pretrained=args.pretrained,
        weights=args.weights,
        model_config_path=args.model_config,
        device="cpu",
    )
    manifest = bake(settings, args.out, onnx=args.onnx)
    print(f"baked {manifest['model_version']} ({manifest['dimension']}-d, {manifest['image_size']} px) into {args.out}")
    if "int8" in manifest:
        chosen = manifest["int8"]["chosen"]
        print(f"int8: {'serves ' + chosen if chosen else 'no variant kept the agreement; serves fp32'} (manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
