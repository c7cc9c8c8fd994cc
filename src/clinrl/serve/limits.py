"""Caps on how much work one request may give a model worker, checked before the request reaches one.

A worker that is given a huge prompt cannot be freed early: the forward pass over the prompt (prefill) is
one call that no stop flag interrupts, and its cost grows faster than the prompt's length. So a prompt is
measured first, off the event loop and off the model workers, and refused with 413 when it is over the
server's cap. Measuring is itself bounded: a prompt with more characters than ``cap`` tokens could ever
hold (``cap`` × the longest token in the vocabulary) is refused without being tokenised at all.
"""

from __future__ import annotations

from typing import Any

from clinrl.llm.backends import Prompt, render_prompt
from clinrl.serve.problems import ApiError

__all__ = ["PromptLimits", "longest_token_chars", "prompt_chars"]


def longest_token_chars(tokenizer: Any) -> int | None:
    """The most characters one token can stand for (None when the tokenizer cannot say).

    Vocabulary entries are written one character per byte (byte-level BPE) or per character (SentencePiece),
    so the longest entry bounds how much text one token covers; +1 leaves room for normalisers that merge
    two characters into one."""
    try:
        vocab = tokenizer.get_vocab()
    except (AttributeError, NotImplementedError, TypeError):
        return None
    return max((len(t) for t in vocab), default=0) + 1


def prompt_chars(prompt: Prompt) -> int:
    """Characters of the prompt's own text (a chat template only adds to it, so this never overestimates)."""
    if isinstance(prompt, str):
        return len(prompt)
    return sum(len(m.get("content") or "") for m in prompt)


class PromptLimits:
    """The caps of one server (see :class:`~clinrl.serve.settings.ServeSettings`) and the checks against them."""

    def __init__(self, tokenizer: Any, *, max_prompt_tokens: int, max_stop_strings: int, max_stop_chars: int):
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        self.max_stop_strings, self.max_stop_chars = max_stop_strings, max_stop_chars
        self.chars_per_token = longest_token_chars(tokenizer) if tokenizer is not None else None

    def check_stop(self, stop: tuple[str, ...]) -> None:
        """422 when there are more stop strings, or longer ones, than this server matches."""
        if len(stop) > self.max_stop_strings:
            raise ApiError(422, "too_many_stop_strings",
                           f"{len(stop)} stop strings; this server takes at most {self.max_stop_strings}")  # fmt: skip
        longest = max((len(s) for s in stop), default=0)
        if longest > self.max_stop_chars:
            raise ApiError(422, "stop_too_long", f"a stop string of {longest} characters; this server takes "
                                                 f"at most {self.max_stop_chars} per string")  # fmt: skip

    def max_chars(self, max_tokens: int) -> int | None:
        """More characters than this cannot fit in ``max_tokens`` tokens (None: no bound known)."""
        return None if self.chars_per_token is None else max_tokens * self.chars_per_token

    def precheck(self, prompt: Prompt) -> None:
        """413 without tokenising when the prompt has more characters than the cap's tokens can hold (cheap:
        runs on the event loop)."""
        limit, n = self.max_chars(self.max_prompt_tokens), prompt_chars(prompt)
        if limit is not None and n > limit:
            raise ApiError(413, "prompt_too_long", f"the prompt has {n} characters, more than "
                           f"{self.max_prompt_tokens} tokens can hold (this server's --max-prompt-tokens)")  # fmt: skip

    def count(self, prompt: Prompt) -> int:
        """Tokens of the rendered prompt; 413 over the cap, 400 when empty (0 when there is no tokenizer).

        Runs on a preparation thread: after :meth:`precheck`, the text is bounded, so this is too."""
        if self.tokenizer is None:
            return 0
        rendered = render_prompt(self.tokenizer, prompt)
        n = len(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        if n == 0:
            raise ApiError(400, "empty_prompt", "the prompt is empty: a model needs at least one token to continue")
        if n > self.max_prompt_tokens:
            raise ApiError(413, "prompt_too_long", f"the prompt has {n} tokens, over this server's limit of "
                                                   f"{self.max_prompt_tokens} (--max-prompt-tokens)")  # fmt: skip
        return n
