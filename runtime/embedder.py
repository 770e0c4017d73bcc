"""From request slots to vectors: read each input, validate it, and batch it through the engine."""

from __future__ import annotations

import binascii
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from runtime.engines import Engine
from runtime.engines.priority import Priority
from runtime.errors import NOT_AN_IMAGE, ApiError, InvalidInput
from runtime.inputs.fetch import UrlFetcher
from runtime.inputs.files import read_file
from runtime.inputs.images import (
    DecodeBudget,
    ImageLimits,
    LibraryPixels,
    configure_pillow,
    image_to_library_pixels,
    image_to_pixels,
    unmap_large_buffers_when_freed,
)
from runtime.observability import record_embedded, span
from runtime.settings import Settings
from runtime.vectors import scores_of

T = TypeVar("T")
R = TypeVar("R")
DATA_URL_PREFIX = re.compile(r"^data:[^,]{0,100};base64,", re.IGNORECASE)
BASE64_WHITESPACE = b" \t\n\r\v\f"


@dataclass(frozen=True)
class Input:
    kind: str  # "url", "img" or "text"; "file" (a path on this machine) only from the CLI's folder import
    value: str | bytes  # bytes: an image uploaded as such (runtime/api/bodies.py), not base64
    field: str  # the request field it came from, for error messages


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The similarity score of two unit vectors."""
    return float(scores_of(float(np.dot(a, b))))


class Embedder:
    """Reads inputs (base64, URLs, text), prepares them and embeds them in two engine calls."""

    def __init__(self, settings: Settings, engine: Engine, fetcher: UrlFetcher | None = None):
        self.settings = settings
        self.engine = engine
        self.fetcher = fetcher or UrlFetcher(settings)
        # One thread per slot of a full batch: a batch of slow URLs waits for its own deadline only,
        # not for a queue behind other requests' downloads.
        self._readers = ThreadPoolExecutor(max_workers=settings.max_batch, thread_name_prefix="image-reader")
        # Decoding is CPU work: each request keeps at most decode_threads_per_request images in this
        # pool, so a client's slow images queue behind each other, not in front of other clients'.
        self._decoders = ThreadPoolExecutor(max_workers=settings.max_batch, thread_name_prefix="image-decoder")
        self._decode_budget = DecodeBudget(settings.decode_memory_mb * 1024 * 1024)
        self.image_limits = ImageLimits.of(settings)
        configure_pillow(settings.max_image_pixels)
        unmap_large_buffers_when_freed()

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    def embed(self, inputs: list[Input], priority: Priority) -> np.ndarray:
        """One unit vector per input, in order; ``priority`` orders the engine calls (``runtime.engines.Priority``)."""
        texts = [(i, self.check_text(item)) for i, item in enumerate(inputs) if item.kind == "text"]
        images = [(i, item) for i, item in enumerate(inputs) if item.kind != "text"]
        deadline = time.monotonic() + self.settings.fetch_timeout_s  # for all of this request's URLs together
        pixels = self.read_images([item for _, item in images], deadline)
        vectors = np.zeros((len(inputs), self.engine.dimension), dtype=np.float32)
        if images:
            with span("embed"):
                vectors[[i for i, _ in images]] = self.engine.encode_images(np.stack(pixels), priority)
        if texts:
            with span("embed"):
                vectors[[i for i, _ in texts]] = self.engine.encode_texts([text for _, text in texts], priority)
        record_embedded(images=len(images), texts=len(texts))
        return vectors

    def check_text(self, item: Input) -> str:
        text = str(item.value).strip()
        if not text:
            raise InvalidInput(f"{item.field}: the text is empty", code="text_empty")
        if len(text) > self.settings.max_text_chars:
            raise InvalidInput(
                f"{item.field}: the text has {len(text)} characters; at most {self.settings.max_text_chars}",
                code="text_too_long",
            )
        return text

    def read_images(self, items: list[Input], deadline: float | None = None) -> list[np.ndarray]:
        """Every item's model input, in order: all bytes fetched at once, decoded a few at a time."""
        downloads = [self._readers.submit(self.read_bytes, item, deadline) for item in items]
        decodes: list[Future] = []
        try:
            self.start_decodes(((item, download.result()) for item, download in zip(items, downloads)), decodes)
            return [decode.result() for decode in decodes]
        finally:
            for pending in downloads + decodes:
                pending.cancel()

    def decode_each(self, files: list[tuple[Input, bytes]]) -> list[LibraryPixels | ApiError]:
        """Each file's model input with its perceptual hash and size (a library add), in order, decoded a few
        at a time; a file that cannot be decoded gets its ApiError as its result (a batch that answers per
        item, such as a library batch add, goes on without it)."""
        decodes: list[Future] = []
        self.start_decodes(files, decodes, self.decode_for_library)
        return [result_or_error(decode) for decode in decodes]

    def start_decodes(
        self,
        files: Iterable[tuple[Input, bytes]],
        started: list[Future],
        decode: Callable[[Input, bytes], object] | None = None,
    ) -> None:
        """Starts decoding each file, holding one request to decode_threads_per_request decodes at once: the
        next file is taken only when a turn is free. Each decode joins ``started`` as it starts, so the caller
        can cancel those already started when ``files`` raises (a download that failed)."""
        turns = threading.Semaphore(self.settings.decode_threads_per_request)
        for item, data in files:
            turns.acquire()
            one = self._decoders.submit(decode or self.decode, item, data)
            one.add_done_callback(lambda _: turns.release())
            started.append(one)

    def decode(self, item: Input, data: bytes) -> np.ndarray:
        return self._decode(image_to_pixels, item, data)

    def decode_for_library(self, item: Input, data: bytes) -> LibraryPixels:
        return self._decode(image_to_library_pixels, item, data)

    def _decode(self, to_pixels: Callable[..., R], item: Input, data: bytes) -> R:
        spec = self.engine.spec
        try:
            with span("decode"):
                return to_pixels(
                    data,
                    item.field,
                    spec,
                    self.image_limits,
                    draft_to=spec.size * self.settings.draft_factor,
                    budget=self._decode_budget,
                )
        except InvalidInput as exc:
            if item.kind == "url" and exc.code == NOT_AN_IMAGE:
                raise InvalidInput(f"{item.field}: the URL's content is not an image", code="url_not_image") from exc
            raise

    def read_each(self, items: list[T], read: Callable[[T], bytes]) -> list[bytes | ApiError]:
        """``read`` on each item in the reader threads; an item whose read raises an ApiError gets it as its
        result (a batch that answers per item, such as a library batch add, goes on without it)."""
        reads: list[Future] = [self._readers.submit(read, item) for item in items]
        return [result_or_error(one) for one in reads]

    def encode_pixels(self, pixels: list[np.ndarray], priority: Priority) -> np.ndarray:
        """Unit vectors of prepared images, in one engine call."""
        with span("embed"):
            vectors = self.engine.encode_images(np.stack(pixels), priority)
        record_embedded(images=len(pixels), texts=0)
        return vectors

    def read_bytes(self, item: Input, deadline: float | None = None) -> bytes:
        if item.kind == "file":
            return read_file(str(item.value), item.field, self.settings.max_image_bytes)
        if item.kind == "url":
            if not item.value.strip():
                raise InvalidInput(f"{item.field}: the URL is empty", code="invalid_url")
            with span("fetch"):
                return self.fetcher.fetch(str(item.value).strip(), item.field, deadline)
        if isinstance(item.value, bytes):
            if len(item.value) > self.settings.max_image_bytes:
                message = f"{item.field}: the image is larger than {self.settings.max_image_bytes} bytes"
                raise InvalidInput(message, code="image_too_large")
            return item.value
        return decode_base64(item.value, item.field, self.settings.max_image_bytes)


def result_or_error(future: Future[R]) -> R | ApiError:
    """The future's result, or the ApiError it raised (an item answered in its place)."""
    try:
        return future.result()
    except ApiError as error:
        return error


def decode_base64(value: str, field: str, max_bytes: int) -> bytes:
    text = DATA_URL_PREFIX.sub("", value.strip(), count=1)
    if not text.isascii():  # a flag of the string: no scan
        position = next(index for index, char in enumerate(text) if not char.isascii())
        raise InvalidInput(
            f"{field}: not valid base64 (a non-ASCII character at position {position})", code="invalid_base64"
        )
    if len(text) * 3 // 4 <= max_bytes:
        try:
            return strict_base64(text, field)  # an ASCII string is read in place, not copied to bytes first
        except binascii.Error:
            pass  # line breaks or spaces (a wrapped encoding): taken out, then decoded once more
    # One pass in C; "".join(text.split()) would first build a list of every piece ("AB AB AB ...":
    # 30 MB of it took 700 MB). The limit is on the image, so it is checked without the whitespace.
    encoded = text.encode("ascii").translate(None, BASE64_WHITESPACE)
    if len(encoded) * 3 // 4 > max_bytes:
        raise InvalidInput(f"{field}: the image is larger than {max_bytes} bytes", code="image_too_large")
    try:
        return strict_base64(encoded, field)
    except binascii.Error as exc:
        raise InvalidInput(f"{field}: not valid base64 ({exc})", code="invalid_base64") from exc


def strict_base64(encoded: str | bytes, field: str) -> bytes:
    """The decoded bytes, checked in the same C pass (``strict_mode``): ``b64decode(validate=True)``
    first runs a regular expression over the whole text, which took as long again as decoding a 7 MB
    image."""
    if not encoded:
        raise InvalidInput(f"{field}: the base64 string is empty", code="invalid_base64")
    return binascii.a2b_base64(encoded, strict_mode=True)
