"""Extract the *Brief Hospital Course* from a MIMIC-IV discharge summary (REFERENCE A, "Data").

A cascade of rules, most conservative first; the first rule whose start and end headers match decides:

1. ``brief_to_admission_meds`` — a "Brief Hospital Course" header up to the next
   "Medications on Admission" header, or its de-identified forms "___ on Admission" and
   "___  on Admission" (MIMIC's de-identification blanks the word "Medications" in some notes);
2. ``brief_to_discharge_meds`` — the same header up to the next "Discharge Medications" header;
3. ``broad`` — a broader start ("HOSPITAL COURSE" in capitals, "rief Hospital Course" anywhere, or a
   "Hospital Course" line) up to the next of many section headers (:data:`SECTION_HEADERS`).

Decisions where the study was silent: the "Brief Hospital Course" start (rules 1-2) and every end
header must begin a line (leading blanks allowed), and an end header must be followed by a colon or
the end of its line, so that prose such as "home medications on admission were held" never cuts a
course short. Headers match case-insensitively, except the broad rule's "HOSPITAL COURSE", which
must be in capitals (in lower case it is ordinary prose). Every rule needs an end header: a section
that runs to the end of the note is not trusted. The first rule whose two headers match decides:
the course is the text between them with white space and the header's colon stripped, and an empty
section means no course (the cascade does not go on to a looser rule).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["COURSE_RULES", "SECTION_HEADERS", "Course", "CourseRule", "extract_course", "word_count"]

# Speed (a benchmark needs thousands of notes/s): every note is searched with a newline prepended,
# so that a line-start header is "\n" + blanks + name, a pattern with a literal first character that
# the regex engine can skip to; case-insensitive text anywhere is found in a lower-case copy.


class _Note:
    """A note prefixed with a newline, with a lazily made lower-case copy of the same length."""

    __slots__ = ("text", "_lower")

    def __init__(self, note: str) -> None:
        self.text = "\n" + note
        self._lower: str | None = None

    def lower(self) -> str | None:
        """The lower-case text, or None where lower-casing changes the length (offsets would drift)."""
        if self._lower is None:
            lowered = self.text.lower()
            self._lower = lowered if len(lowered) == len(self.text) else ""
        return self._lower or None


Finder = Callable[[_Note, int], "tuple[int, int] | None"]  # (start, end) of a header at or after pos


def _pattern(pattern: re.Pattern[str]) -> Finder:
    def find(note: _Note, pos: int) -> tuple[int, int] | None:
        match = pattern.search(note.text, pos)
        return match.span() if match else None

    return find


def _line_header(*names: str, end: str = r"\b") -> Finder:
    """A header that begins a line (leading blanks allowed), case-insensitive, followed by ``end``."""
    alternatives = "|".join(names)
    return _pattern(re.compile(rf"\n[ \t]*(?:{alternatives}){end}", re.IGNORECASE | re.MULTILINE))


def _section_end(*names: str) -> Finder:
    """A line-start header followed by a colon or the end of its line."""
    return _line_header(*names, end=r"[ \t]*(?::|$)")


def _anywhere(literal: str) -> Finder:
    """``literal`` anywhere, case-insensitive."""
    fallback = re.compile(re.escape(literal), re.IGNORECASE)
    lowered = literal.lower()

    def find(note: _Note, pos: int) -> tuple[int, int] | None:
        lower = note.lower()
        if lower is None:
            return _pattern(fallback)(note, pos)
        at = lower.find(lowered, pos)
        return (at, at + len(lowered)) if at >= 0 else None

    return find


def _earliest(*finders: Finder) -> Finder:
    def find(note: _Note, pos: int) -> tuple[int, int] | None:
        spans = [span for f in finders if (span := f(note, pos)) is not None]
        return min(spans) if spans else None

    return find


# Section headers that can follow the hospital course in a discharge summary (regex fragments).
# MIMIC's de-identified "Medications on Admission": "___ on Admission" with one or two spaces.
_DEID_ADMISSION_MEDS = r"___ {1,2}on Admission"

SECTION_HEADERS: tuple[str, ...] = (
    r"Medications on Admission",
    _DEID_ADMISSION_MEDS,
    r"Discharge Medications",
    r"Discharge Diagnos[ie]s",
    r"Discharge Disposition",
    r"___ Disposition",  # de-identified "Discharge Disposition"
    r"Condition on Discharge",
    r"Discharge Condition",
    r"Discharge Instructions",
    r"Discharge Status",
    r"Follow[- ]?up Instructions",
)

_BRIEF_START = _line_header(r"Brief Hospital Course")
_BROAD_START = _earliest(
    _pattern(re.compile(r"HOSPITAL COURSE")),  # capitals anywhere
    _anywhere("rief Hospital Course"),
    _line_header(r"Hospital Course"),
)


class CourseRule(NamedTuple):
    """One step of the cascade: the course runs from ``start`` to the first ``end`` after it."""

    name: str
    start: Finder
    end: Finder


COURSE_RULES: tuple[CourseRule, ...] = (
    CourseRule(
        "brief_to_admission_meds", _BRIEF_START, _section_end(r"Medications on Admission", _DEID_ADMISSION_MEDS)
    ),
    CourseRule("brief_to_discharge_meds", _BRIEF_START, _section_end(r"Discharge Medications")),
    CourseRule("broad", _BROAD_START, _section_end(*SECTION_HEADERS)),
)


@dataclass(frozen=True)
class Course:
    """An extracted hospital course and the name of the rule that found it."""

    text: str
    rule: str


def extract_course(note: str) -> Course | None:
    """The note's hospital course by the first rule of :data:`COURSE_RULES` whose start and end
    headers both match; None if no rule matches or the section it bounds is empty."""
    doc = _Note(note)
    for rule in COURSE_RULES:
        start = rule.start(doc, 0)
        if start is None:
            continue
        end = rule.end(doc, start[1])
        if end is None:
            continue
        text = doc.text[start[1] : end[0]].strip()
        if text.startswith(":"):  # the header's colon
            text = text[1:].lstrip()
        return Course(text, rule.name) if text else None
    return None


def word_count(text: str) -> int:
    """Number of white-space separated words (the study's length unit: courses of ≤ 40 are dropped)."""
    return len(text.split())
