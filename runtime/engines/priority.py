"""Which queue a shared engine (the micro-batcher) puts a call in.

``interactive`` (a search, an embedding request, a single add: a client waits on its one answer) goes
ahead of ``batch`` (a batch add, an import). An engine that runs each call as it comes ignores it."""

from __future__ import annotations

from typing import Literal

Priority = Literal["interactive", "batch"]
INTERACTIVE: Priority = "interactive"
BATCH: Priority = "batch"
