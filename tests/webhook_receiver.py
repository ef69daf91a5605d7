"""A real HTTP receiver on loopback for webhook tests: records each request, answers as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived


@dataclass
class Receiver:
    port: int
    requests: list[Received] = field(default_factory=list)
    status: int = 204
    delay: float = 0.0
    location: str | None = None  # answered with a 3xx

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, count: int, timeout: float, delivery_id: str | None = None) -> list[Received]:
        """The requests received (about ``delivery_id`` only, if given) once there are ``count``, or
        when ``timeout`` has passed."""
        deadline = time.monotonic() + timeout
        while len(self.about(delivery_id)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.about(delivery_id)

    def about(self, delivery_id: str | None) -> list[Received]:
        return [
            r
            for r in list(self.requests)
            if delivery_id is None or f'"delivery_id":"{delivery_id}"' in r.body.decode()
        ]


@contextmanager
def receiver(status: int = 204) -> Iterator[Receiver]:
    state = Receiver(port=0, status=status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            state.requests.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
            )
            time.sleep(state.delay)
            self.send_response(state.status)
            if state.location:
                self.send_header("location", state.location)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
