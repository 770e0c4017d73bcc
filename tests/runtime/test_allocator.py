"""Large buffers freed by the server's threads are reused, not faulted in afresh each request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from runtime.allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parents[2]

# What one 12 MP base64 request allocates in the server's threads: its body, the base64 text, the
# decoded bytes, the reduced image. Run in a fresh interpreter, so the C library starts as a server's does.
REQUESTS_IN_THREADS = """
import resource, sys, threading
from concurrent.futures import ThreadPoolExecutor
if sys.argv[1] == "kept":
    from runtime.allocator import keep_freed_memory
    assert keep_freed_memory()

def request(together=None):
    if together is not None:
        together.wait()  # both threads at once, so that each grows its own heap
    buffers = [bytes(7 << 20), bytes(5 << 20), bytes(2 << 20), bytes(600 << 10)]
    del buffers

pool = ThreadPoolExecutor(2)
for _ in range(3):  # the first requests grow each thread's heap to the working set
    together = threading.Barrier(2)
    list(pool.map(request, [together, together]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    list(pool.map(request, [None, None]))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def page_faults_per_round(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", REQUESTS_IN_THREADS, mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(done.stdout)


def test_the_c_library_takes_the_settings():
    assert keep_freed_memory()


def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    default, kept = page_faults_per_round("default"), page_faults_per_round("kept")
    # By default glibc hands the freed buffers back and faults them in again: thousands of pages a
    # round (about 7,400, 29 MB, measured here); kept, the next round reuses them.
    assert default > 1000, default
    assert kept < default / 50, (kept, default)
