"""Engines turn prepared images and texts into unit-length vectors.

An engine knows nothing of HTTP, URLs or JSON: it takes uint8 images already cropped to the
model's input size (see ``runtime.inputs.images``) and plain strings.

- ``torch``: OpenCLIP in PyTorch (the reference, and the GPU path).
- ``onnx``: ONNX Runtime on the CPU, from graphs exported from the same weights (no torch import).
- ``sagemaker``: a SageMaker endpoint computes the vectors (the light front function).
- ``auto`` (default): ``onnx`` when the model folder holds exported graphs, else ``torch``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from runtime.engines.priority import INTERACTIVE, Priority
from runtime.errors import ModelUnavailable

# Types only: importing the package (e.g. runtime.engines.catalog, which the CDK app reads) needs no NumPy.
if TYPE_CHECKING:
    from concurrent.futures import Future

    import numpy as np
    from numpy.typing import NDArray

    from runtime.inputs.images import ImageSpec
    from runtime.settings import Settings
    from runtime.vectors import Vectors

    Pixels = NDArray[np.uint8]
    """N x size x size x 3 uint8 images, already cropped to the model's input size."""


class Engine(Protocol):
    @property
    def model_version(self) -> str:
        """``<architecture>/<pretrained tag>``: vectors of two versions do not compare."""
        ...

    @property
    def image_size(self) -> int:
        """The side, in pixels, of the square images ``encode_images`` takes."""
        ...

    @property
    def spec(self) -> ImageSpec:
        """How an image becomes the model's input: size, resize mode, interpolation, mean and std."""
        ...

    @property
    def dimension(self) -> int:
        """The length of each vector."""
        ...

    def encode_images(self, pixels: Pixels, priority: Priority = INTERACTIVE) -> Vectors:
        """N x size x size x 3 uint8 -> N x dimension float32, L2-normalised."""
        ...

    def encode_texts(self, texts: list[str], priority: Priority = INTERACTIVE) -> Vectors:
        """N strings -> N x dimension float32, L2-normalised."""
        ...


def load_engine(settings: Settings) -> Engine:
    """The configured engine (with the model of its baked folder, if any), wrapped in a
    micro-batcher unless that is switched off."""
    from runtime.engines.model_folder import settings_for_model_dir

    settings = settings_for_model_dir(settings)
    engine = _load(settings)
    if settings.micro_batching and settings.engine != "sagemaker":
        from runtime.engines.batching import MicroBatcher

        return MicroBatcher(engine, max_batch=settings.max_batch, max_wait_ms=settings.batch_wait_ms)
    return engine


def load_engine_in_background(settings: Settings) -> Future[Engine]:
    """``load_engine`` in a thread of its own, started now: the caller imports the web stack meanwhile.

    ONNX Runtime builds its session without holding the GIL, so on two cores a cold start's two
    largest parts (the imports, the session) overlap. The runtime's own engine modules are imported
    here, first: the thread then imports only ONNX Runtime (or torch), which the web stack does not."""
    from concurrent.futures import ThreadPoolExecutor

    import runtime.engines.onnx_engine  # noqa: F401  (the model folder, numpy, Pillow and the image code with it)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-load")
    try:
        return pool.submit(load_engine, settings)
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one job


def _load(settings: Settings) -> Engine:
    from runtime.engines.model_folder import has_onnx_graphs, served_precision

    kind = settings.engine
    precision = served_precision(settings.model_dir, settings.onnx_precision)
    if kind == "auto":
        kind = "onnx" if has_onnx_graphs(settings.model_dir, precision) else "torch"
    if kind == "sagemaker":
        from runtime.engines.sagemaker_engine import SageMakerEngine

        return SageMakerEngine(settings)
    if kind == "onnx":
        from runtime.engines.onnx_engine import OnnxEngine

        if settings.model_dir and has_onnx_graphs(settings.model_dir, precision):
            folder = Path(settings.model_dir)
        elif settings.model_dir and has_onnx_graphs(settings.model_dir, "fp32"):
            raise ModelUnavailable(f"{settings.model_dir} holds no {precision} ONNX graphs; use fp32 or bake them")
        else:
            folder = _export_on_demand(settings)
            precision = served_precision(folder, settings.onnx_precision)
        return OnnxEngine.load(folder, model_version=settings.model_version, precision=precision)
    from runtime.engines.torch_engine import TorchEngine

    return TorchEngine.load(settings)


def _export_on_demand(settings: Settings) -> Path:
    """Locally, without a baked folder: export the graphs once into a cache folder and reuse them."""
    from runtime.bake.export import export_onnx  # on-demand export is the one local path that needs torch
    from runtime.engines.model_folder import has_onnx_graphs, write_manifest
    from runtime.engines.torch_engine import TorchEngine

    folder = Path(settings.data_dir) / "onnx-cache" / settings.cache_key()
    if not has_onnx_graphs(folder, "int8"):  # the export writes both precisions
        # Export both precisions into a scratch folder and move it into place whole, so an
        # interrupted export never leaves a folder that looks complete.
        scratch = folder.with_name(folder.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        engine = TorchEngine.load(settings.replace(device="cpu"))
        export_onnx(engine, scratch, int8=True)
        write_manifest(scratch, settings, engine)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(scratch, folder)
    return folder
