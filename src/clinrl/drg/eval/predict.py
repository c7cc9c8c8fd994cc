"""``clinrl drg predict``: the MS-DRG of one note.

A whole discharge summary is cut to its hospital course first (:func:`clinrl.drg.prep.course.extract_course`);
a text without a recognisable course section is used as the course itself. ``n`` samples are drawn
(greedy when ``n == 1`` and no temperature is given); the answer is their majority vote (ties: the
answer voted first; samples without a valid v34 answer do not vote), with the vote distribution as a
confidence and the reasoning of the first sample that gave the winning answer.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from clinrl.drg.eval.evaluate import case_messages, constrain_backend, prompt_budget
from clinrl.drg.eval.metrics import judge, majority
from clinrl.drg.ontology import Ontology, load_ontology
from clinrl.drg.prep.course import extract_course
from clinrl.drg.prompts import parse_completion
from clinrl.errors import ClinrlError
from clinrl.llm.backends import GenerationBackend, SamplingParams

__all__ = ["predict_note", "format_prediction"]


def predict_note(
    backend: GenerationBackend,
    note: str,
    params: SamplingParams,
    *,
    max_prompt_tokens: int | None = None,
    constrained: bool = False,
    ontology: Ontology | None = None,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Predict the DRG of ``note``; returns a JSON-ready dict (``drg`` None when no sample gave a valid
    answer). ``tokenizer`` cuts the course for a backend without its own (a served model)."""

    if not isinstance(note, str) or not note.strip():
        raise ClinrlError("the note is empty")
    onto = ontology if ontology is not None else load_ontology()
    course = extract_course(note)
    text, source = (course.text, f"extracted course ({course.rule})") if course else (note.strip(), "whole text")
    budget = prompt_budget(backend, params, max_prompt_tokens)
    undo = constrain_backend(backend, onto) if constrained else (lambda: None)
    try:
        completions = backend.generate([case_messages(text, backend, budget, tokenizer)], params)[0]
    finally:
        undo()
    judged = [judge(c, onto) for c in completions]
    codes = [j.drg.code if j.drg is not None else None for j in judged]
    winner = majority(codes)
    counts = Counter(c for c in codes if c is not None)
    votes = [
        {"description": onto.by_code(code).description, "code": code, "count": count, "share": count / len(codes)}
        for code, count in sorted(counts.items(), key=lambda kv: (-kv[1], codes.index(kv[0])))
    ]
    result: dict[str, Any] = {
        "input": source,
        "course_words": len(text.split()),
        "n": len(completions),
        "drg": None,
        "reasoning": None,
        "confidence": votes[0]["share"] if votes else 0.0,
        "votes": votes,
        "invalid_samples": sum(c is None for c in codes),
    }
    if winner is not None:
        drg = onto.by_code(winner)
        result["drg"] = {
            "description": drg.description,
            "code": drg.code,
            "mdc": drg.mdc,
            "mdc_name": drg.mdc_name,
            "type": drg.type,
            "weight": drg.weight,
            "gmlos": drg.gmlos,
            "principal": drg.principal,
            "cc_mcc": drg.cc_mcc.label,
        }
        result["reasoning"] = parse_completion(completions[codes.index(winner)]).think
    else:
        result["raw"] = completions[0][:2000]
    return result


def format_prediction(result: dict[str, Any]) -> str:
    """Plain-text rendering of :func:`predict_note`'s result."""
    lines = [f"input: {result['input']} ({result['course_words']} words), {result['n']} sample(s)"]
    drg = result["drg"]
    if drg is None:
        lines.append(f"no valid MS-DRG v34 answer in {result['n']} sample(s)")
        return "\n".join(lines)
    weight = "unknown" if drg["weight"] is None else f"{drg['weight']:.4f}"
    lines += [
        f"DRG {drg['code']}: {drg['description']}",
        f"MDC {drg['mdc']} ({drg['mdc_name']}); relative weight {weight}; CC/MCC: {drg['cc_mcc']}",
        f"confidence {100 * result['confidence']:.0f} % ({len(result['votes'])} distinct answer(s), "
        f"{result['invalid_samples']} invalid)",
    ]
    if result["n"] > 1:
        lines += [f"  {v['count']:>3} × DRG {v['code']}: {v['description']}" for v in result["votes"]]
    if result["reasoning"]:
        lines += ["reasoning:", result["reasoning"]]
    return "\n".join(lines)
