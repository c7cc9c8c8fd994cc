"""Token streaming for a local ``transformers`` model: text is handed out as it is generated, stop strings
are held back until they can be ruled out, and a stop event (client gone, time limit) ends generation at
the next token. Backends without a local model produce the whole text, then hand it out at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from clinrl.errors import ClinrlError
from clinrl.llm.backends import Prompt, SamplingParams, cut_at_stop, render_prompt, stop_when

__all__ = ["StreamResult", "count_tokens", "stream_generate"]


def count_tokens(backend: Any, text: str) -> int:
    """Tokens of ``text`` under the backend's tokenizer (0 when it has none)."""
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None or not text:
        return 0
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


class StreamResult(dict):
    """``text``, ``finish_reason`` ("stop", "length" or "cancelled"), ``prompt_tokens``, ``completion_tokens``."""


class _TextStreamer:
    """A ``transformers`` streamer: decodes all generated ids so far and emits the new, settled text."""

    def __init__(self, tokenizer: Any, stop: tuple[str, ...], emit: Callable[[str], None], stop_event: threading.Event):
        self.tokenizer, self.stop, self.emit, self.stop_event = tokenizer, stop, emit, stop_event
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.ids: list[int] = []
        self.prompt_seen = False
        self.sent = 0
        self.text = ""
        self.hit_stop = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        if not self.hit_stop:
            self.ids.extend(value.reshape(-1).tolist())
            self._flush(final=False)

    def end(self) -> None:
        self._flush(final=True)

    def _flush(self, final: bool) -> None:
        if self.hit_stop:
            return
        full = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        text = cut_at_stop(full, self.stop)
        if len(text) < len(full):
            self.hit_stop = True
            self.stop_event.set()
        settled = len(text) if final or self.hit_stop else len(text) - self.hold
        while settled > self.sent and text[settled - 1] == "\ufffd" and not (final or self.hit_stop):
            settled -= 1  # an incomplete multi-byte character: wait for the next token
        self.text = text
        if settled > self.sent:
            self.emit(text[self.sent : settled])
            self.sent = settled


def _generation_kwargs(tokenizer: Any, params: SamplingParams) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if params.temperature > 0:
        kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs  # stop strings: the streamer finds them and sets the stop event (no transformers stop_strings)


def stream_generate(
    backend: Any, prompt: Prompt, params: SamplingParams, emit: Callable[[str], None],
    stop_event: threading.Event, deadline: float,
) -> StreamResult:  # fmt: skip
    """Generate one completion of ``prompt``, calling ``emit(piece)`` as text settles (runs on a worker)."""
    if stop_event.is_set() or time.monotonic() > deadline:
        return StreamResult(text="", finish_reason="cancelled", prompt_tokens=0, completion_tokens=0)
    if getattr(backend, "model", None) is None or getattr(backend, "tokenizer", None) is None:
        text = backend.generate([prompt], params.with_(n=1))[0][0]
        emit(text)
        return StreamResult(
            text=text, finish_reason="stop", prompt_tokens=0, completion_tokens=count_tokens(backend, text)
        )
    import torch
    from transformers import StoppingCriteriaList

    model, tokenizer = backend.model, backend.tokenizer
    cancelled = stop_when(lambda: stop_event.is_set() or time.monotonic() > deadline)

    rendered = render_prompt(tokenizer, prompt)
    device = next(model.parameters()).device
    batch = tokenizer([rendered], return_tensors="pt", add_special_tokens=False).to(device)
    if batch["input_ids"].shape[1] == 0:
        raise ClinrlError("the prompt is empty (no tokens): a model needs at least one token to continue")
    if params.seed is not None:
        torch.manual_seed(params.seed)
    streamer = _TextStreamer(tokenizer, params.stop, emit, stop_event)
    with torch.no_grad():
        model.generate(**batch, **_generation_kwargs(tokenizer, params), streamer=streamer,
                       stopping_criteria=StoppingCriteriaList([cancelled]))  # fmt: skip
    n_new = len(streamer.ids)
    if streamer.hit_stop:
        reason = "stop"
    elif time.monotonic() > deadline or stop_event.is_set():
        reason = "cancelled"
    else:
        reason = "length" if n_new >= params.max_new_tokens else "stop"
    return StreamResult(text=streamer.text, finish_reason=reason, prompt_tokens=int(batch["input_ids"].shape[1]),
                        completion_tokens=n_new)  # fmt: skip
