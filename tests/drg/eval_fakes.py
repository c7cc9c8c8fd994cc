"""Test doubles for evaluation: a logits processor that scripts the start of every completion, and a
generate wrapper that counts (and can interrupt) generate calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clinrl.errors import ClinrlError

THINK_THEN_OPEN = "<think>\nok\n</think>\n<answer>"


class Script:
    """Adds a large bonus to the scripted next token while the completion is within ``text`` (then EOS
    when ``eos``). A bonus, not a mask: a constraint applied after it still has the last word."""

    def __init__(self, tokenizer: Any, text: str, eos: bool = True):
        self.ids = tokenizer.encode(text, add_special_tokens=False) + ([tokenizer.eos_token_id] if eos else [])
        self.start: int | None = None

    def __call__(self, input_ids, scores):
        if self.start is None:
            self.start = input_ids.shape[1]
        t = input_ids.shape[1] - self.start
        if t < len(self.ids):
            scores = scores.clone()
            scores[:, self.ids[t]] += 1e4
        return scores


def scripted(text: str, eos: bool = True):
    """A ``TransformersBackend.logits_processors`` factory for :class:`Script`."""
    return lambda tokenizer: [Script(tokenizer, text, eos)]


class Interrupted(ClinrlError):
    """Raised by :class:`CountingBackend` to simulate a run killed mid-way."""


@dataclass
class Counter:
    calls: int = 0
    prompts: int = 0


def count_calls(backend: Any, fail_on: int | None = None) -> Counter:
    """Wrap ``backend.generate`` (on the instance) to count calls and prompts; call number ``fail_on``
    raises :class:`Interrupted` instead of generating."""
    inner = backend.generate
    counter = Counter()

    def generate(prompts, params):
        counter.calls += 1
        if fail_on is not None and counter.calls == fail_on:
            raise Interrupted("simulated kill")
        counter.prompts += len(prompts)
        return inner(prompts, params)

    backend.generate = generate
    return counter
