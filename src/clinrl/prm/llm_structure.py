"""Free-text Assessment & Plan → :class:`~clinrl.prm.schema.Note`, with a language model and a rule fallback.

The model is asked to split the note into problems (a header each) and one-sentence steps, *copying the
text* (:data:`STRUCTURE_PROMPT`), and to answer with JSON ``{"Problems": [{"Problem": …, "Steps": […]}]}``.
:func:`parse_structure` turns an answer into the PRM-Clinic gold schema (numbered 1..n, every label '+') and
loads it with :func:`clinrl.prm.schema.note_from_dict`, so the result is exactly what the rest of the
package reads; then it checks that the model neither invented nor dropped content (content words of the
output found in the source, and source content words covered by the output, both at least
``min_overlap``), that no text is empty or spans several lines, and that the note renders as a PRM string.

:func:`structure_notes` retries an invalid answer up to ``max_attempts`` times, then falls back to the
rule-based :func:`clinrl.prm.structure.structure_note` and counts the fallback by reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrl.errors import ClinrlError
from clinrl.io import read_text_file
from clinrl.llm.base import SamplingOptions
from clinrl.prm.format import PRMFormatError, SpecialTokens, render_prm_string
from clinrl.prm.schema import Note, NoteSchemaError, note_from_dict, save_notes
from clinrl.prm.structure import FOLLOW_UP_HEADER, structure_note
from clinrl.prm.synth.lexicon import content_words
from clinrl.prm.synth.llm_inject import LLMRejectedError, extract_json

__all__ = ["STRUCTURE_PROMPT", "StructureConfig", "StructureResult", "StructureRejected", "parse_structure",
           "structure_files", "structure_notes"]  # fmt: skip

STRUCTURE_PROMPT = (
    "Split the following Assessment and Plan of a clinical note into problems and steps. A problem has a short "
    'header (e.g. "Hypertension:") and ordered steps; a step is one assessment or plan sentence. Put follow-up '
    f'and return instructions under a last problem "{FOLLOW_UP_HEADER}". Copy the text word for word: do not '
    "add, drop, reword or merge anything, only remove list bullets and numbering. Answer with JSON only:\n"
    '{"Problems": [{"Problem": "Hypertension:", "Steps": ["Assessment: ...", "Plan: ..."]}]}\n\n'
    "ASSESSMENT AND PLAN:\n"
)

# Words a structured note may add that the free text need not contain (headers the prompt asks for).
_ALLOWED_NEW = frozenset(content_words(f"{FOLLOW_UP_HEADER} Assessment and Plan"))


class StructureRejected(LLMRejectedError):
    """A model answer that does not give a usable structured note; ``reason`` says why."""


@dataclass(frozen=True)
class StructureConfig(SamplingOptions):
    """Sampling (greedy by default), retries and the faithfulness threshold."""

    max_new_tokens: int = 2048
    max_attempts: int = 2
    min_overlap: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_attempts < 1:
            raise ClinrlError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0.0 <= self.min_overlap <= 1.0:
            raise ClinrlError(f"min_overlap must lie in [0, 1], got {self.min_overlap}")


def _steps_of(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        raise StructureRejected("schema", "Steps must be a list")
    steps = []
    for item in raw:
        text = item.get("Step") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise StructureRejected("schema", "a step is not text")
        steps.append(text)
    return steps


def parse_structure(answer: str, source: str, *, dialogue: str = "", min_overlap: float = 0.9) -> Note:
    """The :class:`Note` in a model answer, validated against the ``source`` free text (module docstring).

    Raises :class:`StructureRejected` (reasons: not_json, schema, empty_text, multiline, invented, dropped,
    unrenderable).
    """

    try:
        payload = extract_json(answer)
    except ValueError as err:
        raise StructureRejected("not_json", str(err)) from None
    problems = payload.get("Problems") if isinstance(payload, dict) else payload
    if not isinstance(problems, list) or not problems or not all(isinstance(p, dict) for p in problems):
        raise StructureRejected("schema", 'expected {"Problems": [objects]} with at least one problem')
    raw = {"Problems": [], "Note_completeness_score": "+", "Dialogue": dialogue}
    for i, problem in enumerate(problems, 1):
        header = problem.get("Problem")
        if not isinstance(header, str):
            raise StructureRejected("schema", "a problem has no header text")
        steps = [
            {"Step": s.strip(), "Step_no": str(j), "Step_score": "+"}
            for j, s in enumerate(_steps_of(problem.get("Steps", [])), 1)
        ]
        raw["Problems"].append({"Problem": header.strip(), "Problem_no": str(i), "Problem_score": "+", "Steps": steps,
                                "Problem_completeness_score": "+"})  # fmt: skip
    try:
        note = note_from_dict(raw)
    except NoteSchemaError as err:  # pragma: no cover - the dict above is built to the schema
        raise StructureRejected("schema", str(err)) from None
    texts = note.items()
    if any(not t for t in texts):
        raise StructureRejected("empty_text", "a header or step is empty")
    if any("\n" in t for t in texts):
        raise StructureRejected("multiline", "a header or step spans several lines")
    source_words = set(content_words(source))
    output_words = [w for w in content_words(" ".join(texts)) if w not in _ALLOWED_NEW]
    if output_words and sum(w in source_words for w in output_words) / len(output_words) < min_overlap:
        raise StructureRejected("invented", "the structured note has words the free text does not")
    covered = set(output_words) | _ALLOWED_NEW
    wanted = content_words(source)
    if wanted and sum(w in covered for w in wanted) / len(wanted) < min_overlap:
        raise StructureRejected("dropped", "the structured note leaves out part of the free text")
    try:
        render_prm_string(note, SpecialTokens.llama3(), "placeholder")
    except PRMFormatError as err:
        raise StructureRejected("unrenderable", str(err)) from None
    return note


@dataclass
class StructureResult:
    """Structured notes (input order), how each was made (``llm`` or ``rule``), and fallback counts."""

    notes: list[Note] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    fallbacks: Counter = field(default_factory=Counter)  # reason -> notes structured by rule instead
    invalid_answers: Counter = field(default_factory=Counter)
    requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "notes": len(self.notes),
            "by_llm": self.sources.count("llm"),
            "by_rule_fallback": self.sources.count("rule"),
            "fallbacks_by_reason": dict(sorted(self.fallbacks.items())),
            "invalid_answers_by_reason": dict(sorted(self.invalid_answers.items())),
            "requests": self.requests,
        }


def structure_notes(
    texts: Sequence[str],
    backend: Any,
    *,
    dialogues: Sequence[str] | None = None,
    config: StructureConfig = StructureConfig(),
) -> StructureResult:
    """Structure every free-text note with the model; notes it cannot do validly are structured by rule."""

    dialogues = list(dialogues) if dialogues is not None else [""] * len(texts)
    if len(dialogues) != len(texts):
        raise ClinrlError(f"{len(texts)} notes but {len(dialogues)} dialogues")
    result = StructureResult()
    done: dict[int, Note] = {}
    last: dict[int, str] = {}
    pending = list(range(len(texts)))
    for attempt in range(config.max_attempts):
        if not pending:
            break
        prompts = [[{"role": "user", "content": STRUCTURE_PROMPT + texts[i].strip()}] for i in pending]
        result.requests += len(prompts)
        answers = _generate(backend, prompts, config.sampling_params(attempt))
        still = []
        for i, answer in zip(pending, answers):
            try:
                if isinstance(answer, BaseException):
                    raise StructureRejected("request_error", type(answer).__name__)
                done[i] = parse_structure(answer, texts[i], dialogue=dialogues[i], min_overlap=config.min_overlap)
            except StructureRejected as bad:
                result.invalid_answers[bad.reason] += 1
                last[i] = bad.reason
                still.append(i)
        pending = still
    for i in range(len(texts)):
        if i in done:
            result.notes.append(done[i])
            result.sources.append("llm")
        else:
            result.notes.append(structure_note(texts[i], dialogue=dialogues[i]))
            result.sources.append("rule")
            result.fallbacks[last[i]] += 1
    return result


def structure_files(
    paths: Sequence[Path],
    out: Path,
    *,
    dialogue: Path | None = None,
    backend: Any = None,
    config: StructureConfig = StructureConfig(),
) -> dict[str, Any]:
    """``clinrl prm structure`` as a call: one free-text note per file → one PRM-Clinic JSON file at ``out``.

    By rule when ``backend`` is None, else by the model with the rule fallback (:func:`structure_notes`).
    Each note's ``Case_id`` is its file's stem and ``Case_no`` its 1-based position; the ``dialogue`` file,
    if any, is stored with every note. Returns the counts (never text)."""

    texts = [read_text_file(path) for path in paths]
    dialog = read_text_file(dialogue, field="--dialogue") if dialogue is not None else ""
    if backend is None:
        structured = [structure_note(text, dialogue=dialog) for text in texts]
        summary: dict[str, Any] = {"notes": len(structured), "by_rule": len(structured)}
    else:
        result = structure_notes(texts, backend, dialogues=[dialog] * len(texts), config=config)
        structured, summary = result.notes, result.to_dict()
    for number, (path, note) in enumerate(zip(paths, structured), 1):
        note.case_id, note.case_no = Path(path).stem, number
    save_notes(structured, out)
    return summary


def _generate(backend: Any, prompts: list[Any], params: Any) -> list[Any]:
    per_prompt = getattr(backend, "generate_or_errors", None)
    try:
        results = per_prompt(prompts, params) if per_prompt is not None else backend.generate(prompts, params)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # the whole batch failed
        return [err] * len(prompts)
    return [r if isinstance(r, BaseException) else (r[0] if r else "") for r in results]
