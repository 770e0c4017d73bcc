"""Micro-batching: concurrent requests in one process share forward passes.

One worker thread owns the engine. Each request's images (or texts) go into a queue; the worker
takes what is queued when it becomes free (waiting at most ``max_wait_ms`` for more), runs one
forward pass per kind, and hands each request its slice. An idle server adds no delay with the
default wait of 0 ms: batches form only while a forward pass is running, that is, under load.

Two queues, first in first out within each: interactive calls (a search, an embedding request, a
single add) go ahead of batch work (batch adds, imports), so a search waits for the pass in progress,
not for every batch queued before it (8 clients adding 32 images a request held a text search 10 s).
A pass takes calls of one queue only, so a search never rides in (and waits for) a pass of 32 images.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from runtime.engines.priority import BATCH, INTERACTIVE, Priority
from runtime.vectors import Vectors

if TYPE_CHECKING:
    from runtime.engines import Engine, Pixels
    from runtime.inputs.images import ImageSpec

INTERACTIVE_PASSES_PER_BATCH_PASS = 4
"""While batch work waits, at most this many interactive passes in a row; then one batch pass. The in-flight
limit bounds how many interactive calls wait at once, not how long they keep coming: clients that search
back to back would otherwise hold an import off for good. Batch work gets at least one pass in five."""


@dataclass
class _Job:
    kind: Literal["image", "text"]
    items: Pixels | list[str]
    priority: Priority
    future: Future[Vectors] = field(default_factory=Future)


class MicroBatcher:
    """An ``Engine`` that runs the wrapped engine's forward passes on one worker thread."""

    def __init__(self, engine: Engine, *, max_batch: int = 32, max_wait_ms: float = 0.0):
        self.engine = engine
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queues: dict[Priority, deque[_Job]] = {INTERACTIVE: deque(), BATCH: deque()}
        self._changed = threading.Condition()
        self._interactive_streak = 0  # interactive passes run in a row while batch work waited
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

    def encode_images(self, pixels: Pixels, priority: Priority = INTERACTIVE) -> Vectors:
        return self._submit(_Job("image", pixels, priority))

    def encode_texts(self, texts: list[str], priority: Priority = INTERACTIVE) -> Vectors:
        return self._submit(_Job("text", list(texts), priority))

    def queued(self, priority: Priority) -> int:
        """Calls of this priority waiting for a pass (the one running not counted)."""
        with self._changed:
            return len(self._queues[priority])

    def _submit(self, job: _Job) -> Vectors:
        with self._changed:
            self._queues[job.priority].append(job)
            self._changed.notify()
        return job.future.result()

    def _work(self) -> None:
        while True:
            jobs = self._next_pass()
            for kind in ("image", "text"):
                same = [job for job in jobs if job.kind == kind]
                if same:
                    self._run(kind, same)

    def _next_pass(self) -> list[_Job]:
        """The calls of the next pass: the first queued call of the queue whose turn it is, and those
        queued behind it in the same queue (up to ``max_batch`` items, waiting at most ``max_wait``)."""
        with self._changed:
            self._changed.wait_for(lambda: any(self._queues.values()))
            waiting = self._queues[self._turn()]
            jobs = [waiting.popleft()]
            count = len(jobs[0].items)
            deadline = time.monotonic() + self.max_wait
            while count < self.max_batch:
                if not waiting and not self._changed.wait_for(lambda: bool(waiting), deadline - time.monotonic()):
                    break
                jobs.append(waiting.popleft())
                count += len(jobs[-1].items)
            return jobs

    def _turn(self) -> Priority:
        """Interactive calls first, but batch work after INTERACTIVE_PASSES_PER_BATCH_PASS of them in a row."""
        batch_waits = bool(self._queues[BATCH])
        batch_is_due = batch_waits and self._interactive_streak >= INTERACTIVE_PASSES_PER_BATCH_PASS
        if self._queues[INTERACTIVE] and not batch_is_due:
            self._interactive_streak = self._interactive_streak + 1 if batch_waits else 0
            return INTERACTIVE
        self._interactive_streak = 0
        return BATCH

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
