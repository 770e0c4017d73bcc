"""The micro-batcher gives the model interactive calls before batch work, and batch work its turn."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from runtime.engines.batching import INTERACTIVE_PASSES_PER_BATCH_PASS, MicroBatcher
from runtime.engines.priority import BATCH, INTERACTIVE
from tests.fakes.engines import TurnTakingEngine


@pytest.fixture
def held(tiny_engine):
    """The tiny model behind a batcher of its own, each pass waiting for a turn the test gives."""
    return TurnTakingEngine(tiny_engine.engine)


def painted(label: int, count: int, size: int) -> np.ndarray:
    """``count`` images whose pixels all hold ``label`` (TurnTakingEngine records it)."""
    return np.full((count, size, size, 3), label, dtype=np.uint8)


def start(call: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the calls were not queued"
        time.sleep(0.01)


def test_an_interactive_call_is_taken_before_the_batch_work_queued_ahead_of_it(held):
    batcher = MicroBatcher(held, max_batch=32)
    size = held.image_size
    calls = [start(lambda: batcher.encode_images(painted(1, 1, size), BATCH))]
    held.wait_for_arrivals(1)  # the model is busy with batch work
    for label in range(2, 7):  # each queued before the next is sent
        calls.append(start(lambda label=label: batcher.encode_images(painted(label, 32, size), BATCH)))
        wait_until(lambda label=label: batcher.queued(BATCH) == label - 1)
    calls.append(start(lambda: batcher.encode_texts(["a search"], INTERACTIVE)))
    calls.append(start(lambda: batcher.encode_images(painted(99, 1, size), INTERACTIVE)))
    wait_until(lambda: batcher.queued(INTERACTIVE) == 2)
    held.give_turns(100)
    for call in calls:
        call.join(timeout=60)
    # The two interactive calls share the pass after the one in progress; the batches follow in order.
    assert held.arrived == [[1], [99], ["a search"], *([label] * 32 for label in range(2, 7))]


def test_batch_work_gets_a_pass_after_a_bounded_number_of_interactive_passes(held):
    batcher = MicroBatcher(held, max_batch=1)  # one call a pass
    size = held.image_size
    calls = [start(lambda: batcher.encode_images(painted(1, 1, size), BATCH))]
    held.wait_for_arrivals(1)
    calls.append(start(lambda: batcher.encode_images(painted(2, 1, size), BATCH)))
    wait_until(lambda: batcher.queued(BATCH) == 1)
    searches = [f"search {n}" for n in range(INTERACTIVE_PASSES_PER_BATCH_PASS + 2)]
    for text in searches:  # a stream of searches, each queued behind the previous one
        calls.append(start(lambda text=text: batcher.encode_texts([text], INTERACTIVE)))
        wait_until(lambda text=text: batcher.queued(INTERACTIVE) == searches.index(text) + 1)
    held.give_turns(100)
    for call in calls:
        call.join(timeout=60)
    first, later = searches[:INTERACTIVE_PASSES_PER_BATCH_PASS], searches[INTERACTIVE_PASSES_PER_BATCH_PASS:]
    assert held.arrived == [[1], *([text] for text in first), [2], *([text] for text in later)]
