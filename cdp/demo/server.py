"""Run ``cdp serve`` as a child process on a free loopback port (the demo, tests and benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from cdp.config import Settings
from cdp.errors import CdpError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalServer:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Graceful stop: requests in flight finish first."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_attributed(self, *, timeout_s: float = 600, progress: Callable[[int], None] | None = None) -> None:
        """Wait until the server has attributed every stored event to a profile (``/health``)."""
        deadline = time.monotonic() + timeout_s
        while (backlog := httpx.get(f"{self.url}/health", timeout=10).json()["attribution_backlog"]) > 0:
            if progress is not None:
                progress(backlog)
            if time.monotonic() > deadline:
                raise CdpError(f"{backlog:,} events still not attributed to profiles after {timeout_s:.0f} s")
            time.sleep(0.1)

    def kill(self) -> None:
        """kill -9 of the server and all its workers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def start_server(
    settings: Settings, *, workers: int, log: Path, write_keys: str = "", admin_token: str = "",
    env: dict[str, str] | None = None,
) -> LocalServer:
    """Start ``cdp serve`` on ``settings``' store and wait until it answers ``/health``; ``env`` adds settings."""
    env = {**os.environ, **(env or {}), "CDP_HOME": str(settings.home), "CDP_WRITE_KEYS": write_keys,
           "CDP_ADMIN_TOKEN": admin_token}
    env.pop("CDP_DATABASE_URL", None)
    if settings.database_url:
        env["CDP_DATABASE_URL"] = settings.database_url
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a kill reaches the workers too
    )
    server = LocalServer(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CdpError(f"cdp serve exited early; see {log}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise CdpError(f"cdp serve did not become ready in 90 s; see {log}")
