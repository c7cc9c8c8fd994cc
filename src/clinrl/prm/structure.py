"""Free-text Assessment & Plan → :class:`Note` (problems and one-sentence steps), by deterministic rules.

Rules, in order:

1. A leading title ("ASSESSMENT AND PLAN", "A/P:", "# Assessment & Plan", …) is dropped; text after it on
   the same line is kept. Line breaks are normalised; blank lines separate *blocks*.
2. Each line is classified by the first rule that matches (:data:`_LINE_RULES`):
   - lead-in: "Assessment:", "Plan:", "Impression:", "Recommendations:" (plain, bold or as a markdown
     header). Alone on a line it prefixes the next step ("Plan:" + "- Start X." → "Plan: Start X."); with
     text after it, it is kept inside the step text ("Assessment: …"), as in the gold notes;
   - markdown header "# Diabetes", bold header "**Asthma**" / "**Asthma:** text", "Problem #2: …";
   - numbered line "1. Hypertension" / "2) Diabetes: text": a header when its text looks like one (≤ 12 words
     without closing punctuation; ≤ 30 words when bullets or a lead-in follow; or a short "Header: text" /
     "Header - text" prefix) and the current
     problem was itself opened by a numbered line (or there is none); otherwise a bullet;
   - a line "Header:" (≤ 15 words), or "Header: text" at the start of a block (≤ 5 words before the colon,
     not a label such as "Differential diagnosis:" or "Labs:");
   - a bare header-like line (≤ 8 words, capitalised, no closing punctuation) at the start of a block, or
     directly followed by a lead-in or bullet line;
   - bullets "-", "*", "•", "–", "1.", "(a)" … under a header; anything else is text. A text line that
     starts in lower case right after a line without closing punctuation continues it (wrapped text).
3. Every bullet and text unit is split into sentences (:func:`split_sentences`): a break before a capitalised
   "Plan:" / "Assessment:" inside the text, and after . ! ? when the next word starts with a capital, digit,
   quote or bracket, except after titles and Latin abbreviations
   (Dr., Mr., e.g., i.e., vs., approx., "No." before a number). Dose abbreviations ("10 mg.", "b.i.d.")
   end a sentence only when a capital follows; decimals never break.
4. Follow-up: a header "Follow-up", "Follow up instructions", "Followup:", … becomes the problem
   "Follow-up instructions:"; so does a final block (of several) that starts with follow-up wording
   ("Follow up …", "Return to clinic …", "RTC …"). Order is kept as written.
5. Text before the first header (or a note without headers) forms a problem named ``default_header``.

Steps and problems are numbered 1..n and labelled '+'. Markdown emphasis (``**``/``__``) is removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from clinrl.prm.schema import Note, Problem, Step

__all__ = ["DEFAULT_HEADER", "FOLLOW_UP_HEADER", "is_follow_up_header", "split_sentences", "structure_note"]

DEFAULT_HEADER = "Assessment and Plan:"
FOLLOW_UP_HEADER = "Follow-up instructions:"

_TITLE = re.compile(
    r"^\s*(?:#{1,6}\s*)?(?:\*\*|__)?\s*(?:assessment\s*(?:and|&|/)\s*plan|a\s*/\s*p|a\s*&\s*p)\b\s*(?:\*\*|__)?"
    r"\s*:?\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
_LEAD_IN_WORDS = r"assessment|plan|impression|recommendations?|assessment\s+and\s+plan"
_LEAD_IN = re.compile(rf"^(?P<word>{_LEAD_IN_WORDS})\s*:\s*(?P<rest>.*)$", re.IGNORECASE)
_LEAD_IN_HEADER = re.compile(rf"^(?:{_LEAD_IN_WORDS})$", re.IGNORECASE)
_FOLLOW_UP = re.compile(
    r"^(?:follow[\s-]*up(?:\s+(?:instructions?|plan|care|appointments?|visits?|and\s+disposition))?|disposition"
    r"|return\s+precautions)"
    r"\s*:?$",
    re.IGNORECASE,
)
_FOLLOW_UP_TEXT = re.compile(r"^(?:follow[\s-]*up\b|return\s+(?:to|in)\b|rtc\b|see\s+(?:the\s+)?patient\s+back)", re.I)
_NOT_HEADERS = {
    "differential", "differential diagnosis", "differential diagnoses", "ddx", "note", "labs", "lab results",
    "exam", "imaging", "medications", "meds", "history", "hpi", "results", "findings", "goal", "goals",
    "education", "counseling", "orders", "diagnosis", "dx", "rx", "allergies", "vitals",
}  # fmt: skip

_MARKDOWN = re.compile(r"^#{1,6}\s+(?P<h>.+?)\s*#*\s*$")
_BOLD = re.compile(r"^(?:\*\*|__)(?P<h>[^*_]+?)(?:\*\*|__)\s*(?P<rest>.*)$")
_PROBLEM_NO = re.compile(
    r"^(?:#{1,6}\s*)?(?:\*\*|__)?\s*(?:problem|diagnosis|dx)\s*#?\s*\d+\s*[:.)\-–]?\s*(?P<h>.*?)\s*(?:\*\*|__)?\s*$",
    re.IGNORECASE,
)
_NUMBERED = re.compile(r"^\(?\d{1,2}[.)]\s+(?P<h>.+)$")
_BULLET = re.compile(r"^(?:[-*•–‣◦·]|\(?\d{1,2}[.)]|\(?[a-z][.)])\s+(?P<c>.+)$")
_COLON_LINE = re.compile(r"^(?P<h>[^:]{1,200}):\s*(?P<rest>.*)$")
_INLINE_SPLIT = re.compile(r"^(?P<h>[^:]{1,60}?)(?::|\s+[-–]\s+)\s*(?P<rest>\S.*)$")
_EMPHASIS = re.compile(r"(\*\*|__)(.+?)\1")


def is_follow_up_header(header: str) -> bool:
    """Whether a header names the follow-up section ("Follow-up", "Follow up instructions:", …)."""
    return bool(_FOLLOW_UP.match(header.strip().strip("*_#").strip()))


# --------------------------------------------------------------------------------------- sentences
_NO_BREAK_AFTER = {
    "dr", "drs", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "eg", "ie", "cf", "approx",
    "fig", "al", "appt", "dept", "q",
}  # fmt: skip
_BREAK = re.compile(r"[.!?]+[\"'”’)\]]*\s+(?=[A-Z0-9\"'“‘(\[])")
_ENUMERATOR_ONLY = re.compile(r"^(?:\w+\s*:\s*)?\(?\d{1,2}[.)]$")
_INNER_LEAD_IN = re.compile(r"(?<=\S)\s+(?=(?:Assessment|Plan|Impression|Recommendations?)\s*:\s)")


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences (see the module docstring for the rules)."""
    return [s for chunk in _INNER_LEAD_IN.split(text.strip()) for s in _split_chunk(chunk)]


def _split_chunk(text: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _BREAK.finditer(text):
        before = text[start : m.start()]
        word = before.rsplit(" ", 1)[-1].lstrip("([\"'").lower()
        if word in _NO_BREAK_AFTER or (word == "no" and text[m.end() : m.end() + 1].isdigit()):
            continue
        piece = text[start : m.end()].strip()
        if _ENUMERATOR_ONLY.match(piece):
            continue
        out.append(piece)
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


# ------------------------------------------------------------------------------------------- lines
@dataclass
class _Line:
    kind: str  # "header" | "lead_in" | "bullet" | "text"
    text: str  # header text, lead-in word with its colon, or content
    rest: str = ""  # content after a header on the same line
    numbered: bool = False


@dataclass
class _Context:
    at_block_start: bool
    next_line: str | None
    numbered_problem: bool  # the current problem was opened by a numbered line (or there is none)


def _header_like(text: str, max_words: int = 8) -> bool:
    words = text.split()
    return 1 <= len(words) <= max_words and text[-1] not in ".!?;," and (text[0].isupper() or text[0].isdigit())


def _starts_lead_in(line: str) -> bool:
    return bool(_LEAD_IN.match(_EMPHASIS.sub(r"\2", line).lstrip("#").strip()))


def _is_label(text: str) -> bool:
    return text.strip().rstrip(":").strip().lower() in _NOT_HEADERS


def _lead_in(line: str, ctx: _Context) -> _Line | None:
    plain = _EMPHASIS.sub(r"\2", line).lstrip("#").strip()
    m = _LEAD_IN.match(plain)
    if m:
        word = plain[: plain.index(":") + 1].replace(" :", ":")
        return _Line("lead_in", word, m["rest"].strip())
    if _LEAD_IN_HEADER.match(plain.rstrip(":").strip()):  # "Plan", "## Plan", "**Plan**"
        return _Line("lead_in", plain.rstrip(":").strip() + ":")
    return None


def _markdown(line: str, ctx: _Context) -> _Line | None:
    m = _MARKDOWN.match(line)
    return _Line("header", _EMPHASIS.sub(r"\2", m["h"]).strip()) if m else None


def _problem_no(line: str, ctx: _Context) -> _Line | None:
    m = _PROBLEM_NO.match(line)
    if not m:
        return None
    header, rest = m["h"].strip(), ""
    split = _INLINE_SPLIT.match(header)
    if split and not _header_like(header) and len(split["h"].split()) <= 6:
        header, rest = split["h"].strip(), split["rest"]
    return _Line("header", header or line.strip("#*_ :"), rest, numbered=True)


def _bold(line: str, ctx: _Context) -> _Line | None:
    m = _BOLD.match(line)
    head = m["h"].strip() if m else ""
    if not m or not (_header_like(head, 15) or (head.endswith(":") and len(head.split()) <= 30)):
        return None
    rest = m["rest"].lstrip(":").strip()
    header = m["h"].strip() + (":" if m["rest"].startswith(":") else "")
    return _Line("header", header, rest)


def _numbered(line: str, ctx: _Context) -> _Line | None:
    m = _NUMBERED.match(line)
    if not m or not ctx.numbered_problem:
        return None
    content = _EMPHASIS.sub(r"\2", m["h"]).strip()
    following = ctx.next_line or ""
    opens_list = bool(_BULLET.match(following) and not _NUMBERED.match(following)) or _starts_lead_in(following)
    if _header_like(content, 12) or (content.endswith(":") and len(content.split()) <= 15):
        return _Line("header", content, numbered=True)
    if opens_list and len(content.split()) <= 30:
        return _Line("header", content, numbered=True)
    split = _INLINE_SPLIT.match(content)
    if split and len(split["h"].split()) <= 6 and _header_like(split["h"]) and not _is_label(split["h"]):
        return _Line("header", split["h"].strip(), split["rest"], numbered=True)
    return None


def _colon(line: str, ctx: _Context) -> _Line | None:
    m = _COLON_LINE.match(_EMPHASIS.sub(r"\2", line))
    if not m or _BULLET.match(line):
        return None
    head = m["h"].strip()
    if not m["rest"] and len(head.split()) <= 15 and head[:1].isalnum():
        return _Line("header", head + ":")
    short = len(head.split()) <= 5 and _header_like(head) and not _is_label(head)
    if m["rest"] and short and (ctx.at_block_start or _FOLLOW_UP.match(head)):
        return _Line("header", head + ":", m["rest"].strip())
    return None


def _bare(line: str, ctx: _Context) -> _Line | None:
    plain = _EMPHASIS.sub(r"\2", line).strip()
    if not _header_like(plain) or _BULLET.match(line) or ctx.next_line is None:
        return None
    following = ctx.next_line.strip()
    if ctx.at_block_start or _BULLET.match(following) or _starts_lead_in(following):
        return _Line("header", plain)
    return None


def _bullet(line: str, ctx: _Context) -> _Line | None:
    m = _BULLET.match(line)
    return _Line("bullet", _EMPHASIS.sub(r"\2", m["c"]).strip()) if m else None


_LINE_RULES: tuple[Callable[[str, _Context], _Line | None], ...] = (
    _lead_in, _markdown, _problem_no, _bold, _numbered, _colon, _bare, _bullet,
)  # fmt: skip


def _classify(line: str, ctx: _Context) -> _Line:
    for rule in _LINE_RULES:
        found = rule(line, ctx)
        if found is not None:
            return found
    return _Line("text", _EMPHASIS.sub(r"\2", line).strip())


# ----------------------------------------------------------------------------------------- builder
@dataclass
class _Builder:
    default_header: str
    problems: list[tuple[str, list[str]]] = field(default_factory=list)
    numbered: bool = True
    unit: list[str] = field(default_factory=list)  # raw text of the unit being read
    lead_in: str = ""  # a lone "Plan:" waiting for its first step

    def header(self, text: str, numbered: bool) -> None:
        self.flush(final=True)
        if is_follow_up_header(text):
            text = FOLLOW_UP_HEADER
        self.problems.append((text, []))
        self.numbered = numbered

    def start_unit(self, text: str, lead_in: str = "") -> None:
        self.flush()
        if lead_in:
            self.flush(final=True)
            self.lead_in = lead_in
        if text:
            self.unit = [text]

    def continue_unit(self, text: str) -> bool:
        """Join a wrapped line to the unit being read, if it looks like a continuation."""
        if self.unit and text[:1].islower() and self.unit[-1][-1:] not in ".!?:;":
            self.unit.append(text)
            return True
        return False

    def flush(self, final: bool = False) -> None:
        sentences = split_sentences(" ".join(self.unit)) if self.unit else []
        self.unit = []
        if sentences and self.lead_in:
            sentences[0] = f"{self.lead_in} {sentences[0]}"
            self.lead_in = ""
        if final and self.lead_in:  # a lead-in with nothing after it stays as a step of its own
            sentences.append(self.lead_in)
            self.lead_in = ""
        if sentences:
            if not self.problems:
                self.problems.append((self.default_header, []))
            self.problems[-1][1].extend(sentences)

    def note(self, dialogue: str) -> Note:
        self.flush(final=True)
        return Note(
            problems=[
                Problem(header, str(i + 1), [Step(s, str(j + 1)) for j, s in enumerate(steps)])
                for i, (header, steps) in enumerate(self.problems)
            ],
            dialogue=dialogue,
        )


def _blocks(text: str) -> list[list[str]]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    first, _, remainder = text.partition("\n")
    title = _TITLE.match(first)
    if title and (title.end() == len(first) or not first[title.end() - 1].isalnum()):
        text = (first[title.end() :] + "\n" + remainder).strip()
    blocks: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            blocks[-1].append(line.strip())
        elif blocks[-1]:
            blocks.append([])
    return [b for b in blocks if b]


def structure_note(text: str, *, dialogue: str = "", default_header: str = DEFAULT_HEADER) -> Note:
    """Split a free-text Assessment & Plan into problems and one-sentence steps (rules: module docstring)."""
    builder = _Builder(default_header)
    blocks = _blocks(text)
    for b, block in enumerate(blocks):
        for i, raw in enumerate(block):
            ctx = _Context(i == 0, block[i + 1] if i + 1 < len(block) else None, builder.numbered)
            line = _classify(raw, ctx)
            if line.kind == "header":
                builder.header(line.text, line.numbered)
                builder.start_unit(line.rest)
            elif line.kind == "lead_in":
                builder.start_unit(f"{line.text} {line.rest}" if line.rest else "", "" if line.rest else line.text)
            elif line.kind == "bullet" or i == 0 or not builder.continue_unit(line.text):
                starts_follow_up = i == 0 and b == len(blocks) - 1 and b > 0 and _FOLLOW_UP_TEXT.match(line.text)
                if starts_follow_up and (not builder.problems or builder.problems[-1][0] != FOLLOW_UP_HEADER):
                    builder.header(FOLLOW_UP_HEADER, builder.numbered)
                builder.start_unit(line.text)
        builder.flush()
    return builder.note(dialogue)
