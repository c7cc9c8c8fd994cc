"""OpenAI chat and text completions on the model queue: a whole answer, or server-sent events as the text
is generated (a client that hangs up, or the time limit, ends generation at the next token)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from clinrl.errors import ClinrlError
from clinrl.llm.backends import GenerationCancelled, Prompt, SamplingParams, generate_cancellable, render_prompt
from clinrl.serve.logprobs import legacy_logprobs, score_tokens
from clinrl.serve.problems import ApiError, error_body
from clinrl.serve.queue import QueueFull
from clinrl.serve.runtime import Runtime
from clinrl.serve.schemas import ChatRequest, CompletionRequest
from clinrl.serve.streaming import count_tokens, stream_generate

__all__ = ["check_request", "complete", "sampling", "stream", "text_completions"]

log = logging.getLogger("clinrl.serve")

_END = object()


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def check_request(rt: Runtime, req: ChatRequest | CompletionRequest) -> None:
    """503 without a model, 404 for a model this server does not serve (a missing ``model`` is taken to
    mean this one), 400 naming an OpenAI parameter it does not implement."""
    rt.need_backend()
    if req.model is not None and req.model != rt.name:
        raise ApiError(404, "model_not_found", f"the requested model is not served here (this server serves "
                       f"'{rt.name}'; see GET /v1/models)", param="model")  # fmt: skip
    name = req.unsupported()
    if name is not None:
        raise ApiError(400, "unsupported_parameter", f"{name} is not supported by this server (leave it out "
                       "or at its default)", param=name)  # fmt: skip


def max_tokens(rt: Runtime, req: ChatRequest | CompletionRequest) -> int:
    """``max_completion_tokens`` or ``max_tokens`` (0 allowed on /v1/completions), else the server default;
    422 over the server's limit."""
    limit = rt.settings.max_new_tokens
    asked = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    value = limit if asked is None else asked
    if value > limit:
        raise ApiError(422, "max_tokens_too_large", f"max_tokens is over this server's limit of {limit}")
    return value


def sampling(rt: Runtime, req: ChatRequest | CompletionRequest, prompts: int = 1) -> SamplingParams:
    """The request's sampling parameters (after :func:`check_request`), or 422 when over the server's
    limits; ``prompts``: how many prompts share them (each gets ``n`` completions)."""
    check_request(rt, req)
    settings = rt.settings
    budget = max_tokens(rt, req)
    if req.n * prompts > settings.max_n:
        raise ApiError(422, "n_too_large", f"n × the number of prompts is over this server's limit of {settings.max_n}")
    if req.stream and req.n * prompts > 1:
        raise ApiError(422, "stream_n", "streaming supports one prompt and n=1 only")
    rt.limits.check_stop(req.stop_strings())
    try:
        return SamplingParams(n=req.n, temperature=req.temperature, top_p=req.top_p, max_new_tokens=max(budget, 1),
                              stop=req.stop_strings(), seed=req.seed)  # fmt: skip
    except ClinrlError as err:
        raise ApiError(422, "invalid_request", str(err)) from None


def _generate_job(
    rt: Runtime, prompt: Prompt, params: SamplingParams, stop: threading.Event
) -> tuple[list[str], list[int]]:
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
    return {
        "id": req_id,
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": created,
        "model": rt.name,
        "choices": choices,
        "usage": _usage(prompt_tokens, sum(counts)),
    }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


async def stream(rt: Runtime, kind: str, prompt: Prompt, params: SamplingParams, include_usage: bool = False) -> Any:
    """Server-sent events: chunks as text settles, a last chunk with ``finish_reason``, then (with
    ``include_usage``) a chunk with no choices and the ``usage``, then ``[DONE]``."""
    from fastapi.responses import StreamingResponse

    settings, backend, name = rt.settings, rt.backend, rt.name
    prompt_tokens = await rt.prepare(prompt)  # 413/400 as a plain answer, before the stream starts
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
            result["counted_tokens"] = count_tokens(backend, result["text"])  # as a whole answer counts them
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
        usage = {"usage": None} if include_usage else {}  # OpenAI: null on every chunk but the last
        return _sse({"id": req_id, "object": obj, "created": created, "model": name,
                     "choices": [{**choice, "finish_reason": reason}], **usage})  # fmt: skip

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
            if include_usage:
                yield _sse({"id": req_id, "object": obj, "created": created, "model": name, "choices": [],
                            "usage": _usage(prompt_tokens, result["counted_tokens"])})  # fmt: skip
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


# ------------------------------------------------------------------------------------------ /v1/completions
class _Item:
    """One prompt of a /v1/completions request: its text (what generation continues) and, for scoring,
    its token ids (as sent, or the text's tokens)."""

    def __init__(self, text: str, ids: list[int] | None, tokens: int):
        self.text, self.ids, self.tokens = text, ids, tokens


def _local(rt: Runtime, what: str) -> tuple[Any, Any]:
    model, tokenizer = getattr(rt.backend, "model", None), getattr(rt.backend, "tokenizer", None)
    if model is None or tokenizer is None:
        raise ApiError(400, "invalid_request", f"{what} needs a local transformers model; this backend has none")
    return model, tokenizer


def _check_ids(rt: Runtime, ids: list[int]) -> str:
    """Token-id prompt → its text; 400 when empty or an id is outside the model's vocabulary, 413 over the
    prompt cap (runs on the preparation thread)."""
    model, tokenizer = _local(rt, "a token-id prompt")
    if not ids:
        raise ApiError(400, "empty_prompt", "the prompt is empty: a model needs at least one token to continue")
    cap = rt.limits.max_prompt_tokens
    if len(ids) > cap:
        raise ApiError(413, "prompt_too_long", f"the prompt has {len(ids)} tokens, over this server's limit of "
                                               f"{cap} (--max-prompt-tokens)")  # fmt: skip
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    vocab = getattr(embeddings, "num_embeddings", None) or len(tokenizer)
    if max(ids) >= vocab:
        raise ApiError(400, "invalid_token_id", f"a token id is outside the model's vocabulary (0 … {vocab - 1})")
    return tokenizer.decode(ids)


def _text_ids(rt: Runtime, text: str) -> list[int]:
    return rt.backend.tokenizer(text, add_special_tokens=False)["input_ids"]


async def _items(rt: Runtime, req: CompletionRequest, scoring: bool) -> list[_Item]:
    items = []
    for prompt in req.prompts():
        if isinstance(prompt, str):
            tokens = await rt.prepare(prompt)  # 413/400 before any model work
            ids = await rt.off_loop(_text_ids, rt, prompt) if scoring else None
            items.append(_Item(prompt, ids, tokens))
        else:
            text = await rt.off_loop(_check_ids, rt, prompt)
            items.append(_Item(text, list(prompt), len(prompt)))
    return items


def _completions_job(rt: Runtime, items: list[_Item], params: SamplingParams, generate: bool, echo: bool,
                     top: int | None, stop: threading.Event) -> list[tuple[list[str], list[int], list[Any]]]:  # fmt: skip
    """Per prompt: ``n`` texts, their token counts and their logprobs (None unless ``top`` is set)."""
    backend = rt.backend
    out = []
    for item in items:
        if stop.is_set():
            raise GenerationCancelled("generation cancelled")
        texts = generate_cancellable(backend, [item.text], params, stop)[0] if generate else [""] * params.n
        counts = [count_tokens(backend, t) for t in texts]
        scored: list[Any] = [None] * len(texts)
        if top is not None:
            scored = [_score(rt, item, text, echo, top, stop) for text in texts]
        if rt.settings.log_text:
            log.info("prompt: %s\ncompletions: %s", item.text, texts)
        out.append((texts, counts, scored))
    return out


def _score(rt: Runtime, item: _Item, text: str, echo: bool, top: int, stop: threading.Event) -> dict[str, Any]:
    model, tokenizer = rt.backend.model, rt.backend.tokenizer
    assert item.ids is not None
    ids = item.ids + (_text_ids(rt, text) if text else [])
    chosen, tops = score_tokens(model, ids, top, stop)
    return legacy_logprobs(tokenizer, ids, chosen, tops, 0 if echo else len(item.ids))


async def text_completions(rt: Runtime, req: CompletionRequest, request: Any) -> Any:
    """``/v1/completions``: one prompt or a list (text or token ids), ``n`` choices each (index = prompt ×
    n + j), with ``echo`` and ``logprobs`` in OpenAI's legacy format; streamed for one prompt."""
    prompts = req.prompts()
    params = sampling(rt, req, prompts=len(prompts))
    budget = max_tokens(rt, req)
    if req.stream:
        for name, used in (("echo", req.echo), ("logprobs", req.logprobs is not None)):
            if used:
                raise ApiError(400, "unsupported_parameter", f"{name} is not supported with stream", param=name)
        if budget == 0:
            raise ApiError(422, "invalid_request", "max_tokens must be ≥ 1 when streaming")
        prompt = prompts[0]
        text = prompt if isinstance(prompt, str) else await rt.off_loop(_check_ids, rt, prompt)
        return await stream(rt, "text", text, params, include_usage=req.include_usage())
    if req.logprobs is not None:
        _local(rt, "logprobs")
    items = await _items(rt, req, scoring=req.logprobs is not None)
    stop = threading.Event()
    results = await rt.run(_completions_job, rt, items, params, budget > 0, req.echo, req.logprobs, stop,
                           request=request, stop=stop)  # fmt: skip
    choices = []
    for item, (texts, counts, scored) in zip(items, results):
        for text, k, logprobs in zip(texts, counts, scored):
            reason = "length" if k >= budget else "stop"
            choices.append({"index": len(choices), "text": item.text + text if req.echo else text,
                            "finish_reason": reason, "logprobs": logprobs})  # fmt: skip
    prompt_tokens = sum(item.tokens for item in items)
    completion_tokens = sum(sum(counts) for _, counts, _ in results)
    return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
            "model": rt.name, "choices": choices, "usage": _usage(prompt_tokens, completion_tokens)}  # fmt: skip
