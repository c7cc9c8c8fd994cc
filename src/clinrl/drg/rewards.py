"""GRPO reward functions for DRG coding (REFERENCE A, "GRPO"), as TRL-compatible callables.

Every reward is called as ``fn(completions, solution, **kwargs) -> list[float]``: TRL passes
``prompts=``, ``completions=``, ``completion_ids=`` and each dataset column (``solution`` = the gold v34
description) as keyword arguments. Completions may be strings or chat-message lists.

- ``format``: 0 when the output is exactly one think block then one answer block (white space around
  and between allowed), else -2.
- ``accuracy_<scheme>`` (0 when the format fails): empty or not a v34 description -1.5; exact match 2;
  otherwise, by scheme, for (same base DRG, wrong CC/MCC) / (same CC/MCC status, wrong base) / neither:
  strict 0 / 0 / 0, dense 1.5 / 0.5 / -0.5, balanced 1 / 1 / -0.5. CC/MCC status matches only when both
  classes are equal and neither is NOT_APPLICABLE.
- ``accuracy_weight_aware``: like the others for empty/invalid (-1.5) and exact (2); a wrong valid DRG
  earns ``-0.5 + 2 * exp(-|ln(w_answer / w_gold)| / tau)`` (tau 0.25), i.e. 1.5 at equal relative
  weight, about 0.9 at 10 % apart, falling to -0.5; -0.5 when either weight is unknown (998, 999).
- ``cot_first_penalty``: -0.5 when the model's own (non-empty) answer already appears within the first
  50 reasoning tokens of its think block, else 0 (0 when the format fails). Tokens are white-space
  separated words by default, or a tokenizer's tokens when one is given. "Appears" compares
  upper-cased letter/digit runs, so punctuation and spacing do not matter but word boundaries do.

Matching is exact, never by substring: the answer is compared with the v34 table after collapsing
white space and upper-casing. An answer with non-ASCII characters (after white-space collapsing) never
matches, so look-alike letters, ligatures and zero-width characters cannot game the reward; an answer
carrying the DRG number ("291 HEART FAILURE…", "DRG 291") is not a description, so it is invalid
(-1.5): the task asks for the text without the number. Parsing is linear-time string scanning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from clinrl.drg.ontology import CCMCC, DRG, Ontology, load_ontology
from clinrl.drg.prompts import ParsedCompletion, completion_text, parse_completion
from clinrl.errors import DataError
from clinrl.registry import Registry, UnknownName

__all__ = [
    "REWARDS",
    "SCHEMES",
    "AccuracyReward",
    "CotFirstPenalty",
    "FormatReward",
    "RewardFunction",
    "Scheme",
    "UnknownRewardError",
    "WeightAwareReward",
    "available_rewards",
    "get_reward",
    "match_answer",
]

FORMAT_BAD = -2.0
INVALID = -1.5
EXACT = 2.0

_WORD = re.compile(r"\S+")
_ALNUM = re.compile(r"[A-Z0-9]+")


class UnknownRewardError(UnknownName):
    """A reward name that is not in the registry."""


@dataclass(frozen=True)
class Scheme:
    """Partial credit for a valid but wrong answer."""

    same_principal: float
    same_cc_mcc: float
    neither: float


SCHEMES: Registry[Scheme] = Registry("accuracy scheme", {
    "strict": Scheme(0.0, 0.0, 0.0),
    "dense": Scheme(1.5, 0.5, -0.5),
    "balanced": Scheme(1.0, 1.0, -0.5),
}, error=UnknownRewardError)  # fmt: skip


def match_answer(answer: str | None, ontology: Ontology) -> DRG | None:
    """The v34 DRG that ``answer`` spells exactly (case and white space aside), else None."""
    if not answer:
        return None
    collapsed = " ".join(answer.split())  # same as collapsing \s+ runs, at C speed on huge outputs
    if not collapsed or not collapsed.isascii():
        return None
    if len(collapsed) > 200 and len(collapsed) > max(len(d.description) for d in ontology):
        return None  # longer than every description: no need to normalise megabytes to find out
    return ontology.find(collapsed)


def same_cc_mcc(a: DRG, b: DRG) -> bool:
    """Same CC/MCC status: equal classes, neither NOT_APPLICABLE."""
    return a.cc_mcc == b.cc_mcc and a.cc_mcc is not CCMCC.NOT_APPLICABLE


class RewardFunction:
    """Base: parses each completion and scores it against its gold; ``bounds`` is the output range."""

    bounds: tuple[float, float] = (0.0, 0.0)
    needs_gold = False

    def __init__(self, name: str, ontology: Ontology | None = None):
        self.__name__ = name
        self.ontology = ontology if ontology is not None else load_ontology()

    def __repr__(self) -> str:
        return f"<reward {self.__name__}>"

    def score(self, parsed: ParsedCompletion, gold: DRG | None) -> float:
        raise NotImplementedError

    def _gold(self, solution: Any, index: int) -> DRG:
        drg = self.ontology.find(solution) if isinstance(solution, str) else None
        if drg is None:
            raise DataError(f"gold {solution!r} is not an MS-DRG v34 description", row=index, field="solution")
        return drg

    def __call__(self, completions: Sequence[Any], solution: Sequence[str] | None = None, **kwargs: Any) -> list[float]:
        if self.needs_gold and (solution is None or len(solution) != len(completions)):
            got = "none" if solution is None else len(solution)
            raise ValueError(f"{self.__name__}: need one solution per completion ({len(completions)}), got {got}")
        rewards = []
        for i, completion in enumerate(completions):
            gold = self._gold(solution[i], i) if self.needs_gold else None
            rewards.append(float(self.score(parse_completion(completion_text(completion)), gold)))
        return rewards


class FormatReward(RewardFunction):
    """0 for exactly ``<think>…</think><answer>…</answer>``, else -2."""

    bounds = (FORMAT_BAD, 0.0)

    def __init__(self, ontology: Ontology | None = None):
        super().__init__("format", ontology)

    def score(self, parsed: ParsedCompletion, gold: DRG | None) -> float:
        return 0.0 if parsed.format_ok else FORMAT_BAD


class AccuracyReward(RewardFunction):
    """Exact 2, invalid -1.5, otherwise partial credit by :data:`SCHEMES`; 0 when the format fails."""

    bounds = (INVALID, EXACT)
    needs_gold = True

    def __init__(self, scheme: str, ontology: Ontology | None = None):
        self.scheme = SCHEMES[scheme]  # an unknown scheme: UnknownRewardError with the choices
        super().__init__(f"accuracy_{scheme}", ontology)

    def score(self, parsed: ParsedCompletion, gold: DRG | None) -> float:
        if not parsed.format_ok:
            return 0.0
        answer = match_answer(parsed.answer, self.ontology)
        if answer is None:
            return INVALID
        if answer.code == gold.code:
            return EXACT
        return self.partial(answer, gold)

    def partial(self, answer: DRG, gold: DRG) -> float:
        if answer.principal == gold.principal:
            return self.scheme.same_principal
        if same_cc_mcc(answer, gold):
            return self.scheme.same_cc_mcc
        return self.scheme.neither


class WeightAwareReward(AccuracyReward):
    """Partial credit by relative-weight distance (formula in the module docstring)."""

    def __init__(self, ontology: Ontology | None = None, tau: float = 0.25):
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        super().__init__("dense", ontology)
        self.__name__ = "accuracy_weight_aware"
        self.tau = tau

    def partial(self, answer: DRG, gold: DRG) -> float:
        if not answer.weight or not gold.weight:
            return -0.5
        return -0.5 + 2.0 * math.exp(-abs(math.log(answer.weight / gold.weight)) / self.tau)


def _alnum_words(text: str) -> str:
    """Upper-cased letter/digit runs, space separated and padded: ' HEART FAILURE '."""
    return " " + " ".join(_ALNUM.findall(text.upper())) + " "


class CotFirstPenalty(RewardFunction):
    """-0.5 when the answer shows up in the first ``n_tokens`` reasoning tokens, else 0."""

    bounds = (-0.5, 0.0)

    def __init__(self, ontology: Ontology | None = None, *, n_tokens: int = 50, tokenizer: Any = None):
        super().__init__("cot_first_penalty", ontology)
        self.n_tokens, self.tokenizer = n_tokens, tokenizer

    def prefix(self, think: str) -> str:
        """The first ``n_tokens`` reasoning tokens of ``think``, as text."""
        if self.tokenizer is None:
            words = []
            for match in _WORD.finditer(think):
                if len(words) == self.n_tokens:
                    break
                words.append(match.group())
            return " ".join(words)
        # no token spans more than 256 characters in practice; the cap keeps huge outputs cheap
        ids = self.tokenizer(think[: self.n_tokens * 256], add_special_tokens=False)["input_ids"][: self.n_tokens]
        return self.tokenizer.decode(ids)

    def score(self, parsed: ParsedCompletion, gold: DRG | None) -> float:
        if not parsed.format_ok or not parsed.answer or not parsed.think:
            return 0.0
        answer = _alnum_words(parsed.answer)
        if not answer.strip():
            return 0.0
        return -0.5 if answer in _alnum_words(self.prefix(parsed.think)) else 0.0


REWARDS: Registry[Callable[..., RewardFunction]] = Registry("reward", {
    "format": FormatReward,
    **{f"accuracy_{name}": partial(AccuracyReward, name) for name in SCHEMES},
    "accuracy_weight_aware": WeightAwareReward,
    "cot_first_penalty": CotFirstPenalty,
}, error=UnknownRewardError)  # fmt: skip


def available_rewards() -> list[str]:
    """Names accepted by :func:`get_reward`."""
    return list(REWARDS)


def get_reward(name: str, **options: Any) -> RewardFunction:
    """Build the reward called ``name``; ``options`` go to its constructor (``ontology=``, and for
    ``cot_first_penalty`` ``n_tokens=``/``tokenizer=``, for ``accuracy_weight_aware`` ``tau=``)."""
    return REWARDS[name](**options)
