"""Error synthesis with a language model: the model writes the new text, our code does everything else.

:class:`LLMErrorSynthesizer` implements :class:`~clinrl.prm.synth.inject.ErrorSynthesizer`. For each sample it
picks the positions, error types and removals exactly like the rule-based synthesizer
(:func:`~clinrl.prm.synth.inject.choose_swap_targets`, the configured type mixes,
:func:`~clinrl.prm.synth.inject.choose_removals`), then sends **one prompt per error type** (:data:`ERROR_PROMPTS`)
listing that type's positions and asking for ``Swapped_info`` items in the PRM-Clinic error schema (JSON).

Every answer is parsed and validated against the gold note (:func:`parse_swaps`): JSON with one item per
asked position and nothing else, valid ``Error_level``/``Error_type`` (the type asked for), positions that
exist, ``Original_content`` equal to the gold text, a ``New_content`` that really changes it, one line, no
special-token strings, not absurdly long. An invalid answer is asked again (new seed) up to
``max_attempts`` times; then the sample is rejected with the reason of its last answer. Valid edits are
applied with :func:`~clinrl.prm.synth.inject.apply_plan` (labels set by :mod:`clinrl.prm.synth.labels`), and the
sample is kept only if :func:`~clinrl.prm.synth.labels.check_label_consistency` finds nothing (checked against
the gold) and it renders as a PRM string. :func:`synthesize_with_llm` runs many samples in batches and
counts every reject by reason (:data:`REJECT_REASONS`); nothing invalid is ever returned.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from clinrl.errors import ClinrlError, DataError, describe_value, shown_id
from clinrl.llm.base import SamplingOptions
from clinrl.prm.format import PRMFormatError, SpecialTokens, _token_pattern, render_prm_string
from clinrl.prm.schema import ERROR_TYPES, LEVELS, Note, Swap
from clinrl.prm.synth.inject import (
    EditPlan,
    NoteTooSmallError,
    SwapTarget,
    SynthConfig,
    _rng,
    apply_plan,
    choose_removals,
    choose_swap_targets,
)
from clinrl.prm.synth.labels import check_label_consistency
from clinrl.registry import Registry

__all__ = [
    "ERROR_PROMPTS",
    "REJECT_REASONS",
    "LLMErrorSynthesizer",
    "LLMRejectedError",
    "LLMSynthConfig",
    "LLMSynthResult",
    "build_error_prompt",
    "extract_json",
    "parse_swaps",
    "synthesize_with_llm",
]

# Answer-level reasons (retried), then sample-level reasons (after applying the edits).
ANSWER_REASONS = (
    "request_error", "not_json", "schema", "wrong_error_type", "unknown_target", "unrequested_target",
    "duplicate_target", "missing_target", "original_mismatch", "no_change", "bad_text",
)  # fmt: skip
SAMPLE_REASONS = ("apply_failed", "label_inconsistent", "unrenderable")
REJECT_REASONS = ANSWER_REASONS + SAMPLE_REASONS

SYSTEM = (
    "You create training data for a verifier of clinical notes. You edit given parts of a correct clinical "
    "note (the Assessment and Plan written from a doctor-patient dialogue) so that each edited part contains "
    "one specific kind of error. Answer with JSON only."
)

# error type -> (what to do to a step, what to do to a problem header)
ERROR_PROMPTS: Registry[tuple[str, str]] = Registry("error type", {
    "Hallucination": (
        "add information the dialogue does not support: a finding, history item, diagnosis, test, drug, dose or "
        "referral that the doctor and patient never discussed (e.g. append 'Start metformin 500 mg daily.' when "
        "no such drug was discussed).",
        "name a condition the dialogue does not mention, or add one to the header.",
    ),
    "Factual Inaccuracy": (
        "change one fact so that it contradicts the dialogue: a dose, number, drug, test, side (left/right), "
        "duration, frequency or a negation. Keep the rest of the sentence as it is.",
        "change the condition so that it contradicts the dialogue (another side, organ, type or severity).",
    ),
    "Unhelpful": (
        "rewrite it so vaguely that it no longer helps: drop the specifics (drugs, doses, tests, timing) and keep "
        "a generic statement (e.g. 'Plan: Continue medication.'). Do not add new facts.",
        "replace it by a vague header that no longer names the problem (e.g. 'Health issue', 'Knee problem').",
    ),
})  # fmt: skip

MAX_LENGTH_FACTOR, MAX_LENGTH_SLACK = 4, 300  # New_content may be at most 4x the original + 300 characters


class LLMRejectedError(DataError):
    """The model gave no usable edits for a sample (after the allowed attempts); ``reason`` says why."""

    def __init__(self, reason: str, message: str = "", **kwargs: Any):
        self.reason = reason
        super().__init__(f"{reason}: {message}" if message else reason, **kwargs)


@dataclass(frozen=True)
class LLMSynthConfig(SamplingOptions):
    """Sampling and retries of the model calls; ``batch_size`` samples are prepared per round of requests."""

    temperature: float = 0.7
    max_new_tokens: int = 1024
    max_attempts: int = 3
    batch_size: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("max_attempts", "batch_size"):
            if getattr(self, name) < 1:
                raise ClinrlError(f"{name} must be at least 1, got {getattr(self, name)}")


# ------------------------------------------------------------------------------------------- prompts
def _note_listing(note: Note) -> str:
    lines = []
    for p in note.problems:
        lines.append(f'Problem {p.no} header: "{p.header}"')
        lines += [f'  Problem {p.no} Step {s.no}: "{s.text}"' for s in p.steps]
    return "\n".join(lines)


def _text_of(note: Note, target: SwapTarget) -> str:
    problem = next(p for p in note.problems if p.no == target.problem_no)
    if target.step_no is None:
        return problem.header
    return next(s.text for s in problem.steps if s.no == target.step_no)


def build_error_prompt(gold: Note, error_type: str, targets: Sequence[SwapTarget]) -> list[dict[str, str]]:
    """Chat messages asking for ``error_type`` edits of ``targets`` in the PRM-Clinic ``Swapped_info`` schema."""
    step_rule, header_rule = ERROR_PROMPTS[error_type]
    wanted = []
    for t in targets:
        where = f'"Error_level": "{t.level}", "Problem_no": "{t.problem_no}"'
        where += f', "Step_no": "{t.step_no}"' if t.step_no is not None else ""
        wanted.append(f"- {{{where}}}: {json.dumps(_text_of(gold, t), ensure_ascii=False)}")
    example = {"Error_level": "Step", "Problem_no": "1", "Step_no": "2", "Error_type": error_type,
               "Original_content": "<the original text, copied exactly>", "New_content": "<the edited text>"}  # fmt: skip
    user = (
        f'Error type: {error_type}.\n- For a step (Error_level "Step"): {step_rule}\n'
        f'- For a problem header (Error_level "Problem"): {header_rule}\n\n'
        f"DIALOGUE:\n{gold.dialogue}\n\nCLINICAL NOTE (Assessment and Plan):\n{_note_listing(gold)}\n\n"
        f"Edit exactly these positions, each on its own, so that each contains a {error_type} error:\n"
        + "\n".join(wanted)
        + '\n\nReturn one JSON object {"Swapped_info": [...]} with one item per position, like\n'
        f"{json.dumps(example, ensure_ascii=False)}\n"
        "Leave out Step_no for a problem header. Each New_content is one line, in the style and about the length "
        "of the original. Return nothing but the JSON."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# ------------------------------------------------------------------------------------------- parsing
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_WS = re.compile(r"\s+")


def extract_json(text: str) -> Any:
    """The first JSON object or array in ``text`` (inside a ``` fence if there is one); ValueError if none."""
    if not isinstance(text, str):
        raise ValueError("not text")
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    decoder = json.JSONDecoder()
    for i, char in enumerate(body):
        if char in "{[":
            try:
                return decoder.raw_decode(body[i:])[0]
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON object in the answer")


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip()


def _same(a: str, b: str) -> bool:
    return _WS.sub(" ", a).strip().casefold() == _WS.sub(" ", b).strip().casefold()


def _bad_text(new: str, original: str, token_pattern: re.Pattern[str] | None) -> str | None:
    if not new.strip():
        return "empty"
    if "\n" in new.strip() or "\r" in new:
        return "several lines"
    if len(new) > MAX_LENGTH_FACTOR * len(original) + MAX_LENGTH_SLACK:
        return "too long"
    if token_pattern is not None and token_pattern.search(new):
        return "contains a special-token string"
    return None


def parse_swaps(
    answer: str,
    gold: Note,
    error_type: str,
    targets: Sequence[SwapTarget],
    *,
    token_pattern: re.Pattern[str] | None = None,
) -> list[Swap]:
    """The swaps of one model answer, validated (see the module docstring), in ``targets`` order.

    Raises :class:`LLMRejectedError` whose ``reason`` is one of :data:`ANSWER_REASONS`. ``token_pattern``
    (texts that may not appear) defaults to the Llama-3 special tokens.
    """
    if token_pattern is None:
        token_pattern = _llama3_pattern()
    try:
        return _parse_swaps(answer, gold, error_type, targets, token_pattern)
    except _Invalid as bad:
        raise LLMRejectedError(bad.reason, str(bad), row=f"case {shown_id(gold.case_id)}") from None


@lru_cache(maxsize=1)
def _llama3_pattern() -> re.Pattern[str]:
    return _token_pattern(SpecialTokens.llama3())[0]


def _parse_swaps(answer, gold, error_type, targets, token_pattern) -> list[Swap]:
    try:
        payload = extract_json(answer)
    except ValueError as err:
        raise _Invalid("not_json", str(err)) from None
    items = payload.get("Swapped_info") if isinstance(payload, dict) else payload
    if isinstance(payload, dict) and items is None and "Error_level" in payload:
        items = [payload]  # a single edit without the wrapper
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _Invalid("schema", 'expected {"Swapped_info": [objects]}')
    positions = {(p.no, None): p.header for p in gold.problems}
    positions.update({(p.no, s.no): s.text for p in gold.problems for s in p.steps})
    asked = {(t.problem_no, t.step_no) for t in targets}
    found: dict[tuple[str, str | None], Swap] = {}
    for item in items:
        level, problem_no = item.get("Error_level"), _number(item.get("Problem_no"))
        step_raw = item.get("Step_no")
        step_no = None if step_raw in (None, "") else _number(step_raw)
        original, new = item.get("Original_content"), item.get("New_content")
        if level not in LEVELS or problem_no is None or not isinstance(original, str) or not isinstance(new, str):
            raise _Invalid("schema", "an item lacks Error_level, Problem_no, Original_content or New_content")
        if (level == "Step") != (step_no is not None) or (step_raw not in (None, "") and step_no is None):
            raise _Invalid("schema", f"Step_no does not fit Error_level {level!r}")
        if item.get("Error_type") != error_type:
            raise _Invalid(
                "wrong_error_type", f"asked for {error_type!r}, got {describe_value(item.get('Error_type'))}"
            )
        key = (problem_no, step_no)
        if key not in positions:
            raise _Invalid("unknown_target", f"the note has no {level.lower()} at {key}")
        if key not in asked:
            raise _Invalid("unrequested_target", f"{key} was not asked for")
        if key in found:
            raise _Invalid("duplicate_target", f"{key} edited twice")
        gold_text = positions[key]
        if not _same(original, gold_text):
            raise _Invalid("original_mismatch", f"Original_content at {key} is not the note's text")
        new = new.strip()
        if _same(new, gold_text):
            raise _Invalid("no_change", f"New_content at {key} does not change the text")
        problem = _bad_text(new, gold_text, token_pattern)
        if problem:
            raise _Invalid("bad_text", f"New_content at {key}: {problem}")
        found[key] = Swap(level, problem_no, step_no, error_type, gold_text, new)
    missing = asked - set(found)
    if missing:
        raise _Invalid("missing_target", f"no edit for {sorted(missing, key=str)}")
    return [found[(t.problem_no, t.step_no)] for t in targets]


# ------------------------------------------------------------------------------------------ synthesizer
@dataclass
class _Draft:
    """One sample being made: positions and types chosen, removals chosen, swaps filled in by the model."""

    gold: Note
    targets: list[tuple[SwapTarget, str]]
    step_removals: list[tuple[str, str]]
    problem_removals: list[str]
    swaps: dict[str, list[Swap]] = field(default_factory=dict)  # error type -> swaps
    attempts: Counter = field(default_factory=Counter)  # error type -> answers asked
    reason: str | None = None

    def by_type(self) -> dict[str, list[SwapTarget]]:
        out: dict[str, list[SwapTarget]] = {}
        for target, error_type in self.targets:
            out.setdefault(error_type, []).append(target)
        return out

    def plan(self) -> EditPlan:
        queues = {t: list(s) for t, s in self.swaps.items()}
        swaps = [queues[error_type].pop(0) for _, error_type in self.targets]
        return EditPlan(
            swaps=swaps, step_removals=list(self.step_removals), problem_removals=list(self.problem_removals)
        )


def _weighted_type(rng: random.Random, weights: Mapping[str, float]) -> str:
    kinds = [k for k in ERROR_TYPES if weights.get(k, 0) > 0] or list(ERROR_TYPES)
    return rng.choices(kinds, weights=[weights.get(k, 1.0) for k in kinds])[0]


class LLMErrorSynthesizer:
    """An :class:`~clinrl.prm.synth.inject.ErrorSynthesizer` whose rewrites come from a model (module docstring).

    ``backend``: any :class:`~clinrl.llm.backends.GenerationBackend` (e.g. ``get_backend("openai", …)``).
    ``stats`` counts ``requests`` and, per reason, the invalid answers (``invalid:<reason>``).
    """

    def __init__(self, backend: Any, config: SynthConfig | None = None, llm: LLMSynthConfig | None = None,
                 *, tokens: Any = None):  # fmt: skip

        self.backend = backend
        self.config = config or SynthConfig()
        self.llm = llm or LLMSynthConfig()
        self.tokens = tokens or SpecialTokens.llama3()
        self._token_pattern = _token_pattern(self.tokens)[0]
        self.stats: Counter = Counter()

    # -------------------------------------------------------------- ErrorSynthesizer protocol
    def propose(self, gold: Note, rng: random.Random) -> EditPlan:
        """One edit plan; raises :class:`NoteTooSmallError` or :class:`LLMRejectedError`."""
        draft = self.draft(gold, rng)
        self.fill([draft])
        if draft.reason is not None:
            raise LLMRejectedError(draft.reason, row=f"case {shown_id(gold.case_id)}")
        return draft.plan()

    # -------------------------------------------------------------- batched use
    def draft(self, gold: Note, rng: random.Random) -> _Draft:
        """Positions, error types and removals for one sample (no model call yet)."""
        targets = choose_swap_targets(gold, self.config, rng)
        typed = [
            (t, _weighted_type(rng, self.config.problem_type_weights if t.step_no is None
                               else self.config.step_type_weights))
            for t in targets
        ]  # fmt: skip
        swapped = {(t.problem_no, t.step_no) for t in targets}
        steps, problems = choose_removals(gold, swapped, self.config, rng)
        return _Draft(gold, typed, steps, problems)

    def fill(self, drafts: Sequence[_Draft]) -> None:
        """Ask the model for every draft's swaps, one prompt per (draft, error type), retrying invalid answers;
        a draft that stays invalid gets ``reason`` set."""

        pending = [(d, error_type, targets) for d in drafts for error_type, targets in d.by_type().items()]
        last: dict[tuple[int, str], str] = {}
        for attempt in range(self.llm.max_attempts):
            if not pending:
                break
            prompts = [build_error_prompt(d.gold, error_type, targets) for d, error_type, targets in pending]
            answers = self._generate(prompts, self.llm.sampling_params(attempt))
            still = []
            for (draft, error_type, targets), answer in zip(pending, answers):
                draft.attempts[error_type] += 1
                try:
                    if isinstance(answer, BaseException):
                        raise LLMRejectedError("request_error", type(answer).__name__)
                    draft.swaps[error_type] = parse_swaps(
                        answer, draft.gold, error_type, targets, token_pattern=self._token_pattern
                    )
                except LLMRejectedError as bad:
                    self.stats[f"invalid:{bad.reason}"] += 1
                    last[(id(draft), error_type)] = bad.reason
                    still.append((draft, error_type, targets))
            pending = still
        for draft, error_type, _ in pending:
            draft.reason = draft.reason or last[(id(draft), error_type)]

    def _generate(self, prompts: list[Any], params: Any) -> list[Any]:
        self.stats["requests"] += len(prompts)
        per_prompt = getattr(self.backend, "generate_or_errors", None)  # the HTTP client: failures in place
        try:
            results = per_prompt(prompts, params) if per_prompt is not None else self.backend.generate(prompts, params)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # the whole batch failed (endpoint down): every answer is an error
            return [err] * len(prompts)
        return [r if isinstance(r, BaseException) else (r[0] if r else "") for r in results]


# ------------------------------------------------------------------------------------------ batch driver
@dataclass
class LLMSynthResult:
    """Samples kept, gold notes refused as too small, and every rejected sample with its reason."""

    notes: list[Note] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {case_id, sample_no, reason}
    stats: Counter = field(default_factory=Counter)

    @property
    def rejects_by_reason(self) -> dict[str, int]:
        counts = Counter(r["reason"] for r in self.rejected)
        return {reason: counts[reason] for reason in REJECT_REASONS if counts[reason]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": len(self.notes),
            "rejected": len(self.rejected),
            "rejects_by_reason": self.rejects_by_reason,
            "invalid_answers_by_reason": {
                k.split(":", 1)[1]: v for k, v in sorted(self.stats.items()) if k.startswith("invalid:")
            },  # fmt: skip
            "requests": self.stats["requests"],
            "skipped_too_small": self.skipped,
            "rejected_samples": self.rejected,
        }


def finish_sample(gold: Note, plan: EditPlan, sample_no: int, tokens: Any) -> Note:
    """Apply ``plan`` with our code, then require label consistency (against the gold) and a renderable
    PRM string; raises :class:`LLMRejectedError` (apply_failed / label_inconsistent / unrenderable)."""

    try:
        note = apply_plan(gold, plan, sample_no=sample_no)
    except DataError as err:
        raise LLMRejectedError("apply_failed", str(err)) from None
    if not check_label_consistency([note], {gold.case_id: gold}).ok:
        raise LLMRejectedError("label_inconsistent")
    try:
        render_prm_string(note, tokens, "true")
    except PRMFormatError as err:
        raise LLMRejectedError("unrenderable", str(err)) from None
    return note


def synthesize_with_llm(
    gold_notes: Sequence[Note],
    per_note: int,
    synthesizer: LLMErrorSynthesizer,
    *,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> LLMSynthResult:
    """``per_note`` samples of every gold note (``Sample_no`` 0…per_note-1, with the same random streams as
    the rule-based :func:`~clinrl.prm.synth.inject.synthesize`); rejected samples leave a gap in the numbering and
    are listed with their reason. ``progress`` is called with the number of gold notes finished."""
    if per_note < 0:
        raise ClinrlError(f"per_note must be >= 0, got {per_note}")
    result = LLMSynthResult()
    jobs: list[tuple[int, Note, int]] = []  # (gold index, gold, sample_no)
    for index, gold in enumerate(gold_notes):
        jobs += [(index, gold, k) for k in range(per_note)]
    done_notes: set[int] = set()
    size = synthesizer.llm.batch_size
    for start in range(0, len(jobs), size):
        batch = jobs[start : start + size]
        drafts = []
        for index, gold, k in batch:
            key = gold.case_id or f"#{index}"
            if key in result.skipped:
                continue
            try:
                drafts.append((index, gold, k, synthesizer.draft(gold, _rng(seed, gold, index, k))))
            except NoteTooSmallError:
                if synthesizer.config.on_too_small == "raise":
                    raise
                result.skipped.append(key)
        synthesizer.fill([d for *_, d in drafts])
        for _index, gold, k, draft in drafts:
            try:
                if draft.reason is not None:
                    raise LLMRejectedError(draft.reason)
                result.notes.append(finish_sample(gold, draft.plan(), k, synthesizer.tokens))
            except LLMRejectedError as bad:
                result.rejected.append({"case_id": gold.case_id, "sample_no": k, "reason": bad.reason})
        finished = {index for index, _, k in batch if k == per_note - 1} - done_notes
        done_notes |= finished
        if progress is not None and finished:
            progress(len(finished))
    result.stats.update(synthesizer.stats)
    return result
