"""What every generation backend shares: prompts, sampling parameters, the backend protocol, stop strings.

Its own module so that backends (:mod:`clinrl.llm.backends` for transformers and vLLM,
:mod:`clinrl.llm.openai_client` for HTTP) import these from here and never from each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, Union

from clinrl.errors import ClinrlError

__all__ = [
    "MIN_TEMPERATURE",
    "SEED_RANGE",
    "GenerationBackend",
    "GenerationCancelled",
    "Message",
    "Prompt",
    "SamplingOptions",
    "SamplingParams",
    "cut_at_stop",
]

Message = dict[str, str]
Prompt = Union[str, Sequence[Message]]

MIN_TEMPERATURE = 1e-5  # below it, logits / temperature overflow to inf and sampling fails: treated as greedy
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.manual_seed accepts


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy (then ``n`` copies are identical).

    Every value a caller can pass is checked here, once for all backends: a temperature below
    ``MIN_TEMPERATURE`` (say 1e-300) is greedy, as the limit of sampling says and as vLLM does (divided by
    it, the logits overflow and sampling fails); non-finite numbers and seeds that torch cannot take are a
    ClinrlError."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ClinrlError(f"n must be ≥ 1, got {self.n}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ClinrlError(f"temperature must be a finite number ≥ 0, got {self.temperature}")
        if 0 < self.temperature < MIN_TEMPERATURE:
            object.__setattr__(self, "temperature", 0.0)
        if not 0 < self.top_p <= 1:  # also False for NaN
            raise ClinrlError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise ClinrlError("seed must be an integer from -2**63 to 2**64 - 1")
        if self.max_new_tokens < 1:
            raise ClinrlError(f"max_new_tokens must be ≥ 1, got {self.max_new_tokens}")

    def with_(self, **changes: Any) -> SamplingParams:
        return replace(self, **changes)


@dataclass(frozen=True)
class SamplingOptions:
    """The sampling part of a config that calls a model (``StructureConfig``, ``LLMSynthConfig``,
    ``DistillConfig``, ``DifficultyConfig``): subclasses add their own fields and redeclare a field to change
    its default.

    The values are checked on construction by building :class:`SamplingParams` (one set of checks for every
    config, with the same messages); a subclass with a ``__post_init__`` calls this one first."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        self.sampling_params()

    def sampling_params(self, attempt: int = 0, *, n: int = 1) -> SamplingParams:
        """:class:`SamplingParams` of try number ``attempt`` (from 0): its seed is ``seed + attempt``, so a retry
        samples anew and a caching client does not hand back the rejected answer."""
        return SamplingParams(n=n, temperature=self.temperature, top_p=self.top_p,
                              max_new_tokens=self.max_new_tokens, seed=self.seed + attempt)  # fmt: skip


class GenerationBackend(Protocol):
    """Anything that turns prompts into ``n`` completions each."""

    name: str

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[str]]: ...


class GenerationCancelled(ClinrlError):
    """Generation was cancelled (its ``cancel`` event was set) before it finished."""


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]
