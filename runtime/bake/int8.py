"""Decide int8 by measurement, at bake time.

Each int8 variant of the two graphs is measured against the fp32 graphs on a fixed probe set:
- the cosine of each vector to its fp32 vector (lowest and mean, images and texts);
- retrieval agreement on a probe library: for image-to-image queries (altered copies of library
  pictures) and text-to-image queries, how often the top-1 match is the same as fp32's, and how much
  of fp32's top 10 the variant's top 10 holds;
- its speed against fp32 on the bake machine (a batch of the probe images).
The fastest variant that meets ``AGREEMENT`` becomes ``image.int8.onnx`` / ``text.int8.onnx`` and is
served by default (``IMSIM_ONNX_PRECISION=auto``); when none meets it the folder serves fp32. Every
figure goes into the manifest under ``int8``.
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.bake.optimize import optimize_graphs
from runtime.engines.model_folder import IMAGE_GRAPH, TEXT_GRAPH, TOKENIZER_FILE, int8_name, weights_data_file

AGREEMENT = {"cosine_min": 0.995, "top10_overlap": 0.95}
"""What a variant must keep, on images and texts alike, to be served by default."""

LIBRARY_SIZE = 96
QUERY_COUNT = 24
TOP_K = 10
PROBE_TEXTS = [
    "a photo of a cat",
    "a red sports car on a road",
    "a bowl of fruit on a wooden table",
    "a snowy mountain at sunrise",
    "a person riding a bicycle",
    "a close-up of a yellow flower",
    "a city skyline at night",
    "a diagram with arrows and boxes",
    "two dogs playing in the grass",
    "a plate of pasta",
    "ein rotes Auto",
    "数字 123",
]


@dataclass(frozen=True)
class Variant:
    name: str
    quantize: Callable[[Path, Path, str, Any], None]  # (fp32 graph, int8 graph, input name, calibration)


def _dynamic(per_channel: bool = False, op_types: list[str] | None = None):
    def quantize(source: Path, target: Path, _input: str, _calibration) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            op_types_to_quantize=op_types,
            reduce_range=True,  # 7-bit weights: exact on CPUs without VNNI (u8 x s8 overflow otherwise)
        )

    return quantize


def _static(source: Path, target: Path, input_name: str, calibration: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(np.array_split(calibration, max(1, len(calibration) // 8)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        reduce_range=True,
    )


VARIANTS = (
    Variant("dynamic, per tensor", _dynamic()),
    Variant("dynamic, per channel", _dynamic(per_channel=True)),
    Variant("dynamic, MatMul only", _dynamic(op_types=["MatMul"])),
    Variant("static QDQ, calibrated", _static),
)


def probe_images(size: int, count: int, seed: int) -> np.ndarray:
    """Deterministic pictures with structure (gradients, blocks, discs): uint8 N x size x size x 3."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(count):
        slope_x, slope_y = rng.uniform(-120, 120, (2, 3))
        base = rng.uniform(0, 255, 3) + slope_x * x[..., None] + slope_y * y[..., None]
        blocks = np.kron(rng.integers(0, 80, (4, 4, 3)), np.ones((size // 4 + 1, size // 4 + 1, 1)))[:size, :size]
        cy, cx, radius = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.1, 0.3)]
        disc = ((y - cy) ** 2 + (x - cx) ** 2 < radius**2)[..., None] * rng.uniform(-100, 100, 3)
        images.append(np.clip(base + blocks + disc, 0, 255).astype(np.uint8))
    return np.stack(images)


def altered_copies(images: np.ndarray, seed: int) -> np.ndarray:
    """Queries for image-to-image retrieval: each picture flipped, shifted and re-exposed."""
    rng = np.random.default_rng(seed)
    copies: np.ndarray = images[:, :, ::-1].astype(np.float64)  # mirrored
    copies = np.roll(copies, shift=int(rng.integers(1, max(2, images.shape[1] // 8))), axis=1)
    copies = copies * rng.uniform(0.8, 1.2) + rng.normal(0, 6, copies.shape)
    return np.clip(copies, 0, 255).astype(np.uint8)


def agreement(reference, candidate, library: np.ndarray, queries: np.ndarray, texts: list[str]) -> dict[str, float]:
    """Cosines and retrieval agreement of ``candidate`` against ``reference`` (two engines)."""
    ref_lib, cand_lib = reference.encode_images(library), candidate.encode_images(library)
    ref_q, cand_q = reference.encode_images(queries), candidate.encode_images(queries)
    ref_t, cand_t = reference.encode_texts(texts), candidate.encode_texts(texts)
    image_cos = np.sum(ref_lib * cand_lib, axis=1)
    text_cos = np.sum(ref_t * cand_t, axis=1)
    i2i = _overlap(ref_q @ ref_lib.T, cand_q @ cand_lib.T)
    t2i = _overlap(ref_t @ ref_lib.T, cand_t @ cand_lib.T)
    return {
        "cosine_min": round(float(min(image_cos.min(), text_cos.min())), 6),
        "cosine_mean": round(float(np.concatenate([image_cos, text_cos]).mean()), 6),
        "image_to_image_top1": i2i[0],
        "image_to_image_top10_overlap": i2i[1],
        "text_to_image_top1": t2i[0],
        "text_to_image_top10_overlap": t2i[1],
        "top10_overlap": min(i2i[1], t2i[1]),
    }


def _overlap(reference_scores: np.ndarray, candidate_scores: np.ndarray) -> tuple[float, float]:
    """Share of queries whose top-1 agrees, and mean share of fp32's top 10 kept in the top 10."""
    k = min(TOP_K, reference_scores.shape[1])
    ref_top = np.argsort(-reference_scores, axis=1)[:, :k]
    cand_top = np.argsort(-candidate_scores, axis=1)[:, :k]
    top1 = float(np.mean(ref_top[:, 0] == cand_top[:, 0]))
    overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, cand_top)]))
    return round(top1, 4), round(overlap, 4)


def meets_agreement(figures: dict[str, Any]) -> bool:
    return all(figures.get(key, -1.0) >= floor for key, floor in AGREEMENT.items())


def seconds_per_batch(engine, batch: np.ndarray, repeat: int = 3) -> float:
    engine.encode_images(batch)  # warm up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        engine.encode_images(batch)
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def bake_int8(folder: Path, raw: Path, spec: Any, model_version: str, tokenizer: str = "clip") -> dict[str, Any]:
    """Measure every variant against ``folder``'s (optimised) fp32 graphs; keep the chosen one as the int8 graphs.

    Variants are quantized from the exported graphs in ``raw`` and optimised as the served graphs are,
    so the recorded figures are those of the graphs served. When none is chosen the int8 graphs are
    plain dynamic per-tensor ones, served only when asked for (``IMSIM_ONNX_PRECISION=int8``)."""
    from runtime.bake.export import quantize_int8
    from runtime.engines.onnx_engine import OnnxEngine

    fp32 = OnnxEngine.from_files(
        folder / IMAGE_GRAPH,
        folder / TEXT_GRAPH,
        folder / TOKENIZER_FILE,
        spec=spec,
        model_version=model_version,
        tokenizer=tokenizer,
        optimized=True,
    )
    decision = decide_int8(folder, raw, fp32, fp32.tokenizer, tokenizer)
    if decision["chosen"] is None:
        for graph in (IMAGE_GRAPH, TEXT_GRAPH):
            quantize_int8(raw / graph, folder / int8_name(graph))
        optimize_graphs(folder, spec.size, ("int8",), tokens=fp32.tokenizer(PROBE_TEXTS))
    return decision


def decide_int8(
    folder: Path, raw: Path, fp32_engine: Any, tokenize: Callable[[list[str]], np.ndarray], tokenizer: str = "clip"
) -> dict[str, Any]:
    """Try every variant; move the chosen one into ``folder`` as the int8 graphs."""
    from runtime.engines.onnx_engine import OnnxEngine

    size = fp32_engine.image_size
    library = probe_images(size, LIBRARY_SIZE, seed=1)
    queries = altered_copies(library[:QUERY_COUNT], seed=2)
    calibration = {
        "pixels": _normalized(fp32_engine, probe_images(size, 16, seed=3)),
        "tokens": tokenize(PROBE_TEXTS),
    }
    speed_batch = library[:16]
    fp32_seconds = seconds_per_batch(fp32_engine, speed_batch)
    results: dict[str, dict[str, Any]] = {}
    scratch = folder / "int8-trials"
    for index, variant in enumerate(VARIANTS):
        trial = scratch / str(index)
        trial.mkdir(parents=True, exist_ok=True)
        try:
            for graph, input_name in ((IMAGE_GRAPH, "pixels"), (TEXT_GRAPH, "tokens")):
                with warnings.catch_warnings():  # the quantizer warns about constant tensors it leaves as they are
                    warnings.simplefilter("ignore")
                    variant.quantize(raw / graph, trial / int8_name(graph), input_name, calibration[input_name])
            optimize_graphs(trial, fp32_engine.image_size, ("int8",), tokens=calibration["tokens"])
            candidate = OnnxEngine.from_files(
                trial / int8_name(IMAGE_GRAPH),
                trial / int8_name(TEXT_GRAPH),
                folder / TOKENIZER_FILE,
                spec=fp32_engine.spec,
                model_version=fp32_engine.model_version,
                tokenizer=tokenizer,
                optimized=True,
            )
            figures: dict[str, Any] = dict(agreement(fp32_engine, candidate, library, queries, PROBE_TEXTS))
            figures["speedup"] = round(fp32_seconds / seconds_per_batch(candidate, speed_batch), 3)
        except Exception as exc:  # a variant the quantizer cannot make for this graph is reported, not fatal
            figures = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        figures["meets_agreement"] = meets_agreement(figures)
        results[variant.name] = figures
    chosen = _fastest_agreeing(results)
    if chosen is not None:
        trial = scratch / str([v.name for v in VARIANTS].index(chosen))
        for graph in (IMAGE_GRAPH, TEXT_GRAPH):
            for name in (int8_name(graph), weights_data_file(int8_name(graph))):
                shutil.move(str(trial / name), str(folder / name))
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "thresholds": AGREEMENT,
        "probe": {"library": LIBRARY_SIZE, "image_queries": QUERY_COUNT, "text_queries": len(PROBE_TEXTS)},
        "variants": results,
        "chosen": chosen,
    }


def _fastest_agreeing(results: dict[str, dict[str, Any]]) -> str | None:
    agreeing = [(figures["speedup"], name) for name, figures in results.items() if figures["meets_agreement"]]
    faster = [(speedup, name) for speedup, name in agreeing if speedup > 1.0]
    return max(faster)[1] if faster else None


def _normalized(engine, pixels: np.ndarray) -> np.ndarray:
    from runtime.inputs.images import normalize

    return normalize(pixels, engine.spec)
