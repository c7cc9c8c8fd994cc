"""GRPO rewards for Assessment & Plan generation, as TRL reward callables, with guards against reward hacking.

Every callable is ``fn(completions, dialogue=…, ref_problems=…, ref_steps=…, ref_words=…, ref_headers=…,
**kwargs) -> list[float]`` — one float per completion, in order. TRL passes each dataset column (see
:func:`clinrl.notes.dialogues.rl_rows`) as a keyword; the ``ref_*`` columns are optional (without them the
absolute limits of :class:`GuardConfig` apply). Completions are strings or chat-message lists. Each completion
is parsed once into problems and steps (:func:`clinrl.prm.structure.structure_note`, cached) and checked
(:func:`check_note`).

Rewards (:data:`REWARDS`):

- ``prm`` (:class:`PRMNoteReward`): the PRM's note score under the chosen aggregation (``sum_log`` — the
  study's — ``mean``, ``min`` or ``last``; the same number Best-of-N ranks by). The PRM is loaded once, when
  the callable is built; a batch is grouped by dialogue and each group scored in one call, which takes the
  shared-prefix fast path for causal-LM PRMs (:mod:`clinrl.prm.fastpath`; encoder PRMs have none). A note
  that fails a guard is not scored: it gets the **floor**. ``floor: absolute`` is the lowest score an
  admissible note can reach — ln(1e-10) for ``mean``/``min``/``last``, and ln(1e-10) × the label slots of the
  longest admissible note for ``sum_log`` (length-aware: it grows with the reference). ``floor: relative``
  (default) is ``floor_margin`` below the worst admissible note of the same dialogue in the batch (the
  absolute floor when there is none; minima are merged across processes): still below every admissible
  competitor in its GRPO group, but without
  an outlier of -23 that would shrink every other advantage of the group to almost nothing after the
  group's std normalisation. Either way a degenerate note cannot beat an admissible one of its dialogue on
  this term, whatever the PRM thinks of it.
- ``format``: the share of three checks passed: the text opens with a problem header (nothing before it),
  every problem has at least one step, every step has at least ``min_step_words`` words. 0 for empty output.
- ``completeness``: with a reference, ½ · min(1, distinct problems / reference problems) + ½ · the share of
  reference headers matched by a generated header (half of the reference header's content words, or both
  follow-up sections); without one, min(1, distinct problems / ``min_problems``).
- ``guard``: ``-penalty`` when any guard fails, else 0.

Guards (:class:`GuardConfig`, limits scaled by the reference note's size): ``empty`` (no problem or no step),
``too_few_problems`` (fewer than max(``min_problems``, ⌈``min_problem_ratio`` · reference⌉), capped at the
reference), ``too_few_steps`` (likewise for steps), ``repeated`` (more than ``max_repeated_fraction`` of the
steps repeat an earlier step, or a header repeats; compared on lower-cased words), ``copies_dialogue`` (more
than ``max_copy_fraction`` of the note's word ``copy_ngram``-grams occur verbatim in the dialogue; gold notes:
99th percentile 0.36), ``too_long`` (more problems, steps or words than ``max_*_ratio`` × the reference plus
slack). A degenerate note therefore loses on ``prm`` (floor), ``guard`` (−penalty) and usually ``format`` or
``completeness`` against any admissible note (tests/notes/test_rewards.py builds one of each kind).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from clinrl.drg.prompts import completion_text
from clinrl.errors import ClinrlError, DataError
from clinrl.prm.schema import Note
from clinrl.prm.score import AGGREGATES, FLOOR, ScoreConfig, load_scorer
from clinrl.prm.structure import DEFAULT_HEADER, is_follow_up_header, structure_note
from clinrl.registry import Registry

__all__ = [
    "FLOORS",
    "GUARDS",
    "REWARDS",
    "CompletenessReward",
    "FormatReward",
    "GuardConfig",
    "GuardReward",
    "Limits",
    "NoteCheck",
    "PRMNoteReward",
    "Reference",
    "build_reward",
    "check_note",
    "total_rewards",
]

FLOORS = ("relative", "absolute")
GUARDS = ("empty", "too_few_problems", "too_few_steps", "repeated", "copies_dialogue", "too_long")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("and or the of with for to in on a an without due status post history".split())


@dataclass(frozen=True)
class GuardConfig:
    """Anti-hacking limits (see the module docstring); ratios are relative to the reference note."""

    min_problems: int = 2
    min_problem_ratio: float = 0.5
    min_steps: int = 2
    min_step_ratio: float = 0.3
    max_problem_ratio: float = 2.0
    max_step_ratio: float = 2.0
    max_word_ratio: float = 2.5
    slack: int = 2
    default_max_problems: int = 12
    default_max_steps: int = 45
    default_max_words: int = 600
    max_repeated_fraction: float = 0.25
    copy_ngram: int = 6
    max_copy_fraction: float = 0.6
    min_step_words: int = 3
    penalty: float = 1.0
    floor: Literal["relative", "absolute"] = "relative"
    floor_margin: float = 1.0

    def __post_init__(self) -> None:
        if self.min_problems < 1 or self.min_steps < 1:
            raise ClinrlError("guards: min_problems and min_steps must be at least 1")
        if not 0 <= self.max_repeated_fraction < 1 or not 0 < self.max_copy_fraction <= 1:
            raise ClinrlError("guards: max_repeated_fraction must be in [0, 1) and max_copy_fraction in (0, 1]")
        if self.copy_ngram < 2 or self.penalty < 0:
            raise ClinrlError("guards: copy_ngram must be at least 2 and penalty non-negative")
        if self.floor not in FLOORS or not self.floor_margin > 0:
            raise ClinrlError(f"guards: floor must be one of {', '.join(FLOORS)} and floor_margin positive")


@dataclass(frozen=True)
class Reference:
    """Size of the reference (gold) note of a dialogue; None fields are unknown."""

    problems: int | None = None
    steps: int | None = None
    words: int | None = None
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """The admissible size range for one dialogue."""

    min_problems: int
    min_steps: int
    max_problems: int
    max_steps: int
    max_words: int

    @classmethod
    def of(cls, ref: Reference, g: GuardConfig) -> Limits:
        def low(absolute: int, ratio: float, size: int | None) -> int:
            return absolute if not size else min(size, max(absolute, math.ceil(ratio * size)))

        def high(ratio: float, size: int | None, default: int, slack: int) -> int:
            return default if not size else math.ceil(ratio * size) + slack

        return cls(
            min_problems=low(g.min_problems, g.min_problem_ratio, ref.problems),
            min_steps=low(g.min_steps, g.min_step_ratio, ref.steps),
            max_problems=high(g.max_problem_ratio, ref.problems, g.default_max_problems, g.slack),
            max_steps=high(g.max_step_ratio, ref.steps, g.default_max_steps, 2 * g.slack),
            max_words=high(g.max_word_ratio, ref.words, g.default_max_words, 10 * g.slack),
        )

    @property
    def max_slots(self) -> int:
        """Label slots of the longest admissible note."""
        return 2 * self.max_problems + self.max_steps + 2


@dataclass(frozen=True)
class NoteCheck:
    """A parsed completion and what the guards found (no text kept beyond the note itself)."""

    note: Note
    reference: Reference
    limits: Limits
    violations: tuple[str, ...]
    distinct_problems: int
    repeated_fraction: float
    copy_fraction: float
    words: int

    @property
    def admissible(self) -> bool:
        return not self.violations


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _repeated_fraction(note: Note) -> tuple[float, bool]:
    steps = [" ".join(_words(s.text)) for p in note.problems for s in p.steps]
    headers = [" ".join(_words(p.header)) for p in note.problems]
    repeats = len(steps) - len(set(steps))
    return (repeats / len(steps) if steps else 0.0), len(set(headers)) < len(headers)


@lru_cache(maxsize=256)
def _dialogue_ngrams(dialogue: str, n: int) -> frozenset[tuple[str, ...]]:
    return frozenset(_ngrams(_words(dialogue), n))


@lru_cache(maxsize=8192)
def check_note(
    text: str, dialogue: str = "", reference: Reference = Reference(), guards: GuardConfig = GuardConfig()
) -> NoteCheck:
    """Parse ``text`` into problems and steps and run the guards (cached: each reward calls it)."""
    note = structure_note(text, dialogue=dialogue)
    limits = Limits.of(reference, guards)
    words = _words(note.text())
    distinct = len({" ".join(_words(p.header)) for p in note.problems})
    repeated, header_repeat = _repeated_fraction(note)
    grams = _ngrams(words, guards.copy_ngram)
    copied = len(grams & _dialogue_ngrams(dialogue, guards.copy_ngram)) / len(grams) if grams and dialogue else 0.0
    found = []
    if not note.problems or not note.n_steps:
        found.append("empty")
    else:
        if distinct < limits.min_problems:
            found.append("too_few_problems")
        if note.n_steps < limits.min_steps:
            found.append("too_few_steps")
    if repeated > guards.max_repeated_fraction or header_repeat:
        found.append("repeated")
    if copied > guards.max_copy_fraction:
        found.append("copies_dialogue")
    if len(note.problems) > limits.max_problems or note.n_steps > limits.max_steps or len(words) > limits.max_words:
        found.append("too_long")
    return NoteCheck(note, reference, limits, tuple(found), distinct, repeated, copied, len(words))


# ----------------------------------------------------------------------------------------- arguments
def _text(completion: Any) -> str:
    return completion_text(completion)


def _column(kwargs: dict[str, Any], name: str, n: int) -> list[Any]:
    values = kwargs.get(name)
    if values is None:
        return [None] * n
    if len(values) != n:
        raise ClinrlError(f"reward column {name!r} has {len(values)} values for {n} completions")
    return list(values)


def _checks(completions: Sequence[Any], guards: GuardConfig, kwargs: dict[str, Any]) -> list[NoteCheck]:
    n = len(completions)
    dialogues = _column(kwargs, "dialogue", n)
    cols = [_column(kwargs, k, n) for k in ("ref_problems", "ref_steps", "ref_words", "ref_headers")]
    out = []
    for i, completion in enumerate(completions):
        problems, steps, words, headers = (c[i] for c in cols)
        ref = Reference(problems, steps, words, tuple(headers or ()))
        out.append(check_note(_text(completion), dialogues[i] or "", ref, guards))
    return out


# ------------------------------------------------------------------------------------------- rewards
class _Reward:
    """Base: a TRL reward callable named ``__name__`` (TRL logs rewards under it)."""

    __name__ = "reward"

    def __init__(self, guards: GuardConfig | None = None):
        self.guards = guards or GuardConfig()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [self.score(c, kwargs) for c in _checks(completions, self.guards, kwargs)]

    def score(self, check: NoteCheck, kwargs: dict[str, Any]) -> float:
        raise NotImplementedError


class FormatReward(_Reward):
    """Share of the format checks passed (see the module docstring)."""

    __name__ = "format"

    def score(self, check: NoteCheck, kwargs: dict[str, Any]) -> float:
        problems = check.note.problems
        if not problems or not check.note.n_steps:
            return 0.0
        headed = problems[0].header != DEFAULT_HEADER
        stepped = all(p.steps for p in problems)
        sentences = all(len(_words(s.text)) >= self.guards.min_step_words for p in problems for s in p.steps)
        return (headed + stepped + sentences) / 3


def _content(header: str) -> set[str]:
    return {w for w in _words(header) if len(w) > 2 and w not in _STOP}


def header_coverage(headers: Sequence[str], reference: Sequence[str]) -> float:
    """Share of ``reference`` headers matched by one of ``headers`` (half its content words, or follow-up)."""
    if not reference:
        return 1.0
    mine = [(_content(h), is_follow_up_header(h)) for h in headers]
    hit = 0
    for ref in reference:
        words, follow = _content(ref), is_follow_up_header(ref)
        hit += any((follow and f) or (words and len(words & m) * 2 >= len(words)) or (not words and m) for m, f in mine)
    return hit / len(reference)


class CompletenessReward(_Reward):
    """Coverage of the reference's problems (count and headers), in [0, 1]."""

    __name__ = "completeness"

    def score(self, check: NoteCheck, kwargs: dict[str, Any]) -> float:
        if not check.note.problems:
            return 0.0
        ref = check.reference
        ref_problems = ref.problems or len(ref.headers)
        if not ref_problems:
            return min(1.0, check.distinct_problems / self.guards.min_problems)
        count = min(1.0, check.distinct_problems / ref_problems)
        coverage = header_coverage([p.header for p in check.note.problems], ref.headers) if ref.headers else count
        return 0.5 * count + 0.5 * coverage


class GuardReward(_Reward):
    """``-penalty`` when any guard fails, else 0."""

    __name__ = "guard"

    def score(self, check: NoteCheck, kwargs: dict[str, Any]) -> float:
        return -self.guards.penalty if check.violations else 0.0


class PRMNoteReward(_Reward):
    """The PRM's note score (``aggregate``), floored for notes that fail a guard; the PRM is loaded once.

    ``prm``: a saved PRM folder, or a scorer object (anything with ``score_notes(notes, dialogue)`` and
    ``default_aggregate``, e.g. :class:`clinrl.prm.score.PRMScorer`). ``aggregate`` defaults to the model's.
    ``stats`` counts notes scored, floored (per guard), unscorable, and the scorer's fast/reference paths.
    """

    __name__ = "prm"

    def __init__(
        self,
        prm: str | Path | Any,
        aggregate: str | None = None,
        guards: GuardConfig | None = None,
        score_config: ScoreConfig | None = None,
    ):
        super().__init__(guards)
        self.scorer = load_scorer(prm, score_config or ScoreConfig()) if isinstance(prm, (str, Path)) else prm
        self.aggregate = aggregate or self.scorer.default_aggregate
        AGGREGATES[self.aggregate]  # an unknown aggregate fails here, with the choices
        self.stats: dict[str, int] = {}

    def floor(self, limits: Limits) -> float:
        """The lowest score an admissible note can get under this aggregation (see the module docstring)."""
        low = math.log(FLOOR)
        return low * limits.max_slots if self.aggregate == "sum_log" else low

    def _count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    def __call__(self, completions: Sequence[Any], **kwargs: Any) -> list[float]:
        checks = _checks(completions, self.guards, kwargs)
        dialogues = _column(kwargs, "dialogue", len(checks))
        if any(d is None for d in dialogues):
            raise ClinrlError("the prm reward needs a 'dialogue' column in the dataset")
        out: list[float | None] = [None] * len(checks)
        groups: dict[str, list[int]] = {}
        for i, check in enumerate(checks):
            for v in check.violations:
                self._count(f"floored_{v}")
            if check.admissible:
                groups.setdefault(dialogues[i], []).append(i)
        before = dict(getattr(self.scorer, "stats", {}) or {})
        for dialogue, members in groups.items():
            for i, value in zip(members, self._score_group(dialogue, [checks[i].note for i in members])):
                out[i] = value
        lowest: dict[str, float] = {}  # per dialogue: the worst admissible score in this batch
        for i, value in enumerate(out):
            if value is not None:
                lowest[dialogues[i]] = min(value, lowest.get(dialogues[i], value))
        relative = self.guards.floor == "relative"
        if relative:
            lowest = _merge_across_processes(lowest)
        out = [
            value if value is not None
            else lowest[d] - self.guards.floor_margin if relative and d in lowest
            else self.floor(check.limits)
            for value, d, check in zip(out, dialogues, checks)
        ]  # fmt: skip
        self._count("scored", sum(len(m) for m in groups.values()))
        self._count("floored", sum(not c.admissible for c in checks))
        after = getattr(self.scorer, "stats", {}) or {}
        for path in ("fast", "reference"):
            self._count(f"path_{path}", after.get(path, 0) - before.get(path, 0))
        log = kwargs.get("log_metric")
        if callable(log) and checks:
            log("prm/floored_frac", sum(not c.admissible for c in checks) / len(checks))
        return out

    def _score_group(self, dialogue: str, notes: list[Note]) -> list[float | None]:
        """One scorer call for all notes of one dialogue; on a data error, note by note (failures: None)."""
        try:
            return [s.score(self.aggregate) for s in self.scorer.score_notes(notes, dialogue)]
        except DataError:
            out: list[float | None] = []
            for note in notes:
                try:
                    out.append(self.scorer.score_notes([note], dialogue)[0].score(self.aggregate))
                except DataError:
                    self._count("unscorable")
                    out.append(None)
            return out


def _merge_across_processes(lowest: dict[str, float]) -> dict[str, float]:
    """Per-dialogue minima over every process of a distributed run (TRL may spread a group over processes;
    every process computes the rewards of every batch, so the collective is called equally often)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return lowest
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, lowest)
    merged: dict[str, float] = {}
    for part in parts:
        for key, value in (part or {}).items():
            merged[key] = min(value, merged.get(key, value))
    return merged


def prm_reward(prm: Any = None, aggregate: str | None = None, guards: GuardConfig | None = None,
               score_config: ScoreConfig | None = None, **_: Any) -> PRMNoteReward:  # fmt: skip
    """The ``prm`` reward: needs ``prm=`` (a saved PRM folder or a scorer); loads the PRM."""
    if prm is None:
        raise ClinrlError("the prm reward needs a PRM (a saved PRM folder)")
    return PRMNoteReward(prm, aggregate, guards, score_config)


# name → factory(**options); every factory takes the same options and ignores those it does not use. The PRM
# reward is a lazy target (like the backends), so no name needs an if-branch in build_reward.
REWARDS: Registry[Callable[..., _Reward]] = Registry("reward", {
    "prm": "clinrl.notes.rewards:prm_reward",
    "format": lambda guards=None, **_: FormatReward(guards),
    "completeness": lambda guards=None, **_: CompletenessReward(guards),
    "guard": lambda guards=None, **_: GuardReward(guards),
})  # fmt: skip


def build_reward(name: str, **options: Any) -> _Reward:
    """A reward callable by name (:data:`REWARDS`); ``prm`` needs ``prm=`` (folder or scorer)."""
    return REWARDS[name](**options)


def total_rewards(
    rewards: Sequence[Callable[..., list[float]]], completions: Sequence[Any], weights: Sequence[float] | None = None,
    **columns: Any,
) -> list[float]:  # fmt: skip
    """The weighted sum of ``rewards`` per completion, as TRL combines them (weights default to 1)."""
    weights = list(weights) if weights is not None else [1.0] * len(rewards)
    if len(weights) != len(rewards):
        raise ClinrlError(f"{len(weights)} weights for {len(rewards)} rewards")
    total = [0.0] * len(completions)
    for fn, w in zip(rewards, weights):
        for i, value in enumerate(fn(completions, **columns)):
            total[i] += w * value
    return total
