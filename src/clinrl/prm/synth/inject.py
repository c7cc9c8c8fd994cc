"""Error-sample synthesis from gold notes, in the PRM-Clinic error schema, without any external model.

An :class:`ErrorSynthesizer` proposes an :class:`EditPlan` for one gold note (which positions to swap, with
what text and error type, and what to remove); :func:`apply_plan` turns a plan into an error sample with
``Swapped_info``/``Removed_info``/totals filled and labels set by :mod:`clinrl.prm.synth.labels`, exactly like
the study's data. The default :class:`RuleBasedSynthesizer` picks positions and counts from
distributions measured on the real dev error set and rewrites text with :mod:`clinrl.prm.synth.edits`.

An LLM-backed synthesizer plugs in by implementing ``propose``: reuse :func:`choose_swap_targets` and
:func:`choose_removals` for the positions and ask the model (one prompt per error type) for the new text.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from clinrl.errors import ClinrlError, DataError, shown_id
from clinrl.prm.schema import ERROR_TYPES, Note, Removal, Swap
from clinrl.prm.synth.edits import RewriteContext, TextPool, rewrite
from clinrl.prm.synth.labels import clone_problem, number_key, relabel

__all__ = [
    "EditPlan",
    "ErrorSynthesizer",
    "NoteTooSmallError",
    "RuleBasedSynthesizer",
    "SwapTarget",
    "SynthConfig",
    "SynthConfigError",
    "SynthResult",
    "apply_plan",
    "choose_removals",
    "choose_swap_targets",
    "synthesize",
    "synthesize_errors",
]

log = logging.getLogger(__name__)
K = TypeVar("K")

# Measured on verification_dev_error.json.gz (768 samples).
REAL_SWAP_COUNTS: Mapping[int, float] = {2: 77, 3: 324, 4: 262, 5: 105}
REAL_STEP_REMOVALS: Mapping[int, float] = {0: 295, 1: 250, 2: 122, 3: 57, 4: 26, 5: 10, 6: 4, 7: 3, 8: 1}
REAL_STEP_TYPES: Mapping[str, float] = {"Unhelpful": 805, "Factual Inaccuracy": 752, "Hallucination": 633}
REAL_PROBLEM_TYPES: Mapping[str, float] = {"Hallucination": 261, "Factual Inaccuracy": 147, "Unhelpful": 101}
REAL_PROBLEM_LEVEL_SHARE = 509 / 2699
REAL_PROBLEM_REMOVAL_RATE = 144 / 768


class SynthConfigError(ClinrlError):
    """An impossible synthesis configuration."""


class NoteTooSmallError(DataError):
    """The gold note has fewer headers and steps than the minimum number of swaps asked for."""


@dataclass(frozen=True)
class SynthConfig:
    """Counts and mixes for error synthesis; the defaults reproduce the real dev error set.

    Swap counts are drawn from ``swap_count_weights`` restricted to ``min_swaps..max_swaps`` (uniform when
    none of those counts has a weight); step removals from ``step_removal_weights`` restricted to what fits
    under ``max_removals`` (problem removals count too). ``on_too_small`` says what happens to a gold note
    with fewer swappable items than ``min_swaps``: 'skip' (counted in :class:`SynthResult`) or 'raise'.
    """

    min_swaps: int = 2
    max_swaps: int = 5
    swap_count_weights: Mapping[int, float] = field(default_factory=lambda: dict(REAL_SWAP_COUNTS))
    problem_level_share: float = REAL_PROBLEM_LEVEL_SHARE
    step_type_weights: Mapping[str, float] = field(default_factory=lambda: dict(REAL_STEP_TYPES))
    problem_type_weights: Mapping[str, float] = field(default_factory=lambda: dict(REAL_PROBLEM_TYPES))
    max_removals: int = 8
    step_removal_weights: Mapping[int, float] = field(default_factory=lambda: dict(REAL_STEP_REMOVALS))
    problem_removal_rate: float = REAL_PROBLEM_REMOVAL_RATE
    max_problem_removals: int = 1
    on_too_small: Literal["skip", "raise"] = "skip"

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.min_swaps <= self.max_swaps:
            problems.append(f"need 1 <= min_swaps <= max_swaps, got {self.min_swaps}..{self.max_swaps}")
        if self.max_removals < 0 or self.max_problem_removals < 0:
            problems.append("max_removals and max_problem_removals must be >= 0")
        for name in ("problem_level_share", "problem_removal_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("step_type_weights", "problem_type_weights"):
            weights = getattr(self, name)
            unknown = set(weights) - set(ERROR_TYPES)
            if unknown or not any(w > 0 for w in weights.values()) or any(w < 0 for w in weights.values()):
                problems.append(f"{name} needs non-negative weights over {ERROR_TYPES}, some positive")
        for name in ("swap_count_weights", "step_removal_weights"):
            if any(w < 0 for w in getattr(self, name).values()):
                problems.append(f"{name} must be non-negative")
        if self.on_too_small not in ("skip", "raise"):
            problems.append(f"on_too_small must be 'skip' or 'raise', got {self.on_too_small!r}")
        if problems:
            raise SynthConfigError("; ".join(problems))


# ------------------------------------------------------------------------------------------ plans
@dataclass(frozen=True)
class SwapTarget:
    """A position to swap: a header (``step_no`` None) or a step."""

    problem_no: str
    step_no: str | None = None

    @property
    def level(self) -> Literal["Step", "Problem"]:
        return "Problem" if self.step_no is None else "Step"


@dataclass
class EditPlan:
    """What to do to one gold note: swaps (applied first, in order), then step and problem removals."""

    swaps: list[Swap] = field(default_factory=list)
    step_removals: list[tuple[str, str]] = field(default_factory=list)  # (problem_no, step_no)
    problem_removals: list[str] = field(default_factory=list)


class ErrorSynthesizer(Protocol):
    """Proposes the edits for one error sample of one gold note."""

    def propose(self, gold: Note, rng: random.Random) -> EditPlan:
        """Return an edit plan; raise :class:`NoteTooSmallError` when the note cannot take it."""
        ...


def _weighted(rng: random.Random, weights: Mapping[K, float], allowed: Sequence[K]) -> K:
    items = [(k, weights.get(k, 0.0)) for k in allowed]
    if not any(w > 0 for _, w in items):
        return rng.choice(list(allowed))
    return rng.choices([k for k, _ in items], weights=[w for _, w in items])[0]


def choose_swap_targets(gold: Note, config: SynthConfig, rng: random.Random) -> list[SwapTarget]:
    """Distinct positions to swap: the count from the config, each header with ``problem_level_share``."""
    headers = [SwapTarget(p.no) for p in gold.problems]
    steps = [SwapTarget(p.no, s.no) for p in gold.problems for s in p.steps]
    available = len(headers) + len(steps)
    if available < config.min_swaps:
        raise NoteTooSmallError(
            f"has {available} headers and steps, fewer than min_swaps={config.min_swaps}",
            row=f"case {shown_id(gold.case_id)}",
        )
    n = _weighted(rng, config.swap_count_weights, range(config.min_swaps, min(config.max_swaps, available) + 1))
    targets: list[SwapTarget] = []
    for _ in range(n):
        use_header = headers and (not steps or rng.random() < config.problem_level_share)
        pool = headers if use_header else steps
        targets.append(pool.pop(rng.randrange(len(pool))))
    return targets


def choose_removals(
    gold: Note, swapped: set[tuple[str, str | None]], config: SynthConfig, rng: random.Random
) -> tuple[list[tuple[str, str]], list[str]]:
    """Steps to remove (never a swapped one, as in the real data) and problems to remove (any)."""
    n_problems = 0
    for _ in range(min(config.max_problem_removals, len(gold.problems), config.max_removals)):
        if rng.random() < config.problem_removal_rate:
            n_problems += 1
    candidates = [(p.no, s.no) for p in gold.problems for s in p.steps if (p.no, s.no) not in swapped]
    room = min(config.max_removals - n_problems, len(candidates))
    n_steps = _weighted(rng, config.step_removal_weights, range(0, room + 1))
    steps = sorted(rng.sample(candidates, n_steps), key=lambda k: (number_key(k[0]), number_key(k[1])))
    problems = [p.no for p in rng.sample(gold.problems, n_problems)]
    return steps, problems


class RuleBasedSynthesizer:
    """The default synthesizer: real-data distributions for counts and types, rule-based rewrites."""

    def __init__(self, config: SynthConfig | None = None, pool: Sequence[Note] | None = None):
        self.config = config or SynthConfig()
        self.pool = TextPool.from_notes(pool) if pool is not None else None
        self._context: tuple[Note, RewriteContext] | None = None

    def context(self, gold: Note) -> RewriteContext:
        """Rewrite context of ``gold`` (cached for consecutive samples of the same note)."""
        if self._context is None or self._context[0] is not gold:
            self._context = (gold, RewriteContext(gold.dialogue, gold.case_id, self.pool))
        return self._context[1]

    def propose(self, gold: Note, rng: random.Random) -> EditPlan:
        ctx = self.context(gold)
        by_no = {p.no: p for p in gold.problems}
        plan = EditPlan()
        for target in choose_swap_targets(gold, self.config, rng):
            problem = by_no[target.problem_no]
            if target.step_no is None:
                weights, original = self.config.problem_type_weights, problem.header
            else:
                weights = self.config.step_type_weights
                original = next(s.text for s in problem.steps if s.no == target.step_no)
            error_type = _weighted(rng, weights, ERROR_TYPES)
            new = rewrite(original, target.level, error_type, ctx, rng)
            plan.swaps.append(Swap(target.level, target.problem_no, target.step_no, error_type, original, new))
        swapped = {(s.problem_no, s.step_no) for s in plan.swaps}
        plan.step_removals, plan.problem_removals = choose_removals(gold, swapped, self.config, rng)
        return plan


# ------------------------------------------------------------------------------------ applying
def _invalid(gold: Note, message: str) -> DataError:
    return DataError(f"invalid edit plan: {message}", row=f"case {shown_id(gold.case_id)}")


def apply_plan(gold: Note, plan: EditPlan, *, sample_no: int) -> Note:
    """The error sample that ``plan`` makes of ``gold``, in the PRM-Clinic error schema, labels set.

    Swaps are applied first (each must change its text and land on a distinct position), then step
    removals, then problem removals; nothing is renumbered. Raises :class:`DataError` on an invalid plan.
    """
    if gold.is_error_sample:
        raise _invalid(gold, f"sample {gold.sample_no} is an error sample, not a gold note")
    problems = [clone_problem(p) for p in gold.problems]
    by_no = {p.no: p for p in problems}
    if len(by_no) != len(problems):
        raise _invalid(gold, "the gold note repeats a problem number")
    if any(len({s.no for s in p.steps}) != len(p.steps) for p in problems):
        raise _invalid(gold, "the gold note repeats a step number within a problem")
    swaps: list[Swap] = []
    seen: set[tuple[str, str | None]] = set()
    for swap in plan.swaps:
        key = (swap.problem_no, swap.step_no)
        problem = by_no.get(swap.problem_no)
        if problem is None or key in seen:
            raise _invalid(gold, f"swap at {key} is unknown or repeated")
        seen.add(key)
        if swap.new == swap.original:
            raise _invalid(gold, f"swap at {key} does not change the text")
        if swap.step_no is None:
            if problem.header != swap.original:
                raise _invalid(gold, f"swap at {key}: Original_content is not the gold header")
            problem.header = swap.new
        else:
            step = next((s for s in problem.steps if s.no == swap.step_no), None)
            if step is None or step.text != swap.original:
                raise _invalid(gold, f"swap at {key}: no such step, or Original_content is not its text")
            step.text = swap.new
        swaps.append(Swap(swap.level, swap.problem_no, swap.step_no, swap.error_type, swap.original, swap.new))
    note = Note(
        problems=problems,
        dialogue=gold.dialogue,
        case_id=gold.case_id,
        case_no=gold.case_no,
        data_source=gold.data_source,
        sample_no=sample_no,
        swaps=swaps,
        total_error_no=len(swaps),
        extra=dict(gold.extra),
    )
    for problem_no, step_no in plan.step_removals:
        problem = by_no.get(problem_no)
        step = next((s for s in problem.steps if s.no == step_no), None) if problem else None
        if problem is None or step is None or problem not in note.problems:
            raise _invalid(gold, f"step removal at {(problem_no, step_no)}: no such step")
        problem.steps.remove(step)
        note.removals.append(Removal("Step", problem_no, step_no, step, "Step Incompleteness"))
    for problem_no in plan.problem_removals:
        problem = by_no.get(problem_no)
        if problem is None or problem not in note.problems:
            raise _invalid(gold, f"problem removal of {problem_no}: no such problem")
        note.problems.remove(problem)
        note.removals.append(Removal("Problem", problem_no, None, problem, "Problem Incompleteness"))
    relabel(note)  # every label, removed content included (labelled as after swapping)
    n_steps = sum(r.level == "Step" for r in note.removals)
    n_problems = len(note.removals) - n_steps
    note.total_steps_removed = n_steps or None
    note.total_problems_removed = n_problems or None
    return note


# ------------------------------------------------------------------------------------ batch API
@dataclass
class SynthResult:
    """Samples made, and the gold notes refused as too small (case ids), so no drop goes unreported."""

    notes: list[Note] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _rng(seed: int, gold: Note, index: int, sample_no: int) -> random.Random:
    key = gold.case_id or f"#{index}"
    return random.Random(f"clinrl-synth|{seed}|{key}|{sample_no}")


def synthesize(
    gold_notes: Sequence[Note],
    per_note: int,
    *,
    seed: int = 0,
    synthesizer: ErrorSynthesizer | None = None,
    pool: Sequence[Note] | None = None,
    config: SynthConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> SynthResult:
    """Make ``per_note`` error samples (``Sample_no`` 0…per_note-1) of every gold note.

    Deterministic: each sample's random stream depends only on ``seed``, its case id and its sample number.
    ``pool`` (default: ``gold_notes``) supplies other cases' content for hallucinations.
    ``progress`` is called with 1 after each gold note.
    """
    if per_note < 0:
        raise SynthConfigError(f"per_note must be >= 0, got {per_note}")
    config = config or SynthConfig()
    synth = synthesizer or RuleBasedSynthesizer(config, pool if pool is not None else gold_notes)
    result = SynthResult()
    for index, gold in enumerate(gold_notes):
        start = len(result.notes)
        try:
            for k in range(per_note):
                plan = synth.propose(gold, _rng(seed, gold, index, k))
                result.notes.append(apply_plan(gold, plan, sample_no=k))
        except NoteTooSmallError:
            if config.on_too_small == "raise":
                raise
            del result.notes[start:]
            result.skipped.append(gold.case_id or f"#{index}")
        if progress is not None:
            progress(1)
    return result


def synthesize_errors(
    gold_notes: list[Note],
    per_note: int,
    *,
    seed: int = 0,
    pool: list[Note] | None = None,
    config: SynthConfig | None = None,
) -> list[Note]:
    """Rule-based error samples of every gold note (see :func:`synthesize`).

    Gold notes too small for ``config.min_swaps`` are skipped with a logged warning (or raise
    :class:`NoteTooSmallError` with ``on_too_small='raise'``).
    """
    result = synthesize(gold_notes, per_note, seed=seed, pool=pool, config=config)
    if result.skipped:
        log.warning("skipped %d gold notes too small for the requested swaps: %s", len(result.skipped), result.skipped)
    return result.notes
