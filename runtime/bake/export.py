"""Export an OpenCLIP model's two towers to ONNX (needs torch; runs at bake time or on demand).

Writes ``image.onnx``, ``text.onnx`` and ``tokenizer.json`` into a folder, optionally int8
copies (``*.int8.onnx``), and checks each graph against torch on the same inputs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from runtime.engines.model_folder import IMAGE_GRAPH, TEXT_GRAPH, TOKENIZER_FILE, int8_name
from runtime.engines.tokenizer import export_tokenizer, tokenizer_kind

OPSET = 17


def export_onnx(engine, out: Path, *, int8: bool = True) -> dict[str, float]:
    """Export ``engine`` (a TorchEngine) into ``out``; returns the worst cosine per graph vs torch."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    model = deployable(engine.model.to("cpu").eval())
    size = engine.image_size
    pixels = torch.zeros(1, 3, size, size)
    tokens = torch.as_tensor(engine.tokenizer(["a photo"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _export(_tower(model, "encode_image"), pixels, out / IMAGE_GRAPH, "pixels")
        _export(_tower(model, "encode_text"), tokens, out / TEXT_GRAPH, "tokens")
    export_tokenizer(engine.tokenizer, out / TOKENIZER_FILE)
    if int8:
        for graph in (IMAGE_GRAPH, TEXT_GRAPH):
            quantize_int8(out / graph, out / int8_name(graph))
    return check_against_torch(engine, out, int8=int8)


def deployable(model):
    """The model in its inference form: MobileCLIP's FastViT/MCi blocks reparameterised (timm's
    ``reparameterize_model``: each block's train-time branches fused into one convolution), the same
    function in a smaller, faster graph. A copy: the torch engine goes on with the original, whose
    weights bake saves. Models without such blocks are returned as they are."""
    if not any(hasattr(module, "reparameterize") for module in model.modules()):
        return model
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model).eval()


def _tower(model, method: str):
    """One of the model's encode methods as a module of its own, for the exporter."""
    import torch

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return getattr(self.model, method)(x)

    # In eval mode: the exporter restores the mode it found, and Tower() starts in training mode, which
    # would switch the model's dropout on (XLM-RoBERTa's text tower has some) for every later call.
    return Tower().eval()


def _export(module, example, path: Path, input_name: str) -> None:
    import torch

    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=[input_name],
        output_names=["vectors"],
        dynamic_axes={input_name: {0: "batch"}, "vectors": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 weights. ``reduce_range`` keeps accuracy on CPUs without VNNI (7-bit weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, reduce_range=True)


def check_against_torch(engine, folder: Path, *, int8: bool) -> dict[str, float]:
    from runtime.engines.onnx_engine import OnnxEngine

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(4, engine.image_size, engine.image_size, 3), dtype=np.uint8)
    texts = ["a photo of a cat", "a red square on a white background", "数字 123", "x", "una foto de un gato"]
    expected_images, expected_texts = engine.encode_images(pixels), engine.encode_texts(texts)
    worst: dict[str, float] = {}
    for precision in ("fp32", "int8") if int8 else ("fp32",):
        onnx = OnnxEngine.load(
            folder,
            model_version=engine.model_version,
            precision=precision,
            spec=engine.spec,
            tokenizer=tokenizer_kind(engine.tokenizer),
        )
        worst[f"image-{precision}"] = float(np.min(np.sum(onnx.encode_images(pixels) * expected_images, axis=1)))
        worst[f"text-{precision}"] = float(np.min(np.sum(onnx.encode_texts(texts) * expected_texts, axis=1)))
    return worst
