"""The FastAPI application: OpenAI-compatible completions, DRG coding, PRM scoring, health.

Every model call goes through one :class:`~clinrl.serve.queue.ModelQueue` (one call at a time by default),
so the event loop stays free to answer health checks, reject a full queue (429) or time a request out (504).
A prompt is measured against the server's caps (:mod:`~clinrl.serve.limits`) on a separate preparation
thread before it may take a model worker; a request whose client hangs up, streamed or not, gives its
worker back (or its place in the queue) within a fraction of a second.
Errors are JSON ``{"error": {"message", "type", "code"}}``; the server's own log never shows request or
response text unless ``log_text`` is on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from starlette.requests import Request  # at module level: FastAPI resolves the endpoints' annotations here

from clinrl.errors import ClinrlError
from clinrl.llm.backends import Prompt, SamplingParams, generate_cancellable, render_prompt
from clinrl.serve.errors import ApiError, error_body
from clinrl.serve.guard import Guard
from clinrl.serve.limits import PromptLimits
from clinrl.serve.queue import ClientGone, ModelQueue, QueueFull, QueueTimeout
from clinrl.serve.schemas import ChatRequest, CompletionRequest, DRGRequest, PRMRequest
from clinrl.serve.settings import ServeSettings, check_token, read_token
from clinrl.serve.streaming import count_tokens, stream_generate
from clinrl.serve.tasks import DRGBudget, code_drg, score_note

__all__ = ["create_app"]

log = logging.getLogger("clinrl.serve")

_FROM_ENV: Any = object()
_END = object()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _validation_message(errors: list[dict[str, Any]]) -> str:
    """Where and what, never the offending input value: pydantic's ``msg`` does not quote the input, and each
    part of the location (a dict key may be any client text) is shown only when it is a short identifier."""
    parts = [f"{'.'.join(_loc_part(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg', 'invalid')}"
             for e in errors[:5]]  # fmt: skip
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def _loc_part(part: Any) -> str:
    text = str(part)
    return text if len(text) <= 40 and text.isprintable() else "<key>"


def _install_error_handlers(api: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @api.exception_handler(ApiError)
    async def _api_error(request: Any, err: ApiError) -> JSONResponse:
        return JSONResponse(error_body(err.status, err.code, err.message), err.status, headers=err.headers)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Any, err: RequestValidationError) -> JSONResponse:
        errors = list(err.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(error_body(400, "invalid_json", "the request body is not valid JSON"), 400)
        return JSONResponse(error_body(422, "invalid_request", _validation_message(errors)), 422)

    @api.exception_handler(HTTPException)
    async def _http(request: Any, err: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(err.status_code, "http_error", str(err.detail)), err.status_code)

    @api.exception_handler(ClinrlError)
    async def _user(request: Any, err: ClinrlError) -> JSONResponse:
        return JSONResponse(error_body(400, "invalid_request", str(err)), 400)

    @api.exception_handler(Exception)
    async def _bug(request: Any, err: Exception) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path, type(err).__name__)
        return JSONResponse(error_body(500, "internal_error", "internal error (see the server log)"), 500)


def create_app(
    settings: ServeSettings | None = None, *, backend: Any = None, scorer: Any = None, token: Any = _FROM_ENV
) -> Any:
    """The ASGI app. ``backend`` (a :class:`~clinrl.llm.backends.GenerationBackend`) and ``scorer`` (a
    :class:`~clinrl.prm.score.PRMScorer`) are loaded from ``settings.model`` / ``settings.prm`` unless given;
    ``token`` defaults to the environment variable ``settings.token_env`` (None: no auth)."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from clinrl import __version__

    settings = settings or ServeSettings()
    if backend is None and settings.model:
        from clinrl.llm.backends import TransformersBackend

        backend = TransformersBackend.from_path(settings.model, device=settings.device)
    if scorer is None and settings.prm:
        from clinrl.prm.score import load_scorer

        scorer = load_scorer(settings.prm)
    if token is _FROM_ENV:
        token = read_token(settings.token_env)
    elif token is not None:
        check_token(token)
    queue = ModelQueue(settings.max_concurrency, settings.max_queue)
    limits = PromptLimits(getattr(backend, "tokenizer", None), max_prompt_tokens=settings.max_prompt_tokens,
                          max_stop_strings=settings.max_stop_strings, max_stop_chars=settings.max_stop_chars)  # fmt: skip
    prep = ThreadPoolExecutor(max_workers=2, thread_name_prefix="clinrl-prep")  # tokenising, never the model
    name = settings.served_name

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        yield
        queue.shutdown()
        prep.shutdown(wait=False, cancel_futures=True)

    api = FastAPI(title="clinrl", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    api.state.settings, api.state.backend, api.state.scorer, api.state.queue = settings, backend, scorer, queue
    api.add_middleware(Guard, token=token, max_body_bytes=settings.max_body_bytes)
    _install_error_handlers(api)

    async def run(fn: Any, *args: Any, request: Any, stop: threading.Event | None = None) -> Any:
        """``fn(*args)`` on a model worker, given up (``stop`` set) on time-out or when the client hangs up."""
        try:
            return await queue.run(fn, *args, timeout=settings.timeout_s, stop=stop, gone=request.is_disconnected)
        except QueueFull:
            raise _busy() from None
        except QueueTimeout:
            raise ApiError(504, "timeout", f"the request took longer than {settings.timeout_s:g} s") from None
        except ClientGone:
            raise ApiError(499, "client_closed", "the client closed the connection") from None

    async def prepare(prompt: Prompt) -> int:
        """The prompt's token count, or 413/400 (see :class:`PromptLimits`), measured off the event loop."""
        limits.precheck(prompt)
        return await asyncio.get_running_loop().run_in_executor(prep, limits.count, prompt)

    def _busy() -> ApiError:
        stats = queue.stats()
        return ApiError(429, "queue_full", f"server busy ({stats['running']} running, {stats['waiting']} waiting); "
                        "retry later", headers={"Retry-After": "1"})  # fmt: skip

    def need_backend() -> Any:
        if backend is None:
            raise ApiError(503, "no_model", "no generation model loaded: start the server with --model PATH")
        return backend

    def sampling(req: ChatRequest | CompletionRequest) -> SamplingParams:
        need_backend()
        max_tokens = req.max_completion_tokens or req.max_tokens or settings.max_new_tokens
        if max_tokens > settings.max_new_tokens:
            raise ApiError(422, "max_tokens_too_large", f"max_tokens is over this server's limit of {settings.max_new_tokens}")
        if req.n > settings.max_n:
            raise ApiError(422, "n_too_large", f"n is over this server's limit of {settings.max_n}")
        if req.stream and req.n > 1:
            raise ApiError(422, "stream_n", "streaming supports n=1 only")
        limits.check_stop(req.stop_strings())
        try:
            return SamplingParams(n=req.n, temperature=req.temperature, top_p=req.top_p, max_new_tokens=max_tokens,
                                  stop=req.stop_strings(), seed=req.seed)  # fmt: skip
        except ClinrlError as err:
            raise ApiError(422, "invalid_request", str(err)) from None

    def generate_job(prompt: Prompt, params: SamplingParams, stop: threading.Event) -> tuple[list[str], list[int]]:
        texts = generate_cancellable(backend, [prompt], params, stop)[0]
        if settings.log_text:
            tokenizer = getattr(backend, "tokenizer", None)
            log.info("prompt: %s\ncompletions: %s", render_prompt(tokenizer, prompt) if tokenizer else prompt, texts)
        return texts, [count_tokens(backend, t) for t in texts]

    async def complete(kind: str, prompt: Prompt, params: SamplingParams, request: Any) -> Any:
        req_id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        prompt_tokens = await prepare(prompt)
        stop = threading.Event()  # set on time-out or hang-up: generation ends at the next token
        texts, counts = await run(generate_job, prompt, params, stop, request=request, stop=stop)
        choices = []
        for i, (text, k) in enumerate(zip(texts, counts)):
            reason = "length" if k >= params.max_new_tokens else "stop"
            body = {"message": {"role": "assistant", "content": text}} if kind == "chat" else {"text": text}
            choices.append({"index": i, **body, "finish_reason": reason, "logprobs": None})
        return {"id": req_id, "object": "chat.completion" if kind == "chat" else "text_completion", "created": created,
                "model": name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sum(counts),
                          "total_tokens": prompt_tokens + sum(counts)}}  # fmt: skip

    async def stream(kind: str, prompt: Prompt, params: SamplingParams) -> Any:
        await prepare(prompt)  # 413/400 as a plain answer, before the stream starts
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        deadline = time.monotonic() + settings.timeout_s

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, item)
            except RuntimeError:  # the loop is gone (server shutting down)
                stop.set()

        def job() -> Any:
            try:
                result = stream_generate(backend, prompt, params, put, stop, deadline)
                if settings.log_text:
                    log.info("prompt: %s\ncompletion: %s", prompt, result["text"])
                return result
            finally:
                put(_END)

        try:
            future = queue.submit(job)
        except QueueFull:
            raise _busy() from None
        req_id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created, obj = int(time.time()), "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(text: str | None, reason: str | None = None, role: bool = False) -> str:
            if kind == "chat":
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
                if text is not None:
                    delta["content"] = text
                choice: dict[str, Any] = {"index": 0, "delta": delta}
            else:
                choice = {"index": 0, "text": text or ""}
            return _sse({"id": req_id, "object": obj, "created": created, "model": name,
                         "choices": [{**choice, "finish_reason": reason}]})  # fmt: skip

        async def events() -> AsyncIterator[str]:
            try:
                if kind == "chat":
                    yield chunk(None, role=True)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise asyncio.TimeoutError
                    item = await asyncio.wait_for(pieces.get(), remaining)
                    if item is _END:
                        break
                    yield chunk(item)
                result = await asyncio.wrap_future(future)
                if result["finish_reason"] == "cancelled":
                    raise asyncio.TimeoutError
                yield chunk(None, result["finish_reason"])
                yield "data: [DONE]\n\n"
            except asyncio.TimeoutError:
                stop.set()
                future.cancel()
                yield _sse(error_body(504, "timeout", f"the request took longer than {settings.timeout_s:g} s"))
                yield "data: [DONE]\n\n"
            except ClinrlError as err:
                yield _sse(error_body(400, "invalid_request", str(err)))
                yield "data: [DONE]\n\n"
            except Exception as err:  # noqa: BLE001  (reported to the client, logged without text)
                log.error("stream failed: %s", type(err).__name__)
                yield _sse(error_body(500, "internal_error", "internal error (see the server log)"))
                yield "data: [DONE]\n\n"
            finally:
                stop.set()  # client gone or done: end generation at the next token
                future.cancel()  # and give up its place if it is still waiting

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip

    @api.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": name if backend is not None else None, "prm": scorer is not None,
                "queue": queue.stats()}  # fmt: skip

    @api.get("/v1/models")
    async def models() -> dict[str, Any]:
        data = [{"id": name, "object": "model", "owned_by": "clinrl"}] if backend is not None else []
        return {"object": "list", "data": data}

    @api.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest, request: Request) -> Any:
        params = sampling(req)
        messages = [{"role": m.role, "content": m.text()} for m in req.messages]
        if req.stream:
            return await stream("chat", messages, params)
        return await complete("chat", messages, params, request)

    @api.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request) -> Any:
        params = sampling(req)
        if req.stream:
            return await stream("text", req.prompt, params)
        return await complete("text", req.prompt, params, request)

    @api.post("/v1/drg/code")
    async def drg_code(req: DRGRequest, request: Request) -> dict[str, Any]:
        need_backend()
        if req.max_tokens > settings.max_new_tokens:
            raise ApiError(422, "max_tokens_too_large", f"max_tokens is over this server's limit of {settings.max_new_tokens}")
        cap = settings.drg_max_prompt_tokens
        if req.max_prompt_tokens is not None and req.max_prompt_tokens > cap:
            raise ApiError(422, "max_prompt_tokens_too_large",
                           f"max_prompt_tokens is over this server's limit of {cap}")  # fmt: skip
        stop = threading.Event()
        tokens = req.max_prompt_tokens or cap
        budget = DRGBudget(tokens, limits.max_chars(tokens + 16))  # +16: slack at the character cut
        result = await run(code_drg, backend, req, budget, settings.max_new_tokens, stop, request=request, stop=stop)
        if settings.log_text:
            log.info("drg completion: %s", result["completion"])
        return {"model": name, **result}

    @api.post("/v1/prm/score")
    async def prm_score(req: PRMRequest, request: Request) -> dict[str, Any]:
        if scorer is None:
            raise ApiError(503, "no_prm", "no PRM loaded: start the server with --prm PATH")
        return await run(score_note, scorer, req, request=request)

    return api
