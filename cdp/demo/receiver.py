"""A webhook receiver on loopback that keeps what it is sent, with the time of receipt (the demo and
the audiences benchmark)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Received:
    at: float  # time.time() when the body was read
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint would

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(Received(time.time(), dict(self.headers), orjson.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True, name="receiver").start()
        return self

    def wait_for(self, count: int, *, timeout_s: float) -> bool:
        """Whether ``count`` messages arrived within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self.received) >= count

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
