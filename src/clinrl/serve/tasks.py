"""The two task endpoints' work, as plain functions (run on a model worker thread).

- DRG coding: a hospital course (or a whole discharge summary, cut to its course by
  :func:`clinrl.drg.prep.course.extract_course`) → the study's prompt → one greedy completion → parsed and
  matched exactly against MS-DRG v34 (:func:`clinrl.drg.rewards.match_answer`).
- PRM scoring: a note (PRM-Clinic JSON, a rendered PRM string, or free text structured by rule) and its
  dialogue → P(+) at every label slot and the note score (:class:`clinrl.prm.score.PRMScorer`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from clinrl.drg.ontology import load_ontology
from clinrl.drg.prep.course import extract_course
from clinrl.drg.prompts import parse_completion, render_prompt, truncate_course
from clinrl.drg.rewards import match_answer
from clinrl.errors import ClinrlError, DataError
from clinrl.llm.backends import SamplingParams, generate_cancellable
from clinrl.prm.format import PROMPT, parse_prm_string
from clinrl.prm.schema import note_from_dict
from clinrl.prm.score import AGGREGATES, as_note
from clinrl.serve.problems import ApiError
from clinrl.serve.schemas import DRGRequest, PRMRequest

__all__ = ["DRGBudget", "code_drg", "drg_prompt", "drg_result", "resolve_note", "score_note"]


# ------------------------------------------------------------------------------------------ DRG
@dataclass(frozen=True)
class DRGBudget:
    """How large a DRG prompt may be: ``max_prompt_tokens`` (the course is cut to fit), and ``max_course_chars``,
    more characters than the kept head of the course can span (None: unknown). A longer course is cut to it
    before tokenising, so a 1 MB note costs no more than one that just fits; the head that is kept is the
    same either way."""

    max_prompt_tokens: int
    max_course_chars: int | None = None


def drg_prompt(req: DRGRequest, tokenizer: Any, budget: DRGBudget) -> tuple[str, dict[str, Any]]:
    """The rendered prompt and how the course was found (``course_source``, ``truncated``); 413 when the
    prompt cannot be cut to the budget (a tokenizer without offsets)."""

    course, source = req.text, "as_given"
    if req.input in ("auto", "summary"):
        found = extract_course(req.text)
        if found is not None:
            course, source = found.text, f"extracted:{found.rule}"
        elif req.input == "summary":
            raise ApiError(422, "no_course", "no Brief Hospital Course section found in the summary; "
                                             "send the course itself with input='course'")  # fmt: skip
    truncated = False
    if budget.max_course_chars is not None and len(course) > budget.max_course_chars:
        course, truncated = course[: budget.max_course_chars], True
    if getattr(tokenizer, "is_fast", False):
        cut = truncate_course(course, tokenizer, budget.max_prompt_tokens, system=req.system_prompt)
        truncated, course = truncated or cut != course, cut
    prompt = render_prompt(course, tokenizer, system=req.system_prompt)
    n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    if n > budget.max_prompt_tokens:
        raise ApiError(413, "prompt_too_long", f"the DRG prompt has {n} tokens, over the limit of "
                                               f"{budget.max_prompt_tokens}, and this tokenizer cannot cut it")  # fmt: skip
    return prompt, {"course_source": source, "truncated": truncated}


def drg_result(completion: str, ontology: Any) -> dict[str, Any]:
    """Parsed completion → DRG fields (all None when the answer is not a v34 description) plus reasoning."""

    parsed = parse_completion(completion)
    drg = match_answer(parsed.answer, ontology)
    return {
        "description": drg.description if drg else None,
        "code": drg.code if drg else None,
        "mdc": drg.mdc if drg else None,
        "mdc_name": drg.mdc_name if drg else None,
        "weight": drg.weight if drg else None,
        "severity": drg.cc_mcc.label if drg else None,
        "valid": drg is not None,
        "format_ok": parsed.format_ok,
        "answer": parsed.answer,
        "reasoning": parsed.think,
        "completion": completion,
    }


def code_drg(
    backend: Any, req: DRGRequest, budget: DRGBudget, max_new_tokens: int, cancel: threading.Event | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Prompt, generate once, parse and map (see the module docstring); ``cancel`` ends generation early."""

    prompt, info = drg_prompt(req, backend.tokenizer, budget)
    params = SamplingParams(n=1, temperature=req.temperature, top_p=req.top_p,
                            max_new_tokens=min(req.max_tokens, max_new_tokens), seed=req.seed)  # fmt: skip
    completion = generate_cancellable(backend, [prompt], params, cancel)[0][0]
    return {**drg_result(completion, load_ontology()), **info}


# ------------------------------------------------------------------------------------------ PRM
def resolve_note(req: PRMRequest, tokens: Any) -> Any:
    """The request's note as a :class:`clinrl.prm.schema.Note` (422 with the reason when it cannot be read)."""

    kind = req.format
    if kind == "auto":
        if isinstance(req.note, dict):
            kind = "json"
        else:
            markers = (tokens.problem, tokens.step, tokens.note_completeness, tokens.end_of_note)
            kind = "prm_string" if req.note.startswith(PROMPT) or any(m in req.note for m in markers) else "text"
    try:
        if kind == "json":
            if not isinstance(req.note, dict):
                raise ApiError(422, "invalid_note", "format 'json' needs the note as a JSON object")
            raw = dict(req.note)
            if req.dialogue is not None:
                raw["Dialogue"] = req.dialogue
            return note_from_dict(raw)
        if not isinstance(req.note, str):
            raise ApiError(422, "invalid_note", f"format {kind!r} needs the note as a string")
        if kind == "prm_string":
            return as_note(parse_prm_string(req.note, tokens), req.dialogue)
        if not (req.dialogue or "").strip():
            raise ApiError(422, "missing_dialogue", "a free-text note needs the dialogue ('dialogue' field)")
        if not req.note.strip():
            raise ApiError(422, "invalid_note", "the note is empty")
        return as_note(req.note, req.dialogue)
    except DataError as err:
        raise ApiError(422, "invalid_note", f"note not readable as {kind}: {err}") from None


def score_note(scorer: Any, req: PRMRequest) -> dict[str, Any]:
    """Slot scores and note scores for one note (no note text in the answer)."""

    aggregate = req.aggregate or scorer.default_aggregate
    if aggregate not in AGGREGATES:
        raise ApiError(422, "invalid_aggregate", f"aggregate must be one of {', '.join(AGGREGATES)}")
    note = resolve_note(req, scorer.tokens)
    try:
        scored = scorer.score_note(note)
    except ClinrlError as err:
        raise ApiError(422, "invalid_note", f"cannot score this note: {err}") from None
    steps = [{**s.to_dict(), "where": s.where, "log_p": s.log_p} for s in scored.slots]
    rationales = getattr(scored, "rationales", None)  # a judge asked for them (clinrl.prm.judge)
    if rationales is not None:
        for step, why in zip(steps, rationales):
            step["rationale"] = why
    return {
        "score": scored.score(aggregate),
        "aggregate": aggregate,
        "scores": {a: scored.score(a) for a in AGGREGATES},
        "steps": steps,
        "weakest": [s.where for s in scored.weakest(req.weakest)],
        "n_problems": len(note.problems),
        "n_steps": note.n_steps,
        "head": scorer.head,
        "objective": scorer.objective,
    }
