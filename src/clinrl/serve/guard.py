"""The outer ASGI layer: bearer-token check, request-size limit and a one-line request log (no bodies, and
the path without its query string, where a careless client may put its token).

It runs before FastAPI sees a request: an unauthenticated request is answered 401 without its body being
read; a body over the limit (by ``Content-Length`` or as it streams in) is answered 413.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from clinrl.serve.problems import error_bytes

__all__ = ["Guard", "OPEN_PATHS"]

log = logging.getLogger("clinrl.serve")

OPEN_PATHS = frozenset({"/healthz"})  # answered without a token

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _reply(send: Send, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = error_bytes(status, code, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Wrap ``app`` with auth (``token`` None: no auth), the ``max_body_bytes`` limit and the request log."""

    def __init__(self, app: Any, *, token: str | None, max_body_bytes: int):
        self.app, self.token, self.max_body_bytes = app, token, max_body_bytes

    def _authorized(self, scope: Scope) -> bool:
        if self.token is None or scope.get("path") in OPEN_PATHS:
            return True
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, logged = time.perf_counter(), [0], [False]

        def log_once() -> None:
            if not logged[0]:
                logged[0] = True
                log.info("%s %s -> %s in %.0f ms", scope.get("method"), scope.get("path"), status[0],
                         1000 * (time.perf_counter() - started))  # fmt: skip

        async def logged_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                log_once()  # before the last byte goes out, so the line exists once the client has its answer
            await send(message)

        try:
            await self._handle(scope, receive, logged_send)
        finally:
            log_once()

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope):
            await _reply(send, 401, "unauthorized", "missing or wrong bearer token",
                         [(b"www-authenticate", b"Bearer")])  # fmt: skip
            return
        limit = self.max_body_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _reply(send, 400, "bad_content_length", "invalid Content-Length header")
                return
            if too_big:
                await _reply(send, 413, "body_too_large", f"request body over the limit of {limit} bytes")
                return
        # Read the whole body first (bounded by the limit), then replay it to the app.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _reply(send, 413, "body_too_large", f"request body over the limit of {limit} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = [False]

        async def replay() -> dict[str, Any]:
            if not replayed[0]:
                replayed[0] = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
