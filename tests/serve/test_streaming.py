"""The streamer hands out settled text only: stop strings are never shown, partial characters wait."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from clinrl.serve.queue import ModelQueue, QueueFull
from clinrl.serve.streaming import _TextStreamer


class CharTokenizer:
    """One token per character; id 0 is a special token that decodes to nothing."""

    def __init__(self, alphabet: str):
        self.alphabet = alphabet

    def encode(self, text: str) -> list[int]:
        return [self.alphabet.index(c) + 1 for c in text]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(self.alphabet[i - 1] for i in ids if i)


def run(text: str, stop: tuple[str, ...], extra: list[int] = ()) -> tuple[list[str], _TextStreamer, threading.Event]:
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz <>/\n\ufffd")
    pieces: list[str] = []
    event = threading.Event()
    streamer = _TextStreamer(tok, stop, pieces.append, event)
    streamer.put(torch.tensor([[9, 9, 9]]))  # the prompt, skipped
    for i in tok.encode(text) + list(extra):
        streamer.put(torch.tensor([i]))
    streamer.end()
    return pieces, streamer, event


def test_text_without_stop_streams_whole():
    pieces, streamer, event = run("hello world", ())
    assert "".join(pieces) == "hello world" == streamer.text and len(pieces) == 11 and not event.is_set()


def test_stop_string_is_held_back_and_cut():
    pieces, streamer, event = run("think </a> more", ("</a>",))
    assert "".join(pieces) == "think " == streamer.text
    assert streamer.hit_stop and event.is_set()  # generation is told to end
    assert all("<" not in p for p in pieces)


def test_a_partial_stop_that_does_not_complete_is_released_at_the_end():
    pieces, streamer, _ = run("x </", ("</a>",))
    assert "".join(pieces) == "x </" and not streamer.hit_stop


def test_queue_admits_workers_plus_waiting_only():
    queue = ModelQueue(max_concurrency=1, max_queue=1)
    gate = threading.Event()
    first, second = queue.submit(gate.wait, 5), queue.submit(lambda: 2)
    try:
        with pytest.raises(QueueFull):
            queue.submit(lambda: 3)
        assert queue.stats()["rejected"] == 1
    finally:
        gate.set()
    assert first.result(5) is True and second.result(5) == 2
    assert queue.submit(lambda: 4).result(5) == 4
    queue.shutdown()


def test_stop_event_ends_a_real_generation_at_once():
    from clinrl.llm.backends import SamplingParams, TransformersBackend
    from clinrl.llm.tiny import build_tiny_model
    from clinrl.serve.streaming import stream_generate
    from tests.helpers.models import SMALLEST_LM
    from tests.helpers.tokenizers import make_tiny_tokenizer

    torch.set_num_threads(1)
    tok = make_tiny_tokenizer()
    model = build_tiny_model(tok, SMALLEST_LM)
    backend = TransformersBackend(model, tok)
    stop = threading.Event()
    pieces: list[str] = []

    def emit(piece: str) -> None:  # the "client" goes away after the first piece
        pieces.append(piece)
        stop.set()

    far = time.monotonic() + 60
    result = stream_generate(backend, "hello", SamplingParams(max_new_tokens=500), emit, stop, far)
    assert result["completion_tokens"] <= 2 and result["finish_reason"] in ("cancelled", "stop")
    full = stream_generate(backend, "hello", SamplingParams(max_new_tokens=6), [].append, threading.Event(), far)
    assert full["text"] == backend.generate(["hello"], SamplingParams(max_new_tokens=6))[0][0]
    late = stream_generate(backend, "hello", SamplingParams(max_new_tokens=500), [].append, threading.Event(),
                           time.monotonic() - 1)  # fmt: skip
    assert late["finish_reason"] == "cancelled" and late["completion_tokens"] == 0
