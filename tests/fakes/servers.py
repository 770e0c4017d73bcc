"""Real servers on loopback for tests: the API itself, a file server, a connection counter."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The runtime's app under uvicorn in a background thread, on a free loopback port."""

    def __init__(self, app, port: int):
        import uvicorn

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    @classmethod
    @contextmanager
    def start(cls, settings, engine, **app_args):
        from runtime.api.app import create_app

        with cls.serving(create_app(settings, engine=engine, **app_args)) as live:
            yield live

    @classmethod
    @contextmanager
    def serving(cls, app):
        """``app`` (an app built by the test) served the same way."""
        live = cls(app, free_port())
        live.thread.start()
        deadline = time.monotonic() + 30
        while not live.server.started:
            if time.monotonic() > deadline or not live.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        try:
            yield live
        finally:
            live.client.close()
            live.server.should_exit = True
            live.thread.join(timeout=10)

    def post(self, path: str, body=None, **kwargs) -> httpx.Response:
        if body is not None and not isinstance(body, (bytes, str)):
            return self.client.post(path, json=body, **kwargs)
        return self.client.post(path, content=body, headers={"content-type": "application/json"}, **kwargs)


class FileServer:
    """A loopback HTTP server with canned routes: ``{path: (status, headers, body)}``; counts hits."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]], host: str = "127.0.0.1"):
        self.routes = routes
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                status, headers, body = outer.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.base = f"http://{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ConnectionCounter:
    """A listening socket that only counts the connections made to it (for SSRF tests)."""

    def __init__(self, host: str = "127.0.0.1", family: int = socket.AF_INET):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()


class SageMakerRuntime:
    """SageMaker Runtime's InvokeEndpoint on loopback, answered by a real container's ``/invocations``:
    point boto3 at it with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME=<url>``."""

    def __init__(self, container_url: str):
        self.endpoints: list[str] = []
        self.http = httpx.Client(base_url=container_url, timeout=120, limits=httpx.Limits(max_connections=64))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.endpoints.append(self.path.split("/")[2])  # /endpoints/{name}/invocations
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = outer.http.post("/invocations", content=body, headers={"content-type": "application/json"})
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.http.close()


class HeldAnswers:
    """A loopback server that takes each request and answers nothing until ``release``: then the
    connections close, or, given ``answer``, each held request and every later one gets a 200 with
    those bytes. An import fetching its manifest or its images from here runs until then.
    ``arrived`` is set once a request is held."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.answer = answer
        self.arrived = threading.Event()
        self.released = threading.Event()
        self._lock = threading.Lock()  # a request taken while ``release`` runs is answered, not held forever
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            with self._lock:
                if not self.released.is_set():
                    self.held.append(conn)
                    self.arrived.set()
                    continue
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        if self.answer is not None:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(self.answer)}\r\n\r\n"
            try:
                conn.recv(65536)
                conn.sendall(head.encode() + self.answer)
            except OSError:
                pass
        conn.close()

    def release(self) -> None:
        with self._lock:
            self.released.set()
        if self.answer is None:
            self.sock.close()
        for conn in self.held:
            self._answer(conn)


def held_images_manifest(held: HeldAnswers, count: int) -> FileServer:
    """A manifest of ``count`` image URLs, every one of them on ``held``."""
    lines = [json.dumps({"url": f"{held.base}/{n}.png", "id": f"held-{n}"}) for n in range(count)]
    return FileServer({"/held.jsonl": (200, {"Content-Type": "application/jsonl"}, "\n".join(lines).encode())})
