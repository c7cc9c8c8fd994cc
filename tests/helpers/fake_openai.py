"""A scripted OpenAI-compatible endpoint on loopback (stdlib http.server in a thread), for client-side tests.

    with FakeOpenAI(lambda body: "answer text") as server:
        backend = get_backend("openai", endpoint=server.url, model="fake")

``answer(body)`` gets the request JSON and returns the assistant text (or raises to send HTTP 500).
``server.requests`` counts the chat requests answered, ``server.bodies`` keeps their JSON bodies.
``GET /v1/models`` lists one model ``owned_by`` the given owner (vLLM says ``"vllm"``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    def __init__(self, answer: Callable[[dict[str, Any]], str], owned_by: str = "fake"):
        self.answer = answer
        self.owned_by = owned_by
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model",
                                                                 "owned_by": owner.owned_by}]})  # fmt: skip
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with owner.lock:
                    owner.requests += 1
                    owner.bodies.append(body)
                try:
                    text = owner.answer(body)
                    status, payload = 200, {
                        "id": "x", "object": "chat.completion", "model": body.get("model"),
                        "choices": [{"index": i, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"} for i in range(body.get("n", 1))],
                    }  # fmt: skip
                except Exception as err:  # scripted server error
                    status, payload = 500, {"error": {"message": type(err).__name__}}
                self._send(status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
