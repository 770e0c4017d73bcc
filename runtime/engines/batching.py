"""Micro-batching: concurrent requests in one process share forward passes.

One worker thread owns the engine. Each request's images (or texts) go into a queue; the worker
takes everything queued when it becomes free (waiting at most ``max_wait_ms`` for more), runs one
forward pass per kind, and hands each request its slice. An idle server adds no delay with the
default wait of 0 ms: batches form only while a forward pass is running, that is, under load.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from runtime.vectors import Vectors

if TYPE_CHECKING:
    from runtime.engines import Engine, Pixels
    from runtime.inputs.images import ImageSpec


@dataclass
class _Job:
    kind: Literal["image", "text"]
    items: Pixels | list[str]
    future: Future[Vectors] = field(default_factory=Future)


class MicroBatcher:
    """An ``Engine`` that runs the wrapped engine's forward passes on one worker thread."""

    def __init__(self, engine: Engine, *, max_batch: int = 32, max_wait_ms: float = 0.0):
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self.batches_run = 0
        threading.Thread(target=self._work, name="micro-batcher", daemon=True).start()

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    @property
    def image_size(self) -> int:
        return self.engine.image_size

    @property
    def spec(self) -> ImageSpec:
        return self.engine.spec

    @property
    def dimension(self) -> int:
        return self.engine.dimension

    def encode_images(self, pixels: Pixels) -> Vectors:
        return self._submit(_Job("image", pixels))

    def encode_texts(self, texts: list[str]) -> Vectors:
        return self._submit(_Job("text", list(texts)))

    def _submit(self, job: _Job) -> Vectors:
        self._jobs.put(job)
        return job.future.result()

    def _work(self) -> None:
        while True:
            jobs = self._gather(self._jobs.get())
            for kind in ("image", "text"):
                same = [job for job in jobs if job.kind == kind]
                if same:
                    self._run(kind, same)

    def _gather(self, first: _Job) -> list[_Job]:
        jobs, count = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                job = self._jobs.get(timeout=remaining) if remaining > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            jobs.append(job)
            count += len(job.items)
        return jobs

    def _run(self, kind: str, jobs: list[_Job]) -> None:
        try:
            if kind == "image":
                vectors = self.engine.encode_images(np.concatenate([job.items for job in jobs]))
            else:
                vectors = self.engine.encode_texts([text for job in jobs for text in job.items])
        except Exception as exc:  # each waiting request gets the engine's error
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.batches_run += 1
        start = 0
        for job in jobs:
            job.future.set_result(vectors[start : start + len(job.items)])
            start += len(job.items)
