"""The FastAPI application: OpenAI-compatible completions, DRG coding, PRM scoring, health.

Every model call goes through one :class:`~clinrl.serve.queue.ModelQueue` (one call at a time by default),
so the event loop stays free to answer health checks, reject a full queue (429) or time a request out (504).
A prompt is measured against the server's caps (:mod:`~clinrl.serve.limits`) on a separate preparation
thread before it may take a model worker; a request whose client hangs up, streamed or not, gives its
worker back (or its place in the queue) within a fraction of a second.
Errors are JSON ``{"error": {"message", "type", "code"}}`` (:mod:`~clinrl.serve.problems`); the server's own
log never shows request or response text unless ``log_text`` is on. Endpoints: :mod:`~clinrl.serve.routes`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from clinrl import __version__
from clinrl.llm.backends import TransformersBackend
from clinrl.prm.score import load_scorer
from clinrl.serve.guard import Guard
from clinrl.serve.problems import install_error_handlers
from clinrl.serve.routes import build_router
from clinrl.serve.runtime import Runtime
from clinrl.serve.settings import ServeSettings, check_token, read_token

__all__ = ["create_app"]

_FROM_ENV: Any = object()


def create_app(
    settings: ServeSettings | None = None, *, backend: Any = None, scorer: Any = None, token: Any = _FROM_ENV
) -> Any:
    """The ASGI app. ``backend`` (a :class:`~clinrl.llm.backends.GenerationBackend`) and ``scorer`` (a
    :class:`~clinrl.prm.score.PRMScorer`) are loaded from ``settings.model`` / ``settings.prm`` unless given;
    ``token`` defaults to the environment variable ``settings.token_env`` (None: no auth)."""
    from fastapi import FastAPI

    settings = settings or ServeSettings()
    if backend is None and settings.model:
        backend = TransformersBackend.from_path(settings.model, device=settings.device)
    if scorer is None and settings.prm:
        scorer = load_scorer(settings.prm)
    if token is _FROM_ENV:
        token = read_token(settings.token_env)
    elif token is not None:
        check_token(token)
    rt = Runtime(settings, backend, scorer)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        rt.close()

    api = FastAPI(title="clinrl", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    api.state.settings, api.state.backend, api.state.scorer, api.state.queue = settings, backend, scorer, rt.queue
    api.add_middleware(Guard, token=token, max_body_bytes=settings.max_body_bytes)
    install_error_handlers(api)
    api.include_router(build_router(rt))
    return api
