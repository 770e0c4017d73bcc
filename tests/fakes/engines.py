"""A real engine (the tiny model) wrapped so a test decides when each forward pass may run."""

from __future__ import annotations

import threading

import numpy as np

from runtime.engines import Engine
from runtime.engines.priority import INTERACTIVE, Priority
from runtime.inputs.images import ImageSpec
from runtime.vectors import Vectors


class TurnTakingEngine:
    """Each forward pass arrives, waits for a turn the test gives, then runs on the wrapped engine.

    ``arrived`` holds what each pass carried, in the order the model got them: a text pass its texts, an
    image pass each image's first pixel value (a test paints an image with its label)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.arrived: list[list[str | int]] = []
        self._turns = 0
        self._changed = threading.Condition()

    @property
    def model_version(self) -> str:
        return self.engine.model_version

    @property
    def image_size(self) -> int:
        return self.engine.image_size

    @property
    def dimension(self) -> int:
        return self.engine.dimension

    @property
    def spec(self) -> ImageSpec:
        return self.engine.spec

    def encode_images(self, pixels: np.ndarray, priority: Priority = INTERACTIVE) -> Vectors:
        self._take_turn([int(value) for value in pixels[:, 0, 0, 0]])
        return self.engine.encode_images(pixels)

    def encode_texts(self, texts: list[str], priority: Priority = INTERACTIVE) -> Vectors:
        self._take_turn(list(texts))
        return self.engine.encode_texts(texts)

    def give_turns(self, count: int) -> None:
        with self._changed:
            self._turns += count
            self._changed.notify_all()

    def wait_for_arrivals(self, count: int, timeout: float = 60) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.arrived) >= count, timeout), self.arrived

    def _take_turn(self, labels: list[str | int]) -> None:
        with self._changed:
            self.arrived.append(labels)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._turns > 0)
            self._turns -= 1
