"""The DRG-coding prompt, shared by SFT, GRPO and inference, and its completion format.

One prompt everywhere: a system prompt fixing the output format, then a user turn with a short MS-DRG
primer, the study's question (REFERENCE A, "Prompting") and the hospital course. The original SFT
omitted the system prompt, so the policy met a new prompt at RL time; here the system turn is on by
default in every stage.

Completion format: ``<think>reasoning</think>`` then ``<answer>DESCRIPTION</answer>``, nothing else.
Parsing is done with plain string scans (no regular expressions), so it is linear in the text length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from clinrl.errors import ClinrlError

__all__ = [
    "CUT_MARKER",
    "DEFAULT_THINK",
    "MS_DRG_PRIMER",
    "QUESTION",
    "SYSTEM_PROMPT",
    "ParsedCompletion",
    "PromptBudgetError",
    "build_messages",
    "build_user_prompt",
    "completion_text",
    "count_prompt_tokens",
    "extract_answer",
    "format_completion",
    "parse_completion",
    "render_prompt",
    "to_rl_rows",
    "to_sft_rows",
    "truncate_course",
]

SYSTEM_PROMPT = (
    "You are an expert clinical coder. Think the case through step by step inside <think> and </think>. "
    "Then write only your final answer inside <answer> and </answer>. Write nothing before <think> "
    "and nothing after </answer>."
)

MS_DRG_PRIMER = (
    "Background: the Medicare Severity Diagnosis Related Groups (MS-DRGs) sort every hospital stay into "
    "one group used for payment. The group follows from the principal diagnosis (the condition that "
    "chiefly caused the admission), any operating-room procedures, and the secondary diagnoses. Many "
    "groups are split by severity: a CC is a complication or comorbidity that adds to the resources a "
    "stay needs, and an MCC is a major complication or comorbidity that adds substantially more. The "
    "description of such a DRG ends with its severity, e.g. WITH MCC, WITH CC, WITH CC/MCC or "
    "WITHOUT CC/MCC."
)

QUESTION = (
    "What is the most likely MS-DRG based on the following discharge summary of a hospitalization? "
    "Provide the complete text description of the DRG code without including the numerical code."
)

DEFAULT_THINK = "The hospital course points to this principal diagnosis and severity level."

CUT_MARKER = "[…]"

TAGS = ("<think>", "</think>", "<answer>", "</answer>")

Strategy = Literal["head", "tail", "head_tail"]


class PromptBudgetError(ClinrlError, ValueError):
    """The prompt cannot fit the token budget, even with an empty course."""


def build_user_prompt(course: str) -> str:
    """The user turn: primer, question, then the hospital course."""
    return f"{MS_DRG_PRIMER}\n\n{QUESTION}\n\nBrief hospital course:\n{course}"


def build_messages(course: str, *, system: bool = True) -> list[dict[str, str]]:
    """Chat messages for ``course``: the system prompt (unless ``system=False``) and the user turn."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}] if system else []
    messages.append({"role": "user", "content": build_user_prompt(course)})
    return messages


def format_completion(answer: str, explanation: str | None = None) -> str:
    """The target completion ``<think>…</think><answer>…</answer>``.

    Without an explanation (None, empty or not a string, e.g. a missing value) the think block holds
    :data:`DEFAULT_THINK` (answer-only SFT). Raises ValueError for an empty answer or if either part
    contains one of the four tags, which would make the target malformed.
    """
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"the gold answer must be a non-empty string, got {answer!r}")
    think = (explanation.strip() if isinstance(explanation, str) else "") or DEFAULT_THINK
    answer = answer.strip()
    for part in (think, answer):
        if any(tag in part for tag in TAGS):
            raise ValueError("explanation and answer must not contain <think>/<answer> tags")
    return f"<think>\n{think}\n</think>\n<answer>{answer}</answer>"


# --------------------------------------------------------------------------- rendering and truncation


def render_prompt(course: str, tokenizer: Any, *, system: bool = True) -> str:
    """The prompt text as the model sees it: the chat template with a generation prompt if the
    tokenizer has one, else system prompt and user turn joined by a blank line."""
    messages = build_messages(course, system=system)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages)


def count_prompt_tokens(course: str, tokenizer: Any, *, system: bool = True) -> int:
    """Number of tokens of :func:`render_prompt` (a chat template brings its own special tokens; plain
    text is encoded with the tokenizer's usual special tokens)."""
    templated = bool(getattr(tokenizer, "chat_template", None))
    text = render_prompt(course, tokenizer, system=system)
    return len(tokenizer(text, add_special_tokens=not templated)["input_ids"])


def _spans(course: str, tokenizer: Any) -> list[tuple[int, int]]:
    """Character span of each course token, from a fast tokenizer's offset mapping."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("truncate_course needs a fast tokenizer (one that returns offset mappings)")
    enc = tokenizer(course, add_special_tokens=False, return_offsets_mapping=True)
    return [tuple(span) for span in enc["offset_mapping"]]


def _cut(course: str, spans: list[tuple[int, int]], keep: int, strategy: Strategy) -> str:
    """``course`` reduced to about ``keep`` tokens on token boundaries, the cut marked."""
    n = len(spans)
    if strategy == "head":
        return f"{course[: spans[keep - 1][1]].rstrip()} {CUT_MARKER}" if keep else CUT_MARKER
    if strategy == "tail":
        return f"{CUT_MARKER} {course[spans[n - keep][0] :].lstrip()}" if keep else CUT_MARKER
    front, back = (keep + 1) // 2, keep // 2
    head = course[: spans[front - 1][1]].rstrip() if front else ""
    tail = course[spans[n - back][0] :].lstrip() if back else ""
    return " ".join(part for part in (head, CUT_MARKER, tail) if part)


def truncate_course(
    course: str,
    tokenizer: Any,
    max_prompt_tokens: int,
    strategy: Strategy = "head",
    *,
    system: bool = True,
) -> str:
    """Cut ``course`` so that the whole rendered prompt fits ``max_prompt_tokens``.

    ``head`` keeps the start, ``tail`` the end, ``head_tail`` both halves; the cut is marked with
    :data:`CUT_MARKER`. Cuts fall on token boundaries and the kept length is found by binary search on
    the real rendered prompt, so template and merge effects are accounted for. A course that already
    fits is returned unchanged. Raises :class:`PromptBudgetError` when even an empty course does not fit.
    """
    if strategy not in ("head", "tail", "head_tail"):
        raise ValueError(f"unknown truncation strategy {strategy!r}; use head, tail or head_tail")

    def fits(text: str) -> bool:
        return count_prompt_tokens(text, tokenizer, system=system) <= max_prompt_tokens

    if fits(course):
        return course
    empty = count_prompt_tokens("", tokenizer, system=system)
    if empty > max_prompt_tokens:
        raise PromptBudgetError(
            f"max_prompt_tokens={max_prompt_tokens} is too small: the prompt without any course text "
            f"already takes {empty} tokens"
        )
    spans = _spans(course, tokenizer)
    lo, hi = -1, len(spans) - 1  # invariant: keep=lo fits (or is the sentinel), keep=hi+1 does not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(_cut(course, spans, mid, strategy)):
            lo = mid
        else:
            hi = mid - 1
    return _cut(course, spans, lo, strategy) if lo >= 0 else ""


# --------------------------------------------------------------------------- dataset rows


def _prompt_for(course: str, tokenizer: Any, max_prompt_tokens: int | None, strategy: Strategy) -> list[dict]:
    if tokenizer is not None and max_prompt_tokens is not None:
        course = truncate_course(course, tokenizer, max_prompt_tokens, strategy)
    return build_messages(course)


def _field(example: Mapping[str, Any], key: str, i: int | None) -> Any:
    """Column ``key`` of a single example (``i`` None) or its ``i``-th value in a batch; None if absent."""
    value = example.get(key)
    return value if value is None or i is None else value[i]


def _map_rows(example: Mapping[str, Any], one: Any, text_field: str) -> dict[str, Any]:
    """Apply ``one(index)`` to a single example or to every row of a batched one."""
    if isinstance(example[text_field], str):
        return one(None)
    columns = [one(i) for i in range(len(example[text_field]))]
    return {key: [c[key] for c in columns] for key in (columns[0] if columns else ("prompt",))}


def to_rl_rows(
    example: Mapping[str, Any],
    *,
    tokenizer: Any = None,
    max_prompt_tokens: int | None = None,
    strategy: Strategy = "head",
    text_field: str = "text",
) -> dict[str, Any]:
    """Map a split row (or a batch, with ``datasets.map(batched=True)``) to TRL's conversational
    ``{"prompt": messages}``; the course is truncated when a tokenizer and budget are given. Other
    columns (``solution``, …) are kept by ``datasets.map`` and reach the reward functions."""

    def one(i: int | None) -> dict[str, Any]:
        return {"prompt": _prompt_for(_field(example, text_field, i), tokenizer, max_prompt_tokens, strategy)}

    return _map_rows(example, one, text_field)


def to_sft_rows(
    example: Mapping[str, Any],
    *,
    tokenizer: Any = None,
    max_prompt_tokens: int | None = None,
    strategy: Strategy = "head",
    text_field: str = "text",
    answer_field: str = "solution",
    explanation_field: str = "explanation",
) -> dict[str, Any]:
    """Like :func:`to_rl_rows`, plus ``completion`` = one assistant message holding
    :func:`format_completion` of the gold answer and the explanation column (if present)."""

    def one(i: int | None) -> dict[str, Any]:
        completion = format_completion(_field(example, answer_field, i), _field(example, explanation_field, i))
        return {
            "prompt": _prompt_for(_field(example, text_field, i), tokenizer, max_prompt_tokens, strategy),
            "completion": [{"role": "assistant", "content": completion}],
        }

    return _map_rows(example, one, text_field)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedCompletion:
    """A completion split into its parts.

    ``format_ok`` holds when the text is exactly one think block followed by one answer block, with
    only white space around and between them. ``think``/``answer`` are the (stripped) block contents
    when present — for a malformed text, the first think block and the last answer block — else None.
    ``n_think_blocks``/``n_answer_blocks`` count the opening tags.
    """

    think: str | None
    answer: str | None
    format_ok: bool
    n_think_blocks: int
    n_answer_blocks: int


def _between(text: str, open_tag: str, close_tag: str, *, last: bool) -> str | None:
    start = text.rfind(open_tag) if last else text.find(open_tag)
    if start < 0:
        return None
    start += len(open_tag)
    end = text.find(close_tag, start)
    return None if end < 0 else text[start:end].strip()


def parse_completion(text: str) -> ParsedCompletion:
    """Split a completion into think and answer and check the strict format (never raises)."""
    if not isinstance(text, str):
        text = completion_text(text)
    counts = {tag: text.count(tag) for tag in TAGS}
    think = _between(text, "<think>", "</think>", last=False)
    answer = _between(text, "<answer>", "</answer>", last=True)
    body = text.strip()
    format_ok = (
        all(c == 1 for c in counts.values())
        and body.startswith("<think>")
        and body.endswith("</answer>")
        and body.index("</think>") < body.index("<answer>")
        and body[body.index("</think>") + len("</think>") : body.index("<answer>")].strip() == ""
    )
    return ParsedCompletion(think, answer, format_ok, counts["<think>"], counts["<answer>"])


def extract_answer(text: str | Sequence[Any]) -> str | None:
    """The content of the last ``<answer>…</answer>`` block, stripped, or None (lenient: no format check)."""
    return parse_completion(completion_text(text)).answer


def completion_text(completion: Any) -> str:
    """The text of a completion: a string as is; for chat messages, the last assistant turn's content
    (text parts joined). Anything else yields ``""``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if not isinstance(completion, Sequence):
        return ""
    for message in reversed(completion):
        if isinstance(message, Mapping) and message.get("role", "assistant") == "assistant":
            return _content_text(message.get("content"))
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = [p.get("text") for p in content if isinstance(p, Mapping) and p.get("type", "text") == "text"]
        return "".join(p for p in parts if isinstance(p, str))
    return ""
