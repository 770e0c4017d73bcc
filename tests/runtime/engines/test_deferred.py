"""A deferred part is built once, on first use, even when threads ask for it together."""

from __future__ import annotations

import threading
import time

import pytest

from runtime.engines.deferred import Deferred


def test_builds_nothing_until_asked_then_once():
    builds = []
    part = Deferred(lambda: builds.append(1) or "tower")
    assert not part.built and builds == []
    assert part.get() == "tower" and part.get() == "tower"
    assert part.built and builds == [1]


def test_threads_asking_together_share_one_build():
    builds = []

    def build():
        builds.append(1)
        time.sleep(0.05)  # long enough for the other threads to arrive while it runs
        return object()

    part = Deferred(build)
    got = []
    threads = [threading.Thread(target=lambda: got.append(part.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len({id(value) for value in got}) == 1


def test_a_failed_build_is_tried_again_on_the_next_use():
    attempts = []

    def build():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk hiccup")
        return "tower"

    part = Deferred(build)
    with pytest.raises(OSError):
        part.get()
    assert not part.built
    assert part.get() == "tower" and len(attempts) == 2
