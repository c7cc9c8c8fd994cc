"""Request bodies. Unknown fields are ignored (OpenAI clients send many); wrong types are 422."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clinrl.llm.backends import SEED_RANGE

__all__ = ["ChatMessage", "ChatRequest", "CompletionRequest", "DRGRequest", "PRMRequest"]


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
    role: Literal["system", "user", "assistant"]
    content: Union[str, list[dict[str, Any]], None] = None

    def text(self) -> str:
        """The message text (list content: its text parts joined)."""
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if p.get("type", "text") == "text"
                           and isinstance(p.get("text"), str))  # fmt: skip
        return self.content or ""


class _Sampling(_Body):
    model: Optional[str] = None
    n: int = Field(1, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    stop: Union[str, list[str], None] = None
    seed: Optional[int] = Field(None, ge=SEED_MIN, le=SEED_MAX)
    stream: bool = False

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(s for s in self.stop if s)


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(_Sampling):
    prompt: str


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
