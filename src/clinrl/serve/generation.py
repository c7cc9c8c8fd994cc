"""OpenAI chat and text completions on the model queue: a whole answer, or server-sent events as the text
is generated (a client that hangs up, or the time limit, ends generation at the next token)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from typing import Any, AsyncIterator

from clinrl.errors import ClinrlError
from clinrl.llm.backends import Prompt, SamplingParams, generate_cancellable, render_prompt
from clinrl.serve.problems import ApiError, error_body
from clinrl.serve.queue import QueueFull
from clinrl.serve.runtime import Runtime
from clinrl.serve.schemas import ChatRequest, CompletionRequest
from clinrl.serve.streaming import count_tokens, stream_generate

__all__ = ["complete", "sampling", "stream"]

log = logging.getLogger("clinrl.serve")

_END = object()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def sampling(rt: Runtime, req: ChatRequest | CompletionRequest) -> SamplingParams:
    """The request's sampling parameters, or 422 when over the server's limits."""
    rt.need_backend()
    settings = rt.settings
    max_tokens = req.max_completion_tokens or req.max_tokens or settings.max_new_tokens
    if max_tokens > settings.max_new_tokens:
        raise ApiError(422, "max_tokens_too_large", f"max_tokens is over this server's limit of {settings.max_new_tokens}")
    if req.n > settings.max_n:
        raise ApiError(422, "n_too_large", f"n is over this server's limit of {settings.max_n}")
    if req.stream and req.n > 1:
        raise ApiError(422, "stream_n", "streaming supports n=1 only")
    rt.limits.check_stop(req.stop_strings())
    try:
        return SamplingParams(n=req.n, temperature=req.temperature, top_p=req.top_p, max_new_tokens=max_tokens,
                              stop=req.stop_strings(), seed=req.seed)  # fmt: skip
    except ClinrlError as err:
        raise ApiError(422, "invalid_request", str(err)) from None


def _generate_job(rt: Runtime, prompt: Prompt, params: SamplingParams, stop: threading.Event) -> tuple[list[str], list[int]]:
    backend = rt.backend
    texts = generate_cancellable(backend, [prompt], params, stop)[0]
    if rt.settings.log_text:
        tokenizer = getattr(backend, "tokenizer", None)
        log.info("prompt: %s\ncompletions: %s", render_prompt(tokenizer, prompt) if tokenizer else prompt, texts)
    return texts, [count_tokens(backend, t) for t in texts]


async def complete(rt: Runtime, kind: str, prompt: Prompt, params: SamplingParams, request: Any) -> Any:
    """The whole answer (``kind``: "chat" or "text")."""
    req_id = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    prompt_tokens = await rt.prepare(prompt)
    stop = threading.Event()  # set on time-out or hang-up: generation ends at the next token
    texts, counts = await rt.run(_generate_job, rt, prompt, params, stop, request=request, stop=stop)
    choices = []
    for i, (text, k) in enumerate(zip(texts, counts)):
        reason = "length" if k >= params.max_new_tokens else "stop"
        body = {"message": {"role": "assistant", "content": text}} if kind == "chat" else {"text": text}
        choices.append({"index": i, **body, "finish_reason": reason, "logprobs": None})
    return {"id": req_id, "object": "chat.completion" if kind == "chat" else "text_completion", "created": created,
            "model": rt.name, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sum(counts),
                      "total_tokens": prompt_tokens + sum(counts)}}  # fmt: skip


async def stream(rt: Runtime, kind: str, prompt: Prompt, params: SamplingParams) -> Any:
    """Server-sent events: chunks as text settles, a last chunk with ``finish_reason``, ``[DONE]``."""
    from fastapi.responses import StreamingResponse

    settings, backend, name = rt.settings, rt.backend, rt.name
    await rt.prepare(prompt)  # 413/400 as a plain answer, before the stream starts
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
        future = rt.queue.submit(job)
    except QueueFull:
        raise rt.busy() from None
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
