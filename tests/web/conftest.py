"""A real uvicorn server serving ``plait.web.create_app`` on a free loopback port, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

TOKEN = "test-token-" + "x" * 20


@dataclass
class WebServer:
    url: str
    token: str

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client of the server with the token (``token=""``: without one)."""
        given = self.token if token is None else token
        headers = {"Authorization": f"Bearer {given}"} if given else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def web_server(plait_home) -> Iterator[WebServer]:
    import uvicorn

    from plait.web import create_app

    app = create_app(token=TOKEN)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the uvicorn server did not start")
        time.sleep(0.01)
    yield WebServer(url=f"http://127.0.0.1:{port}", token=TOKEN)
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()
