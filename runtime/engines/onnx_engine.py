"""ONNX Runtime on the CPU: the deployed CPU engine. Imports neither torch nor open_clip."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.engines.deferred import Deferred
from runtime.engines.model_folder import (
    GRAPHS_OPTIMIZED_BY,
    IMAGE_GRAPH,
    PRECISIONS,
    TEXT_GRAPH,
    TOKENIZER_FILE,
    graph_file,
    has_manifest,
    read_manifest,
)
from runtime.engines.priority import INTERACTIVE
from runtime.engines.tokenizer import ClipTokenizer, HfTokenizer, load_tokenizer
from runtime.inputs.images import ImageSpec, normalize
from runtime.vectors import Vectors, l2_normalize

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

    from runtime.engines import Pixels
    from runtime.engines.priority import Priority


@dataclass(frozen=True)
class TextTower:
    session: InferenceSession
    tokenizer: ClipTokenizer | HfTokenizer


class OnnxEngine:
    def __init__(
        self,
        image_session: InferenceSession,
        text: Deferred[TextTower],
        spec: ImageSpec,
        model_version: str,
    ):
        """``text``: the text tower, loaded on the first text request when the engine comes from a folder
        (a cold start answers its first image without it)."""
        self.image_session = image_session
        self.text = text
        self.spec = spec
        self.model_version = model_version
        self.dimension = int(image_session.get_outputs()[0].shape[-1])
        # One run at a time: concurrent runs on a few cores only fight over them.
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.spec.size

    @property
    def tokenizer(self) -> ClipTokenizer | HfTokenizer:
        return self.text.get().tokenizer

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
        """The engine of a model folder's graphs at ``precision`` (``fp32`` or ``int8``); ``spec`` and
        ``tokenizer`` (its kind: ``clip`` or ``hf``) default to the folder's manifest."""
        import onnxruntime as ort

        if precision not in PRECISIONS:
            raise ValueError(f"onnx precision must be one of {PRECISIONS}, not {precision!r}")
        manifest = read_manifest(folder) if has_manifest(folder) else {}  # the export checks before it writes one
        return cls.from_files(
            folder / graph_file(IMAGE_GRAPH, precision),
            folder / graph_file(TEXT_GRAPH, precision),
            folder / TOKENIZER_FILE,
            spec=spec or _image_spec(manifest),
            model_version=model_version,
            threads=threads,
            tokenizer=tokenizer or manifest.get("tokenizer", "clip"),  # clip: folders from before two kinds
            optimized=manifest.get(GRAPHS_OPTIMIZED_BY) == ort.__version__,
        )

    @classmethod
    def from_files(
        cls,
        image_graph: Path,
        text_graph: Path,
        tokenizer_file: Path,
        *,
        spec: ImageSpec,
        model_version: str,
        threads: int | None = None,
        tokenizer: str = "clip",
        optimized: bool = False,
    ) -> OnnxEngine:
        """``optimized``: the graphs were optimised at bake time by this ONNX Runtime version, so loading
        skips that work (a cold start's largest part after the imports). The text graph and the
        tokenizer load on the first text request; a missing file is refused here, not then."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        level = ort.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_DISABLE_ALL if optimized else level.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning, leaving the cores to image decoding and to
        # the other requests of the process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(path: Path) -> InferenceSession:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        for path in (text_graph, tokenizer_file):
            if not path.is_file():
                raise FileNotFoundError(f"the model folder has no {path.name}: {path}")
        text = Deferred(lambda: TextTower(session(text_graph), load_tokenizer(tokenizer_file, tokenizer)))
        return cls(session(image_graph), text, spec, model_version)

    def encode_images(self, pixels: Pixels, priority: Priority = INTERACTIVE) -> Vectors:
        batch = normalize(pixels, self.spec)
        with self._lock:
            vectors = self.image_session.run(None, {"pixels": batch})[0]
        return l2_normalize(vectors)

    def encode_texts(self, texts: list[str], priority: Priority = INTERACTIVE) -> Vectors:
        text = self.text.get()
        tokens = text.tokenizer(texts)
        with self._lock:
            vectors = text.session.run(None, {"tokens": tokens})[0]
        return l2_normalize(vectors)


def _image_spec(manifest: dict[str, Any]) -> ImageSpec:
    """The preprocessing a model folder's manifest records (folders from before the resize mode and
    interpolation were recorded: open_clip's defaults, shortest side and bicubic)."""
    return ImageSpec(
        size=manifest["image_size"],
        mean=tuple(manifest["image_mean"]),
        std=tuple(manifest["image_std"]),
        resize=manifest.get("image_resize", "shortest"),
        interpolation=manifest.get("image_interpolation", "bicubic"),
    )
