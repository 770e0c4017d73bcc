"""Slow and idle clients against the server process: each connection is cut at its deadline, and
other clients are served meanwhile (a trickling body holds no in-flight slot)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.fakes.images import b64, image_bytes
from tests.hardening.conftest import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, KEEP_ALIVE_TIMEOUT_S, MAX_IN_FLIGHT

pytestmark = pytest.mark.slow
PNG = image_bytes(31)


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def seconds_until_closed(sock: socket.socket, trickle: bytes = b"", every: float = 0.2) -> float:
    """Sends ``trickle`` a byte at a time (every ``every`` s) until the server closes the connection."""
    start = time.monotonic()
    sock.settimeout(every)
    for byte in trickle or b"\x00" * 1000:
        if trickle:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return time.monotonic() - start
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    raise AssertionError("the connection was never closed")


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(attacked_server):
    server, _ = attacked_server
    with connect(server) as sock:
        assert HEADER_TIMEOUT_S * 0.8 <= seconds_until_closed(sock) < HEADER_TIMEOUT_S + 2


def test_headers_trickled_a_byte_at_a_time_are_cut_at_the_deadline(attacked_server):
    server, _ = attacked_server
    head = b"POST /image-similarity HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"s" * 500 + b"\r\n\r\n"
    with connect(server) as sock:
        assert seconds_until_closed(sock, head) < HEADER_TIMEOUT_S + 2


def test_an_idle_keep_alive_connection_is_closed(attacked_server):
    server, _ = attacked_server
    with connect(server) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200 OK" in sock.recv(65536)
        assert seconds_until_closed(sock) < KEEP_ALIVE_TIMEOUT_S + 2


def test_a_second_request_trickled_on_a_keep_alive_connection_is_cut(attacked_server):
    server, _ = attacked_server
    with connect(server) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200 OK" in sock.recv(65536)
        assert seconds_until_closed(sock, b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"s" * 500) < 4


def test_trickling_bodies_hold_no_in_flight_slot_and_end_in_408(attacked_server):
    """Twice as many trickling bodies as in-flight slots; an ordinary request is still answered 200."""
    server, client = attacked_server
    answers: list[bytes] = []

    def trickle_body() -> None:
        with connect(server) as sock:
            sock.sendall(
                b"POST /image-similarity HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n{"
            )
            sock.settimeout(0.2)
            data = b""
            for _ in range(int((BODY_TIMEOUT_S + 3) / 0.2)):
                try:
                    sock.sendall(b" ")
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                data += chunk
                if not chunk or b"\r\n\r\n" in data:
                    break
            answers.append(data)

    tricklers = [threading.Thread(target=trickle_body) for _ in range(2 * MAX_IN_FLIGHT)]
    for thread in tricklers:
        thread.start()
    time.sleep(0.5)
    served = client.post("/image-similarity", json={"img": b64(PNG)})
    for thread in tricklers:
        thread.join(timeout=BODY_TIMEOUT_S + 10)
    assert served.status_code == 200, served.text  # not 503: the tricklers hold no slot
    assert len(answers) == 2 * MAX_IN_FLIGHT
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), answers[:2]
    assert all(b"request_timeout" in answer or b"\r\n\r\n" in answer for answer in answers)


def test_a_refused_oversized_body_ends_the_connection(attacked_server):
    """The unread rest of a refused body cannot be trickled on forever: the 413 closes the connection."""
    server, _ = attacked_server
    with connect(server) as sock:
        sock.sendall(b"POST /image-similarity HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 40000000\r\n\r\n{")
        answer, start = b"", time.monotonic()
        while time.monotonic() - start < 3:
            chunk = sock.recv(65536)
            if not chunk:
                break  # closed by the server
            answer += chunk
        else:
            raise AssertionError("the connection stayed open after the 413")
        assert answer.startswith(b"HTTP/1.1 413") and b"payload_too_large" in answer
