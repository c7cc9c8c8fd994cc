"""The endpoints: health, models, OpenAI chat and text completions, DRG coding, PRM scoring."""

from __future__ import annotations

import logging
import threading
from typing import Any

from starlette.requests import Request  # at module level: FastAPI resolves the endpoints' annotations here

from clinrl.serve.generation import complete, sampling, stream, text_completions
from clinrl.serve.problems import ApiError
from clinrl.serve.runtime import Runtime
from clinrl.serve.schemas import ChatRequest, CompletionRequest, DRGRequest, PRMRequest
from clinrl.serve.tasks import DRGBudget, code_drg, score_note

__all__ = ["build_router"]

log = logging.getLogger("clinrl.serve")


def build_router(rt: Runtime) -> Any:
    """An ``APIRouter`` with every endpoint, bound to ``rt``."""
    from fastapi import APIRouter

    router = APIRouter()
    settings = rt.settings

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": rt.name if rt.backend is not None else None, "prm": rt.scorer is not None,
                "queue": rt.queue.stats()}  # fmt: skip

    def model_card() -> dict[str, Any]:
        return {"id": rt.name, "object": "model", "created": rt.started, "owned_by": "clinrl"}

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()] if rt.backend is not None else []}

    @router.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        if rt.backend is None or model_id != rt.name:
            raise ApiError(404, "model_not_found", "no model of that id is served here (see GET /v1/models)",
                           param="model")  # fmt: skip
        return model_card()

    @router.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request) -> Any:
        params = sampling(rt, req)
        messages = [{"role": m.template_role(), "content": m.text()} for m in req.messages]
        if req.stream:
            return await stream(rt, "chat", messages, params, include_usage=req.include_usage())
        return await complete(rt, "chat", messages, params, request)

    @router.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request) -> Any:
        return await text_completions(rt, req, request)

    @router.post("/v1/drg/code")
    async def drg_code(req: DRGRequest, request: Request) -> dict[str, Any]:
        backend = rt.need_backend()
        if req.max_tokens > settings.max_new_tokens:
            raise ApiError(
                422, "max_tokens_too_large", f"max_tokens is over this server's limit of {settings.max_new_tokens}"
            )
        cap = settings.drg_max_prompt_tokens
        if req.max_prompt_tokens is not None and req.max_prompt_tokens > cap:
            raise ApiError(422, "max_prompt_tokens_too_large",
                           f"max_prompt_tokens is over this server's limit of {cap}")  # fmt: skip
        stop = threading.Event()
        tokens = req.max_prompt_tokens or cap
        budget = DRGBudget(tokens, rt.limits.max_chars(tokens + 16))  # +16: slack at the character cut
        result = await rt.run(code_drg, backend, req, budget, settings.max_new_tokens, stop, request=request, stop=stop)
        if settings.log_text:
            log.info("drg completion: %s", result["completion"])
        return {"model": rt.name, **result}

    @router.post("/v1/prm/score")
    async def prm_score(req: PRMRequest, request: Request) -> dict[str, Any]:
        if rt.scorer is None:
            raise ApiError(503, "no_prm", "no PRM loaded: start the server with --prm PATH")
        return await rt.run(score_note, rt.scorer, req, request=request)

    return router
