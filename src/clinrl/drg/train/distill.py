"""Chain-of-thought distillation for the DRG SFT cold start (REFERENCE A, "SFT"; ``clinrl drg distill-cot``).

A teacher model (any :class:`~clinrl.llm.backends.GenerationBackend`; the CLI uses the OpenAI-compatible
client) is shown the hospital course *and the gold DRG* and asked to explain the coding as if it did not
know the answer. Two prompt variants (:data:`VARIANTS`):

- ``explain`` — the study's prompt: reason from the course to the given DRG;
- ``differential`` — "differential thinking": the gold plus two deterministic distractors (a sibling with
  another CC/MCC split when one exists, and a DRG of the same MDC with another base DRG), in a seeded
  order; the reasoning must weigh all three and rule two out.

Every answer is parsed with :func:`clinrl.drg.prompts.parse_completion` and checked against the gold with
:func:`clinrl.drg.rewards.match_answer` (exact v34 spelling). A case is *valid* when the format is exact
(one think block, then one answer block), the reasoning is non-empty, and the answer is the gold DRG.
Anything else is retried up to ``max_attempts`` times (a new seed per attempt, so a caching client does not
return the same text), then recorded as a failure with its reason.

Outputs, all beside ``out`` (``cot.jsonl``):

- ``cot.jsonl`` — one JSON line per **valid** case: ``hadm_id``, ``variant``, ``explanation`` (the
  reasoning, tags stripped), ``answer``, ``gold``, ``valid`` (always true here), ``candidates``
  (differential only), ``attempts``, ``model``. Directly usable as the SFT recipe's ``traces:`` file
  (:func:`clinrl.drg.train.sft.read_traces` joins ``explanation`` on ``hadm_id``; the completion becomes
  ``<think>explanation</think><answer>gold</answer>``) — no converter needed. ``answer_first`` flags a
  trace that names the answer within its first 50 words (the study's CoT-first test; counted in the report,
  not filtered);
- ``cot_failures.jsonl`` — one line per case that stayed invalid: ``hadm_id``, ``variant``, ``valid``
  false, ``reason`` (format / empty_reasoning / not_a_drg / wrong_answer), the teacher's last ``answer``
  (cut to 120 characters unless it is a DRG) and ``attempts`` — never the reasoning;
- ``cot_report.json`` — counts (written, failures by reason, requests, torn lines, …).

Resumable: cases whose ``hadm_id`` is already in either JSONL are skipped (``retry_failures`` retries
the failed ones). Every line is appended with flush + fsync as soon as its case is settled; a torn last
line left by a killed run is cut off on the next start and counted. A chunk whose request fails (the
endpoint is down) is counted as ``request_errors`` and left for the next run; several chunks failing in a
row stop the run with a :class:`~clinrl.errors.ClinrlError`, and so does a run in which every request
failed (the report's ``last_request_error`` names the cause: the endpoint and the error, never the prompt).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clinrl.drg.ontology import DRG, Ontology, load_ontology
from clinrl.drg.prep.cases import case_key, read_cases
from clinrl.drg.prompts import SYSTEM_PROMPT, ParsedCompletion, build_user_prompt, parse_completion
from clinrl.drg.rewards import CotFirstPenalty, match_answer
from clinrl.errors import ClinrlError, DataError, check_limit
from clinrl.io import cut_torn_line, read_jsonl, write_json_atomic
from clinrl.llm.base import SamplingOptions
from clinrl.registry import Registry

__all__ = [
    "FAILURE_REASONS",
    "VARIANTS",
    "DistillConfig",
    "build_prompt",
    "check_answer",
    "differential_candidates",
    "distill_cot",
    "sidecar_paths",
]

FAILURE_REASONS = ("format", "empty_reasoning", "not_a_drg", "wrong_answer")
REQUEST_ERROR = "request_error"  # not a failure of the teacher: the case stays missing and is redone next run

EXPLAIN_TASK = (
    "For teaching, you are told the correct answer: the MS-DRG of this hospitalization is\n{gold}\n\n"
    "Write the reasoning that leads from the hospital course to this MS-DRG, step by step, as if you did not "
    "know the answer: identify the principal diagnosis (the condition chiefly responsible for the admission), "
    "any operating-room procedures, and the complications or comorbidities that decide the CC/MCC level. "
    "Do not mention that the answer was given to you. Put the reasoning inside <think> and </think>, then the "
    "DRG description inside <answer> and </answer>, spelled exactly as above, without the DRG number."
)

DIFFERENTIAL_TASK = (
    "For teaching, you are told the correct answer: the MS-DRG of this hospitalization is\n{gold}\n\n"
    "Write the reasoning of a coder who weighs these three candidate MS-DRGs, as if you did not know which one "
    "is correct:\n{candidates}\n\n"
    "Consider each candidate in turn against the hospital course (principal diagnosis, operating-room "
    "procedures, CC/MCC level), explain why two of them do not fit and why the correct one fits best. Do not "
    "mention that the answer was given to you. Put the reasoning inside <think> and </think>, then the DRG "
    "description inside <answer> and </answer>, spelled exactly as above, without the DRG number."
)


def differential_candidates(gold: DRG, ontology: Ontology, key: str, seed: int = 0) -> list[str]:
    """Three candidate descriptions, the gold among them, in a seeded order.

    Distractors: a DRG with the same base DRG but another CC/MCC split (the most common confusion), else
    one of the same MDC with another base DRG; the second distractor comes from the same MDC with another base
    DRG (any other DRG when the MDC has none). Deterministic in ``key`` (the case id) and ``seed``.
    """
    rng = random.Random(f"clinrl-differential|{seed}|{key}")
    others = [d for d in ontology if d.code != gold.code]
    siblings = [d for d in others if d.principal == gold.principal]
    same_mdc = [d for d in others if d.mdc == gold.mdc and d.principal != gold.principal]
    picks: list[DRG] = []
    for pool in (siblings or same_mdc, same_mdc, others):
        pool = [d for d in pool if d not in picks]
        if pool and len(picks) < 2:
            picks.append(rng.choice(pool))
    names = [gold.description] + [d.description for d in picks]
    rng.shuffle(names)
    return names


@dataclass(frozen=True)
class _Variant:
    task: str
    needs_candidates: bool


VARIANTS: Registry[_Variant] = Registry("variant", {
    "explain": _Variant(EXPLAIN_TASK, needs_candidates=False),
    "differential": _Variant(DIFFERENTIAL_TASK, needs_candidates=True),
})  # fmt: skip


def build_prompt(course: str, gold: str, variant: str = "explain", candidates: Sequence[str] = ()) -> list[dict]:
    """Chat messages for the teacher: the project's system prompt and DRG question, then the task."""
    spec = _variant(variant)
    listed = "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(candidates))
    task = spec.task.format(gold=gold, candidates=listed)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{build_user_prompt(course)}\n\n{task}"},
    ]


def _variant(name: str) -> _Variant:
    return VARIANTS[name]


def check_answer(text: str, gold: DRG, ontology: Ontology) -> tuple[str | None, str | None, str | None]:
    """``(reason, reasoning, answer)`` of one teacher output; ``reason`` is None when it is valid.

    Valid: exactly one think block then one answer block, non-empty reasoning, and an answer that spells
    the gold DRG (:func:`~clinrl.drg.rewards.match_answer`: exact v34 text, case and spaces aside).
    """
    parsed = parse_completion(text if isinstance(text, str) else "")
    if not parsed.format_ok:
        return "format", parsed.think, parsed.answer
    if not parsed.think:
        return "empty_reasoning", parsed.think, parsed.answer
    drg = match_answer(parsed.answer, ontology)
    if drg is None:
        return "not_a_drg", parsed.think, parsed.answer
    if drg.code != gold.code:
        return "wrong_answer", parsed.think, parsed.answer
    return None, parsed.think, drg.description


# ------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class DistillConfig(SamplingOptions):
    """Sampling (the study's temperature 0.7 and 2048 tokens) and bookkeeping. ``limit`` caps the cases
    attempted in this run (after skipping done ones); ``chunk_size`` cases are sent per ``generate`` call (the
    client runs them concurrently)."""

    temperature: float = 0.7
    max_new_tokens: int = 2048
    variant: str = "explain"
    max_attempts: int = 3
    chunk_size: int = 8
    limit: int | None = None
    retry_failures: bool = False
    max_failed_chunks: int = 3
    model: str = ""

    def validate(self) -> None:
        _variant(self.variant)
        for name in ("max_attempts", "chunk_size", "max_failed_chunks"):
            if getattr(self, name) < 1:
                raise ClinrlError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_limit(self.limit)


def sidecar_paths(out: str | Path) -> tuple[Path, Path]:
    """``(failures, report)`` paths beside ``out``: ``cot.jsonl`` → ``cot_failures.jsonl``, ``cot_report.json``."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.stem
    return out.with_name(f"{stem}_failures.jsonl"), out.with_name(f"{stem}_report.json")


# ------------------------------------------------------------------------------------------ JSONL files
def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = read_jsonl(path)
    for number, record in records:
        if "hadm_id" not in record:
            raise DataError("not a record with a hadm_id", path=path, row=number, field="hadm_id")
    return [record for _, record in records]


class _Appender:
    """Append JSON lines durably: each line is written, flushed and fsynced on its own."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


# ------------------------------------------------------------------------------------------- the run
def distill_cot(
    backend: Any,
    data: str | Path,
    out: str | Path,
    config: DistillConfig = DistillConfig(),
    *,
    ontology: Ontology | None = None,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Distil reasoning traces for every case of ``data`` not yet in ``out``; returns the report (also
    written to ``cot_report.json``). ``data``: parquet/JSONL with ``hadm_id``, ``text`` and ``solution`` or
    ``description`` (a ``clinrl drg prepare``/``split`` output). ``on_chunk`` is called after each chunk."""
    from tqdm import tqdm

    config.validate()
    onto = ontology if ontology is not None else load_ontology()
    out = Path(out)
    failures_path, report_path = sidecar_paths(out)
    torn = int(cut_torn_line(out)) + int(cut_torn_line(failures_path))
    previous, previous_failures = _read_jsonl(out), _read_jsonl(failures_path)
    variants = {r.get("variant") for r in previous + previous_failures} - {config.variant}
    if variants:
        raise ClinrlError(
            f"{out} holds {', '.join(sorted(map(str, variants)))} traces; use --variant {variants.pop()} or a new --out"
        )
    valid_ids = {case_key(r["hadm_id"]) for r in previous}
    failed_ids = {case_key(r["hadm_id"]) for r in previous_failures} - valid_ids
    done = valid_ids | (set() if config.retry_failures else failed_ids)

    cases = read_cases(data)
    todo = [c for c in cases if c["hadm_id"] not in done]
    skipped = len(cases) - len(todo)
    if config.limit is not None:
        todo = todo[: config.limit]

    counts: Counter = Counter()
    reasons: Counter = Counter()  # final failure reasons, this run
    attempt_reasons: Counter = Counter()  # every invalid answer, this run
    valid_out, failed_out = _Appender(out), _Appender(failures_path)
    failed_chunks_in_row = 0
    interrupted = False
    last_error: str | None = None
    try:
        with tqdm(total=len(todo), desc="distill-cot", unit="case", disable=not progress) as bar:
            for start in range(0, len(todo), config.chunk_size):
                chunk = todo[start : start + config.chunk_size]
                jobs = [_Job.of(case, onto, config) for case in chunk]
                try:
                    _run_chunk(backend, jobs, config, onto, counts, attempt_reasons)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as err:  # the endpoint failed even after the client's retries
                    counts["request_errors"] += len(chunk)
                    last_error = _cause(err)
                    failed_chunks_in_row += 1
                    bar.update(len(chunk))
                    if failed_chunks_in_row >= config.max_failed_chunks:
                        raise ClinrlError(
                            f"{failed_chunks_in_row} chunks in a row failed ({last_error}); "
                            f"rows done so far are saved in {out}, run again to resume"
                        ) from None
                    continue
                failed_chunks_in_row = 0
                for job in jobs:
                    if job.reason == REQUEST_ERROR:
                        counts["request_errors"] += 1
                        last_error = job.error or last_error
                    elif job.reason is None:
                        valid_out.write(job.record(config, valid=True))
                        counts["written"] += 1
                        counts["answer_first"] += job.answer_first
                    else:
                        failed_out.write(job.record(config, valid=False))
                        reasons[job.reason] += 1
                    bar.update(1)
                bar.set_postfix(valid=counts["written"], failed=sum(reasons.values()))
                if on_chunk is not None:
                    on_chunk(len(chunk))
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        valid_out.close()
        failed_out.close()
        report = _report(out, data, config, cases, skipped, todo, counts, reasons, attempt_reasons, torn, interrupted)
        report["last_request_error"] = last_error
        write_json_atomic(report_path, report)
    if todo and counts["request_errors"] == len(todo):
        raise ClinrlError(
            f"every request failed ({len(todo)} cases; last: {last_error}); nothing new was written to {out}; "
            "run again once the endpoint answers"
        )
    return report


def _cause(err: BaseException) -> str:
    """A request failure on one line, cut to 300 characters: the client's errors name the endpoint and the
    HTTP status or transport error, never the prompt; the cap bounds what any other backend says."""
    return " ".join(f"{type(err).__name__}: {err}".split())[:300]


@dataclass
class _Job:
    """One case in flight: its prompt, the attempts made and the outcome."""

    hadm_id: Any
    gold: DRG
    prompt: list[dict]
    candidates: list[str]
    attempts: int = 0
    reason: str | None = "format"
    reasoning: str | None = None
    answer: str | None = None
    answer_first: bool = False
    error: str | None = None  # the cause of a request error

    @classmethod
    def of(cls, case: dict[str, Any], onto: Ontology, config: DistillConfig) -> _Job:
        gold = onto.find(case["solution"])
        if gold is None:
            raise DataError(f"{case['solution']!r} is not an MS-DRG v34 description", row=case["hadm_id"])
        candidates = (
            differential_candidates(gold, onto, str(case["hadm_id"]), config.seed)
            if _variant(config.variant).needs_candidates
            else []
        )
        return cls(case["hadm_id"], gold, build_prompt(case["text"], gold.description, config.variant, candidates),
                   candidates)  # fmt: skip

    def record(self, config: DistillConfig, *, valid: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"hadm_id": self.hadm_id, "variant": config.variant, "valid": valid}
        if valid:
            out.update(
                explanation=self.reasoning,
                answer=self.answer,
                gold=self.gold.description,
                answer_first=self.answer_first,
            )
        else:
            # a wrong answer is a DRG text; anything else may be free text, so only its start is kept
            answer = self.answer if self.reason == "wrong_answer" or self.answer is None else self.answer[:120]
            out.update(reason=self.reason, answer=answer, gold=self.gold.description)
        if self.candidates:
            out["candidates"] = self.candidates
        out.update(attempts=self.attempts, model=config.model)
        return out


def _run_chunk(
    backend: Any, jobs: list[_Job], config: DistillConfig, onto: Ontology, counts: Counter,
    attempt_reasons: Counter,
) -> None:  # fmt: skip
    """Generate for every job, retrying invalid answers up to ``max_attempts`` times each."""
    pending = list(jobs)
    for attempt in range(config.max_attempts):
        if not pending:
            break
        params = config.sampling_params(attempt)
        prompts = [j.prompt for j in pending]
        per_prompt = getattr(backend, "generate_or_errors", None)  # the HTTP client: failures in place
        outputs = per_prompt(prompts, params) if per_prompt is not None else backend.generate(prompts, params)
        if len(outputs) != len(pending):
            raise ClinrlError(f"the backend returned {len(outputs)} results for {len(pending)} prompts")
        counts["requests"] += len(pending)
        if attempt == 0 and all(isinstance(texts, BaseException) for texts in outputs):
            raise outputs[0]
        still = []
        for job, texts in zip(pending, outputs):
            if isinstance(texts, BaseException):  # left for the next run, like a failed chunk
                job.reason, job.error = REQUEST_ERROR, _cause(texts)
                continue
            job.attempts += 1
            job.reason, job.reasoning, job.answer = check_answer(texts[0] if texts else "", job.gold, onto)
            if job.reason is not None:
                attempt_reasons[job.reason] += 1
                still.append(job)
            else:
                job.answer_first = _answer_first(job.reasoning or "", job.answer or "", onto)
        pending = still


def _answer_first(reasoning: str, answer: str, onto: Ontology) -> bool:
    """Whether the answer already appears in the first 50 words of the reasoning (the study's CoT-first test)."""

    return CotFirstPenalty(onto).score(ParsedCompletion(reasoning, answer, True, 1, 1), None) < 0


def _report(out, data, config, cases, skipped, todo, counts, reasons, attempt_reasons, torn, interrupted):
    failures_path, _ = sidecar_paths(out)
    valid = {case_key(r["hadm_id"]) for r in _read_jsonl(out)} if out.is_file() else set()
    failed: dict[Any, str] = {}
    for record in _read_jsonl(failures_path) if failures_path.is_file() else []:
        if case_key(record["hadm_id"]) not in valid:
            failed[case_key(record["hadm_id"])] = record.get("reason", "?")
    ids = {c["hadm_id"] for c in cases}
    return {
        "data": str(data),
        "out": str(out),
        "failures_file": str(failures_path),
        "config": asdict(config),
        "cases": len(cases),
        "skipped_already_done": skipped,
        "attempted_now": len(todo),
        "written_now": counts["written"],
        "failed_now": sum(reasons.values()),
        "failed_now_by_reason": {r: reasons.get(r, 0) for r in FAILURE_REASONS},
        "invalid_answers_by_reason": {r: attempt_reasons.get(r, 0) for r in FAILURE_REASONS},
        "answer_first_now": counts["answer_first"],
        "request_errors": counts["request_errors"],
        "requests": counts["requests"],
        "torn_lines_truncated": torn,
        "interrupted": interrupted,
        "valid_total": len(valid & ids),
        "failed_total": sum(1 for k in failed if k in ids),
        "missing_total": len(ids - valid - set(failed)),
    }
