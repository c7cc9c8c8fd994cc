"""Rule-based text rewrites that turn a gold header or step into an error of a given type.

One registry maps (level, error type) to weighted operators; each operator returns a changed text or None
when it does not apply, and every (level, type) has a fallback that always changes the text. Nothing here
calls a model: hallucinations add content taken from word tables or from *other* cases (checked against
the dialogue), factual inaccuracies change one fact (dose, number, drug, test, side, negation, timing),
unhelpful rewrites replace specifics by vague templates.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Optional

from clinrl.errors import ClinrlError
from clinrl.prm.synth.lexicon import (
    ADDED_CONDITIONS,
    ADDED_FINDINGS,
    ADDED_PLANS,
    DRUG_CLASSES,
    OPPOSITES,
    PAST_TENSE,
    PLAN_VERBS,
    SUBSTITUTES,
    TEST_GROUPS,
    TIMING_SWAPS,
    VAGUE_HEADERS,
    VAGUE_STEPS,
    content_words,
    step_kind,
    step_prefix,
)

__all__ = ["OPERATORS", "RewriteContext", "RewriteError", "TextPool", "rewrite"]

Operator = Callable[[str, "RewriteContext", random.Random], Optional[str]]


class RewriteError(ClinrlError):
    """No operator could change the text (only for pathological input)."""


# ------------------------------------------------------------------------------------------ context
@dataclass
class TextPool:
    """Headers and steps of many notes, to draw hallucinated content from *other* cases."""

    headers: list[tuple[str, str]] = field(default_factory=list)  # (case_id, header)
    steps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # kind -> (case_id, step)

    @classmethod
    def from_notes(cls, notes: Iterable) -> TextPool:
        pool = cls()
        for note in notes:
            for problem in note.problems:
                if "follow" not in problem.header.lower() and problem.header.strip():
                    pool.headers.append((note.case_id, problem.header))
                for step in problem.steps:
                    if step.text.strip():
                        pool.steps.setdefault(step_kind(step.text), []).append((note.case_id, step.text))
        return pool


@dataclass
class RewriteContext:
    """What an operator may look at besides the text: the dialogue and a pool of other cases."""

    dialogue: str = ""
    case_id: str = ""
    pool: TextPool | None = None
    dialogue_lower: str = field(init=False, repr=False)
    dialogue_words: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dialogue_lower = self.dialogue.lower()
        self.dialogue_words = frozenset(content_words(self.dialogue))

    def support(self, text: str) -> float:
        """Share of the content words of ``text`` that occur in the dialogue (0 when it has none)."""
        words = content_words(text)
        return sum(w in self.dialogue_words for w in words) / len(words) if words else 0.0

    def unsupported(self, term: str) -> bool:
        return term.lower() not in self.dialogue_lower


# ------------------------------------------------------------------------------------------ helpers
def _alternation(terms: Iterable[str]) -> re.Pattern[str]:
    ordered = sorted(set(terms), key=len, reverse=True)
    # ASCII: a case-insensitive Unicode match ("ſ" for "s") would miss the lower-case table key
    return re.compile(r"\b(" + "|".join(re.escape(t) for t in ordered) + r")\b", re.IGNORECASE | re.ASCII)


def _match_case(new: str, old: str) -> str:
    if new in _DISPLAY:
        shown = _DISPLAY[new]
        return shown[:1].upper() + shown[1:] if old[:1].isupper() else shown
    if old.isupper() and len(old) > 1:
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _replace_one(text: str, pattern: re.Pattern[str], choose: Callable[[str], str | None], rng: random.Random):
    """Replace one random match of ``pattern`` with ``choose(match)``; None when nothing applies."""
    matches = list(pattern.finditer(text))
    rng.shuffle(matches)
    for m in matches:
        new = choose(m.group(0).lower())
        if new and new.lower() != m.group(0).lower():
            return text[: m.start()] + _match_case(new, m.group(0)) + text[m.end() :]
    return None


def _pair_map(pairs: Iterable[tuple[str, str]], both: bool = True) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a, b in pairs:
        out.setdefault(a, []).append(b)
        if both:
            out.setdefault(b, []).append(a)
    return out


def _pick(rng: random.Random, options: list[str] | tuple[str, ...], avoid: str = "") -> str | None:
    choices = [o for o in options if o.lower() != avoid.lower()]
    return rng.choice(choices) if choices else None


def _body(text: str) -> tuple[str, str]:
    """Split 'Plan: do x.' into ('Plan: ', 'do x.')."""
    m = re.match(r"^(\s*(?:plan|assessment)\s*:\s*)", text, re.IGNORECASE)
    return (m.group(1), text[m.end() :]) if m else ("", text)


def _keep_colon(new: str, old: str) -> str:
    new = new.rstrip()
    if old.rstrip().endswith(":") and not new.endswith(":"):
        return new + ":"
    if not old.rstrip().endswith(":"):
        return new.rstrip(":")
    return new


_DISPLAY = {  # canonical spelling of table entries that are not plain lower-case words
    "ct scan": "CT scan", "mri": "MRI", "x-ray": "X-ray", "pet scan": "PET scan", "ekg": "EKG", "cbc": "CBC",
    "cmp": "CMP", "bmp": "BMP", "tsh": "TSH", "hemoglobin a1c": "hemoglobin A1c", "type 1": "type 1",
    "type 2": "type 2", "bid": "BID", "tid": "TID", "qid": "QID", "prn": "PRN",
}  # fmt: skip
_DRUG_OF = {d: cls for cls, drugs in DRUG_CLASSES.items() for d in drugs}
_DRUG_RE = _alternation(_DRUG_OF)
_ALL_DRUGS = tuple(_DRUG_OF)
_TEST_OF = {t: group for group in TEST_GROUPS for t in group}
_SUBSTITUTE_OF = {t: group for group in SUBSTITUTES for t in group}
_SUBSTITUTE_RE = _alternation(_SUBSTITUTE_OF)
_TEST_RE = _alternation(_TEST_OF)
_ALL_TESTS = tuple(_TEST_OF)
_OPPOSITE = _pair_map(OPPOSITES)
_OPPOSITE_RE = _alternation(_OPPOSITE)
_TIMING = _pair_map(TIMING_SWAPS, both=False)
_TIMING_RE = _alternation(_TIMING)
_NUMBER_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.]*\d)")
_NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_NUMBER_WORD_RE = _alternation(_NUMBER_WORDS)
_QUALIFIERS = ("Acute", "Chronic", "Suspected", "Resolved", "Recurrent", "Severe", "Mild")
_QUALIFIER_RE = re.compile(r"^\s*(" + "|".join(_QUALIFIERS) + r")\b\s*", re.IGNORECASE)


# ------------------------------------------------------------------------------- factual operators
_SINGULAR_UNITS = re.compile(r"^(\s+)(day|week|month|year|hour|minute|time|tablet|puff|unit|drop)\b", re.I)


_CLOCK = re.compile(r"^\s*(?:a\.?m\.?|p\.?m\.?|o'clock)", re.I)


def _new_count(n: int, rng: random.Random) -> int:
    options = [n * 2, n + 1, n + 5] + ([n // 2, n - 1] if n > 2 else [])
    return rng.choice([o for o in options if o != n and (o != 1 or n == 0)])


def change_number(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """A different dose, count, value or year (digits or number words)."""
    matches = list(_NUMBER_RE.finditer(text))
    if matches:
        m = rng.choice(matches)
        raw = m.group(1)
        value = float(raw)
        if raw.isdigit() and len(raw) == 4 and 1900 <= value <= 2100:  # a year
            new = str(int(value) + rng.choice((-3, -2, -1, 1, 2)))
        elif "." in raw:
            new = f"{value * rng.choice((0.5, 2.0)):g}"
        elif _CLOCK.match(text[m.end(1) :]) and 1 <= value <= 12:  # "10 a.m."
            new = str(int(value) % 12 + rng.choice((1, 2)))
        else:
            new = str(_new_count(int(raw), rng))
        rest = text[m.end(1) :]
        if raw == "1" and (unit := _SINGULAR_UNITS.match(rest)):  # "1 week" -> "2 weeks"
            rest = rest[: unit.end()] + "s" + rest[unit.end() :]
        return text[: m.start(1)] + new + rest
    return _replace_one(text, _NUMBER_WORD_RE, lambda w: _pick(rng, _NUMBER_WORDS[1:], w), rng)


def swap_drug(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Another drug of the same class."""
    return _replace_one(text, _DRUG_RE, lambda d: _pick(rng, DRUG_CLASSES[_DRUG_OF[d]], d), rng)


def swap_test(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Another test of the same kind (CT ↔ MRI, EKG ↔ echocardiogram, …)."""
    return _replace_one(text, _TEST_RE, lambda t: _pick(rng, _TEST_OF[t], t), rng)


def swap_term(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Another specialty, body part, symptom or organ of the same group (knee ↔ hip, cough ↔ wheezing)."""
    return _replace_one(text, _SUBSTITUTE_RE, lambda t: _pick(rng, _SUBSTITUTE_OF[t], t), rng)


def swap_opposite(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Laterality, direction or an opposite condition (left ↔ right, hyper- ↔ hypo-, start ↔ stop)."""
    return _replace_one(text, _OPPOSITE_RE, lambda w: _pick(rng, _OPPOSITE[w], w), rng)


def swap_timing(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """A different duration or frequency (days ↔ weeks, daily → twice daily)."""
    return _replace_one(text, _TIMING_RE, lambda w: _pick(rng, _TIMING[w], w), rng)


_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]
_NEGATION_REMOVALS: tuple[_Rule, ...] = (
    (re.compile(r"\bdenies\b", re.I), lambda m: "reports"),
    (re.compile(r"\bnegative for\b", re.I), lambda m: "positive for"),
    (re.compile(r"\bwithout\b", re.I), lambda m: "with"),
    (re.compile(r"\b(is|are|was|were|will|does|did|should|has|have|had|can|could) not\b", re.I), lambda m: m[1]),
    (re.compile(r"\b(?:do not|no)\s+(?=\w)", re.I), lambda m: ""),
)
_THIRD_PERSON = (
    "shows|reveals|demonstrates|suggests|indicates|includes|requires|needs|takes|uses|presents|notes|endorses"
    "|appears|remains|experiences|feels|wants|smokes|drinks|works|lives|reports"
)
_NEGATION_ADDITIONS: tuple[_Rule, ...] = (
    (re.compile(r"\breports\b", re.I), lambda m: "denies"),
    (re.compile(r"\bpositive for\b", re.I), lambda m: "negative for"),
    (re.compile(r"\b(is|are|was|were|will|should|can|could)\b(?! not)", re.I), lambda m: f"{m[1]} not"),
    (re.compile(r"\b(has|have|had)\s+(?:a|an)\b(?=\s)", re.I), lambda m: f"{m[1]} no"),
    (re.compile(r"\b(has|have|had)(?=\s+(?:been|\w+ed|\w+en)\b)", re.I), lambda m: f"{m[1]} not"),
    (re.compile(rf"\b({_THIRD_PERSON})\b", re.I), lambda m: f"does not {m[1][:-1]}"),
    (_alternation(PAST_TENSE), lambda m: f"did not {PAST_TENSE[m[1].lower()]}"),
)


def toggle_negation(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Remove a negation ("denies", "no", "not", "without") or add one ("is" → "is not", "shows" → …)."""
    options = [(m, rule) for pattern, rule in _NEGATION_REMOVALS + _NEGATION_ADDITIONS if (m := pattern.search(text))]
    if not options:
        return None
    m, rule = rng.choice(options)
    new = rule(m)
    out = text[: m.start()] + (_match_case(new, m.group(0)) if new else "") + text[m.end() :]
    if not new and m.start() == len(_body(text)[0]):  # "No fever." -> "Fever."
        out = out[: m.start()] + out[m.start() : m.start() + 1].upper() + out[m.start() + 1 :]
    return out


_SUBJECTS = frozenset("the this these that his her he she they it there patient patient's we i".split())


def negate_whole(text: str, ctx: RewriteContext, rng: random.Random) -> str:
    """Fallback: negate the whole statement ("Refer to X." → "Do not refer to X.", "MRI." → "No MRI.")."""
    prefix, body = _body(text)
    if re.match(r"if\b[^,]*, \S", body, re.I):  # "If X, return …" -> "If X, do not return …"
        head, tail = body.split(", ", 1)
        negated = negate_whole(tail[:1].upper() + tail[1:], ctx, rng)
        return f"{prefix}{head}, {negated[:1].lower()}{negated[1:]}"
    undone = re.sub(r"^(?:no|do not)\b\s*", "", body, flags=re.I)
    if undone != body:
        return prefix + (undone[:1].upper() + undone[1:] if undone else "Yes.")
    first = body.split(maxsplit=1)[0].lower().strip(",:;.") if body.strip() else ""
    if first in PLAN_VERBS:
        lead = "Do not "
    elif first in _SUBJECTS:
        lead = "It is unlikely that "
    else:
        lead = "No "
    return prefix + lead + (body[:1].lower() + body[1:] if body[1:2].islower() else body)


def qualify_header(text: str, ctx: RewriteContext, rng: random.Random) -> str:
    """Fallback for headers: add or change a qualifier (Acute, Chronic, Suspected, …)."""
    m = _QUALIFIER_RE.match(text)
    if m:
        other = _pick(rng, _QUALIFIERS, m.group(1))
        return f"{other} {text[m.end() :]}"
    return f"{rng.choice(_QUALIFIERS)} {text[:1].lower() + text[1:] if text[1:2].islower() else text}"


def follow_up_header(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Turn a follow-up header into a different kind of instructions."""
    if "follow" not in text.lower():
        return None
    new = rng.choice(("Discharge instructions", "Pre-operative instructions", "Referral instructions"))
    return _keep_colon(new, text)


# ------------------------------------------------------------------------- hallucination operators
def _unsupported_term(options: tuple[str, ...], ctx: RewriteContext, rng: random.Random) -> str:
    for _ in range(6):
        term = rng.choice(options)
        if ctx.unsupported(term):
            return term
    return rng.choice(options)


def _fill(template: str, ctx: RewriteContext, rng: random.Random) -> str:
    return template.format(drug=_unsupported_term(_ALL_DRUGS, ctx, rng), test=_unsupported_term(_ALL_TESTS, ctx, rng))


def add_plan(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Append an order, drug or referral the dialogue does not mention (plan steps)."""
    if step_kind(text) != "plan":
        return None
    for _ in range(4):
        addition = _fill(rng.choice(ADDED_PLANS), ctx, rng)
        if ctx.support(addition) < 0.5:
            break
    base = text.rstrip().rstrip(".")
    if rng.random() < 0.5:
        return f"{base} and {addition}."
    return f"{base}. {addition[:1].upper() + addition[1:]}."


def add_finding(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Append an exam finding or history item the dialogue does not mention (assessment steps)."""
    if step_kind(text) == "plan":
        return None
    options = [f for f in ADDED_FINDINGS if ctx.support(f) < 0.5] or list(ADDED_FINDINGS)
    return f"{text.rstrip().rstrip('.')} {rng.choice(options)}."


def add_content(text: str, ctx: RewriteContext, rng: random.Random) -> str:
    """Fallback: add an unsupported plan item or finding, whichever fits the step."""
    return add_plan(text, ctx, rng) or add_finding(text, ctx, rng) or f"{text} Start warfarin."


def _from_pool(items: list[tuple[str, str]], text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    best, best_support = None, 2.0
    for _ in range(8):
        case_id, candidate = rng.choice(items)
        same_case = bool(ctx.case_id) and case_id == ctx.case_id
        if same_case or candidate.strip().lower() == text.strip().lower():
            continue
        support = ctx.support(candidate)
        if support < best_support:
            best, best_support = candidate, support
        if support < 0.25:
            break
    return best if best is not None and best_support < 0.5 else None


def pool_step(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """A step of the same kind (plan/assessment) taken from another case."""
    if ctx.pool is None or not ctx.pool.steps.get(step_kind(text)):
        return None
    return _from_pool(ctx.pool.steps[step_kind(text)], text, ctx, rng)


def pool_header(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """A problem header taken from another case."""
    if ctx.pool is None or not ctx.pool.headers:
        return None
    new = _from_pool(ctx.pool.headers, text, ctx, rng)
    return _keep_colon(new, text) if new else None


def add_condition(text: str, ctx: RewriteContext, rng: random.Random) -> str:
    """Fallback for headers: add a condition the dialogue does not mention."""
    condition = _unsupported_term(ADDED_CONDITIONS, ctx, rng)
    base = text.rstrip().rstrip(":").rstrip()
    if not base:
        return _keep_colon(condition, text)
    joined = f"{base} and {condition.lower()}" if rng.random() < 0.5 else f"{base}, {condition}"
    return _keep_colon(joined, text)


# ------------------------------------------------------------------------------ unhelpful operators
def vague_step(text: str, ctx: RewriteContext, rng: random.Random) -> str:
    """A vague generic sentence of the same kind ("Plan: Continue medication.")."""
    prefix = step_prefix(text)
    key = f"{prefix}:" if prefix else step_kind(text)
    return _pick(rng, VAGUE_STEPS[key], text) or VAGUE_STEPS["assessment"][0]


_UNITS = re.compile(r"\s*\b\d+(?:\.\d+)?\s*(?:mg|mcg|g|ml|units?|%|puffs?|tablets?)\b", re.I)


_CLAUSE_END = frozenset("in for to with at on after and or due because which that as since until every per".split())


def strip_specifics(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Keep the gist, drop the specifics: doses, drug and test names, everything after the first clause.

    "Return to clinic in 1 week, or sooner if …" → "Return to clinic."
    """
    out = _UNITS.sub("", text)
    out = _DRUG_RE.sub("medication", out)
    out = _TEST_RE.sub("tests", out)
    out = re.sub(r"\s*\([^)]*\)", "", out)
    prefix, body = _body(out)
    kept: list[str] = []
    content = 0
    for word in body.split():
        bare = word.lower().strip(",.;:")
        if content >= 2 and bare in _CLAUSE_END:
            break
        kept.append(word)
        content += bool(content_words(bare))
        if word.endswith((",", ";", ".")) and content >= 2:
            break
    out = prefix + " ".join(kept).rstrip(" ,;.") + "."
    if content < 2 or len(out) >= len(text) - 3:
        return None
    return out


_AREA = re.compile(
    r"\b(heart|cardiac|lung|kidney|renal|liver|skin|knee|hip|back|chest|abdominal|abdomen|eye|ear|throat|foot|"
    r"hand|finger|shoulder|neck|head|bladder|bowel|stomach|breast|prostate|thyroid|blood|joint|bone|nerve|brain|"
    r"spine|urinary|leg|arm|wrist|ankle|elbow|sinus|dental|mental|sleep|weight|mood|memory|bowel|pain)\b",
    re.I,
)


def vague_area_header(text: str, ctx: RewriteContext, rng: random.Random) -> str | None:
    """Keep only the body area of the header ("Right knee pain" → "Knee problem")."""
    areas = _AREA.findall(text)
    if not areas:
        return None
    area = rng.choice(areas).lower()
    form = rng.choice(("{} problem", "{} issue", "Issue with {}", "{} concerns"))
    new = form.format(area)
    return _keep_colon(new[:1].upper() + new[1:], text)


def vague_header(text: str, ctx: RewriteContext, rng: random.Random) -> str:
    """A vague header for the same area ("Hypertension" → "Blood pressure issue")."""
    lower = text.lower()
    for keywords, options in VAGUE_HEADERS:
        if not keywords or any(k in lower for k in keywords):
            choice = _pick(rng, options, text.rstrip(":")) or _pick(rng, VAGUE_HEADERS[-1][1], text.rstrip(":"))
            return _keep_colon(choice or "Issue", text)
    return _keep_colon("Health issue", text)  # pragma: no cover - the last entry always matches


# ------------------------------------------------------------------------------------------ registry
# (level, error type) -> (weighted operators tried in random weighted order, fallback that always changes)
OPERATORS: dict[tuple[str, str], tuple[tuple[tuple[Operator, float], ...], Operator]] = {
    ("Step", "Hallucination"): (((pool_step, 1.0), (add_finding, 1.5), (add_plan, 1.5)), add_content),
    ("Step", "Factual Inaccuracy"): (
        (
            (change_number, 2.0),
            (swap_drug, 2.5),
            (swap_test, 1.5),
            (swap_opposite, 1.5),
            (swap_timing, 1.5),
            (swap_term, 1.0),
            (toggle_negation, 0.6),
        ),
        negate_whole,
    ),  # fmt: skip
    ("Step", "Unhelpful"): (((vague_step, 1.5), (strip_specifics, 1.5)), vague_step),
    ("Problem", "Hallucination"): (((pool_header, 2.0), (add_condition, 1.0)), add_condition),
    ("Problem", "Factual Inaccuracy"): (
        ((swap_opposite, 2.0), (follow_up_header, 2.0), (swap_term, 1.0), (change_number, 1.0), (swap_drug, 1.0)),
        qualify_header,
    ),
    ("Problem", "Unhelpful"): (((vague_header, 1.0), (vague_area_header, 1.0)), vague_header),
}


def _weighted_order(ops: tuple[tuple[Operator, float], ...], rng: random.Random) -> list[Operator]:
    keyed = sorted(ops, key=lambda ow: rng.random() ** (1.0 / ow[1]), reverse=True)
    return [op for op, _ in keyed]


def rewrite(text: str, level: str, error_type: str, ctx: RewriteContext, rng: random.Random) -> str:
    """Rewrite ``text`` (a header when level is 'Problem', else a step) into an error of ``error_type``.

    The result always differs from ``text``; raises :class:`RewriteError` if that proves impossible.
    """
    try:
        ops, fallback = OPERATORS[(level, error_type)]
    except KeyError:
        raise RewriteError(f"no rewrite for level {level!r} and error type {error_type!r}") from None
    for op in _weighted_order(ops, rng):
        new = op(text, ctx, rng)
        if new is not None and new.strip() and new != text:
            return new
    new = fallback(text, ctx, rng)
    if new is None or new == text:
        raise RewriteError(f"could not produce a {error_type} rewrite at {level} level")
    return new
