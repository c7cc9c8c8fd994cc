"""Run an ASGI app on a real loopback socket for a test (uvicorn in a background thread):

with serve_app(app) as base_url:          # e.g. "http://127.0.0.1:51234"
    httpx.get(base_url + "/healthz")
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["free_port", "serve_app"]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (for subprocesses that need a fixed port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_app(app: Any, *, timeout: float = 20.0) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port; yields the base URL and stops the server afterwards."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
