"""Request bodies. Wrong types are 422. Fields the OpenAI API defines but this server does not implement
are declared here and refused with 400 naming the field (:meth:`_Sampling.unsupported`) unless they hold
their no-op value (``frequency_penalty: 0``, ``tools: []``, ``response_format: {"type": "text"}``…);
fields OpenAI does not define are ignored (clients and SDKs add their own)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clinrl.llm.backends import SEED_RANGE

__all__ = [
    "MAX_LOGPROBS",
    "ChatMessage",
    "ChatRequest",
    "CompletionRequest",
    "DRGRequest",
    "PRMRequest",
    "StreamOptions",
]

MAX_LOGPROBS = 20  # top alternatives per token on /v1/completions (OpenAI: 5; vLLM's default cap: 20)


def _check_unicode(value: Any) -> None:
    """A lone surrogate (``"\\ud800"`` in the JSON) is valid JSON but not text: tokenizers raise TypeError on
    it (a 500). Walks nested lists/dicts without recursion (a deeply nested body must not overflow)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("invalid Unicode text (a lone surrogate)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


SEED_MIN, SEED_MAX = SEED_RANGE  # what torch.manual_seed takes


class _Body(BaseModel):
    """``allow_inf_nan=False``: JSON has no NaN or infinity, but Python's parser reads ``NaN`` and ``1e999``."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        _check_unicode(value)
        return value


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[dict[str, Any]], None] = None

    def template_role(self) -> str:
        """The role given to the chat template: ``developer`` (OpenAI's newer name for it) is ``system``."""
        return "system" if self.role == "developer" else self.role

    def text(self) -> str:
        """The message text (list content: its text parts joined)."""
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if p.get("type", "text") == "text"
                           and isinstance(p.get("text"), str))  # fmt: skip
        return self.content or ""


def _noop(value: Any) -> bool:
    """None, 0, False, "" or an empty list/dict: what a client sends for a feature it does not use."""
    return not value


def _text_format(value: Any) -> bool:
    return _noop(value) or (isinstance(value, dict) and value.get("type") == "text")


def _none_choice(value: Any) -> bool:
    return _noop(value) or value == "none"


def _text_modalities(value: Any) -> bool:
    return _noop(value) or value == ["text"]


# OpenAI parameters this server does not implement → the test that says a value changes nothing
_UNSUPPORTED_COMMON = {
    "frequency_penalty": _noop, "presence_penalty": _noop, "logit_bias": _noop,
}  # fmt: skip
_UNSUPPORTED_CHAT = {
    **_UNSUPPORTED_COMMON, "tools": _noop, "functions": _noop, "tool_choice": _none_choice,
    "function_call": _none_choice, "response_format": _text_format, "audio": _noop, "modalities": _text_modalities,
    "prediction": _noop, "reasoning_effort": _noop, "verbosity": _noop, "web_search_options": _noop,
    "logprobs": _noop, "top_logprobs": _noop,
}  # fmt: skip
_UNSUPPORTED_TEXT = {**_UNSUPPORTED_COMMON, "suffix": _noop}


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: Optional[str] = None
    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=SEED_MIN, le=SEED_MAX)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    # OpenAI parameters without an implementation here: accepted only at a no-op value (see unsupported())
    frequency_penalty: Any = None
    presence_penalty: Any = None
    logit_bias: Any = None

    _unsupported: Any = _UNSUPPORTED_COMMON

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(s for s in self.stop if s)

    def unsupported(self) -> str | None:
        """The name of the first OpenAI parameter set to a value this server cannot honour (None: none)."""
        for name, harmless in self._unsupported.items():
            if not harmless(getattr(self, name)):
                return name
        return None

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    tools: Any = None
    functions: Any = None
    tool_choice: Any = None
    function_call: Any = None
    response_format: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    web_search_options: Any = None
    logprobs: Any = None
    top_logprobs: Any = None

    _unsupported: Any = _UNSUPPORTED_CHAT


TextPrompt = Union[str, list[int]]  # text, or token ids of the model's tokenizer


class CompletionRequest(_Sampling):
    """``prompt``: a string, a list of strings, a list of token ids, or a list of token-id lists. With
    ``max_tokens: 0`` nothing is generated (with ``echo`` and ``logprobs``: the prompt's log-likelihood)."""

    prompt: Union[str, list[Any]]
    max_tokens: Optional[int] = Field(None, ge=0)
    echo: bool = False
    logprobs: Optional[int] = Field(None, ge=0, le=MAX_LOGPROBS)
    best_of: Optional[int] = Field(None, ge=1)
    suffix: Any = None

    _unsupported: Any = _UNSUPPORTED_TEXT

    @field_validator("prompt", mode="after")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if not value:
            raise ValueError("an empty list of prompts")
        if all(_is_id(v) for v in value):
            return value
        for item in value:
            if not (isinstance(item, str) or (isinstance(item, list) and all(_is_id(v) for v in item))):
                raise ValueError("a prompt must be a string, a list of strings, a list of token ids (integers ≥ 0) "
                                 "or a list of token-id lists")  # fmt: skip
        return value

    def prompts(self) -> list[TextPrompt]:
        """The prompts, one per entry: text or token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if all(_is_id(v) for v in self.prompt):
            return [list(self.prompt)]
        return list(self.prompt)

    def unsupported(self) -> str | None:
        if self.best_of is not None and self.best_of != self.n:
            return "best_of"  # best_of == n is plain sampling
        return super().unsupported()


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class DRGRequest(_Body):
    """``text``: a hospital course or a whole discharge summary (``input`` says which; ``auto`` extracts the
    *Brief Hospital Course* when the study's rules find one, else uses the text as the course)."""

    text: str = Field(min_length=1)
    input: Literal["auto", "course", "summary"] = "auto"
    max_tokens: int = Field(1024, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: Optional[int] = Field(0, ge=SEED_MIN, le=SEED_MAX)
    max_prompt_tokens: Optional[int] = Field(None, ge=1)
    system_prompt: bool = True


class PRMRequest(_Body):
    """``note``: a PRM-Clinic JSON note (object), a rendered PRM string, or free text (needs ``dialogue``)."""

    note: Union[dict[str, Any], str]
    dialogue: Optional[str] = None
    format: Literal["auto", "json", "prm_string", "text"] = "auto"
    aggregate: Optional[str] = None
    weakest: int = Field(3, ge=0)
