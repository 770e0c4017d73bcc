"""ONNX Runtime on the CPU: the deployed CPU engine. Imports neither torch nor open_clip."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.engines.model_folder import (
    IMAGE_GRAPH,
    PRECISIONS,
    TEXT_GRAPH,
    TOKENIZER_FILE,
    graph_file,
    has_manifest,
    read_manifest,
)
from runtime.engines.tokenizer import ClipTokenizer, HfTokenizer, load_tokenizer
from runtime.inputs.images import ImageSpec, normalize
from runtime.vectors import Vectors, l2_normalize

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

    from runtime.engines import Pixels


class OnnxEngine:
    def __init__(
        self,
        image_session: InferenceSession,
        text_session: InferenceSession,
        tokenizer: ClipTokenizer | HfTokenizer,
        spec: ImageSpec,
        model_version: str,
    ):
        self.image_session = image_session
        self.text_session = text_session
        self.tokenizer = tokenizer
        self.spec = spec
        self.model_version = model_version
        self.dimension = int(image_session.get_outputs()[0].shape[-1])
        # One run at a time: concurrent runs on a few cores only fight over them.
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.spec.size

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        model_version: str,
        precision: str = "fp32",
        spec: ImageSpec | None = None,
        threads: int | None = None,
        tokenizer: str | None = None,
    ) -> OnnxEngine:
        """``spec`` and ``tokenizer`` (its kind: ``clip`` or ``hf``) default to the folder's manifest."""
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise ValueError(f"onnx precision must be one of {PRECISIONS}, not {precision!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning, leaving the cores to image decoding and to
        # the other requests of the process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(graph: str) -> InferenceSession:
            name = graph_file(graph, precision)
            return ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])

        spec = spec or _image_spec(folder)
        # The two graphs load (and are optimised) in parallel: most of a cold start's load time.
        with ThreadPoolExecutor(max_workers=2) as pool:
            image, text = pool.map(session, (IMAGE_GRAPH, TEXT_GRAPH))
        kind = tokenizer or _tokenizer_kind(folder)
        return cls(image, text, load_tokenizer(folder / TOKENIZER_FILE, kind), spec, model_version)

    def encode_images(self, pixels: Pixels) -> Vectors:
        batch = normalize(pixels, self.spec)
        with self._lock:
            vectors = self.image_session.run(None, {"pixels": batch})[0]
        return l2_normalize(vectors)

    def encode_texts(self, texts: list[str]) -> Vectors:
        tokens = self.tokenizer(texts)
        with self._lock:
            vectors = self.text_session.run(None, {"tokens": tokens})[0]
        return l2_normalize(vectors)


def _tokenizer_kind(folder: Path) -> str:
    """The manifest's tokenizer kind; ``clip`` for folders written before there were two kinds."""
    return read_manifest(folder).get("tokenizer", "clip") if has_manifest(folder) else "clip"


def _image_spec(folder: Path) -> ImageSpec:
    """Size, mean and std from the folder's manifest."""
    data: dict[str, Any] = read_manifest(folder)
    return ImageSpec(size=data["image_size"], mean=tuple(data["image_mean"]), std=tuple(data["image_std"]))
