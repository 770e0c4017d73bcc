"""A part built on its first use, once, by whichever thread asks first (the others wait for it)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Deferred(Generic[T]):
    def __init__(self, build: Callable[[], T]):
        self._build: Callable[[], T] | None = build
        self._value: T | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._build is None

    def get(self) -> T:
        if self._build is not None:
            with self._lock:
                if self._build is not None:  # another thread may have built it while this one waited
                    self._value = self._build()
                    self._build = None  # a failed build stays unbuilt: the next use tries again
        return self._value  # type: ignore[return-value]
