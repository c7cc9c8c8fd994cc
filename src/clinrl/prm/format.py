"""The PRM-Clinic training string: render a :class:`Note` as one string with special tokens, parse it back.

Layout (REFERENCE B), with no separators between items::

    PROMPT + DIALOGUE_HEADER + dialogue + NOTE_HEADER
    for each problem:  header PROBLEM label  (step STEP label)*  PROBLEM_COMPLETENESS label
    NOTE_COMPLETENESS label  END_OF_NOTE label  [eos]

A *label slot* follows every structural token; it holds the '+' or '-' token (true labels) or the
PLACEHOLDER token (inference). ``parse_prm_string`` reads placeholders as '+' (a :class:`Note` only has
'+'/'-'); :func:`label_slots` keeps them apart (``label=None``). Texts may not contain a special-token
string: :func:`render_prm_string` refuses such a note, since the string could not be parsed back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from clinrl.errors import DataError
from clinrl.prm.schema import Note, Problem, Step
from clinrl.registry import Registry

__all__ = [
    "DIALOGUE_HEADER",
    "NOTE_HEADER",
    "PROMPT",
    "SLOT_KINDS",
    "LabelSlot",
    "PRMFormatError",
    "SpecialTokens",
    "TokenIds",
    "TokenSlot",
    "label_positions",
    "label_slots",
    "label_token_positions",
    "parse_prm_string",
    "render_prm_string",
]

PROMPT = (
    "You are a physician writing a clinical note based on a dialogue with the patient. Only write the "
    '"ASSESSMENT AND PLAN" part of the notes. Only include information contained in the dialogue.'
)
DIALOGUE_HEADER = "\n###DIALOGUE:\n"
NOTE_HEADER = "\n###CLINICAL NOTE-ASSESSMENT AND PLAN: \n"
_PREFIX = PROMPT + DIALOGUE_HEADER

SlotKind = Literal["problem", "step", "problem_completeness", "note_completeness", "end_of_note"]
SLOT_KINDS: tuple[str, ...] = ("problem", "step", "problem_completeness", "note_completeness", "end_of_note")
LabelMode = Literal["true", "placeholder", "plus"]


class PRMFormatError(DataError):
    """A PRM string (or a note to render as one) does not follow the layout; ``offset`` is a character index."""

    def __init__(self, message: str, *, offset: int | None = None, **where: Any):
        self.offset = offset
        super().__init__(f"{message} (at character {offset})" if offset is not None else message, **where)


# ------------------------------------------------------------------------------------------ tokens
# JSON keys of special_tokens_llama3.json, by field name.
_JSON_KEYS = {
    "plus": "+",
    "minus": "-",
    "problem": "Problem_token",
    "step": "Step_token",
    "problem_completeness": "Problem_completeness_token",
    "note_completeness": "Note_completeness_token",
    "end_of_note": "End_of_note_token",
    "placeholder": "Placeholder_token",
}
_LLAMA3_RESERVED = {
    "plus": 7, "minus": 8, "problem": 1, "step": 2, "problem_completeness": 3,
    "note_completeness": 4, "end_of_note": 5, "placeholder": 6,
}  # fmt: skip


@dataclass(frozen=True)
class SpecialTokens:
    """The eight token strings of the PRM layout. Structural field names equal the slot kinds."""

    plus: str
    minus: str
    problem: str
    step: str
    problem_completeness: str
    note_completeness: str
    end_of_note: str
    placeholder: str

    def __post_init__(self) -> None:
        values = self.all()
        if any(not isinstance(v, str) or not v for v in values):
            raise DataError("special tokens must be non-empty strings")
        for a in values:
            for b in values:
                if a is not b and a in b:
                    raise DataError(f"special token {a!r} is part of {b!r}: the layout would be ambiguous")

    @classmethod
    def llama3(cls) -> SpecialTokens:
        """Llama-3's reserved special tokens, as the study used them (no vocabulary resize needed)."""
        return cls(**{k: f"<|reserved_special_token_{n}|>" for k, n in _LLAMA3_RESERVED.items()})

    @classmethod
    def new(cls, prefix: str = "prm") -> SpecialTokens:
        """Fresh token strings (``<|prm_plus|>`` …) for tokenizers without reserved tokens."""
        return cls(**{f.name: f"<|{prefix}_{f.name}|>" for f in fields(cls)})

    @classmethod
    def from_json(cls, path: str | Path) -> SpecialTokens:
        """Read the study's JSON form (keys "+", "-", "Problem_token", …)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"not readable as JSON: {err}", path=path) from None
        if not isinstance(raw, dict):
            raise DataError("expected a JSON object", path=path)
        values = {}
        for name, key in _JSON_KEYS.items():
            if not isinstance(raw.get(key), str):
                raise DataError("missing or not a string", path=path, field=key)
            values[name] = raw[key]
        try:
            return cls(**values)
        except DataError as err:
            raise DataError(str(err), path=path) from None

    def to_json_dict(self) -> dict[str, str]:
        """The study's JSON form (inverse of :meth:`from_json`)."""
        return {key: getattr(self, name) for name, key in _JSON_KEYS.items()}

    def all(self) -> tuple[str, ...]:
        return tuple(asdict(self).values())

    def label_token(self, label: str | None) -> str:
        """The token for '+', '-' or None (placeholder)."""
        return {"+": self.plus, "-": self.minus, None: self.placeholder}[label]

    def add_to_tokenizer(self, tokenizer: Any, model: Any = None) -> TokenIds:
        """Add the tokens missing from ``tokenizer`` as extra special tokens; grow ``model``'s embeddings to fit.

        Returns the ids; raises :class:`DataError` if a token does not encode to exactly one id.
        """
        vocab = tokenizer.get_vocab()
        missing = [t for t in self.all() if t not in vocab]
        if missing:
            tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
        if model is not None:
            rows = model.get_input_embeddings().weight.shape[0]
            if len(tokenizer) > rows:
                model.resize_token_embeddings(len(tokenizer))
        return TokenIds.from_tokenizer(self, tokenizer)


@dataclass(frozen=True)
class TokenIds:
    """Vocabulary ids of a :class:`SpecialTokens`, same field names."""

    plus: int
    minus: int
    problem: int
    step: int
    problem_completeness: int
    note_completeness: int
    end_of_note: int
    placeholder: int

    @classmethod
    def from_tokenizer(cls, tokens: SpecialTokens, tokenizer: Any) -> TokenIds:
        """Look the ids up, checking that each token encodes to exactly one id."""
        ids = {}
        for name, token in asdict(tokens).items():
            encoded = tokenizer.encode(token, add_special_tokens=False)
            if len(encoded) != 1:
                raise DataError(
                    f"special token {token!r} encodes to {len(encoded)} ids, not 1: add it to the tokenizer "
                    "first (SpecialTokens.add_to_tokenizer)",
                    field=name,
                )
            ids[name] = encoded[0]
        return cls(**ids)


@lru_cache(maxsize=16)
def _token_pattern(tokens: SpecialTokens) -> tuple[re.Pattern[str], dict[str, str]]:
    by_string = {value: name for name, value in asdict(tokens).items()}
    ordered = sorted(by_string, key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in ordered)), by_string


# ------------------------------------------------------------------------------------------ render
def _labeled_items(note: Note) -> Iterator[tuple[str, str, str, str]]:
    """(text, slot kind, label, field for errors) in layout order; the end-of-note label is the outcome."""
    for i, p in enumerate(note.problems):
        yield p.header, "problem", p.label, f"Problems[{i}].Problem"
        for j, s in enumerate(p.steps):
            yield s.text, "step", s.label, f"Problems[{i}].Steps[{j}].Step"
        yield "", "problem_completeness", p.completeness, f"Problems[{i}].Problem_completeness_score"
    yield "", "note_completeness", note.completeness, "Note_completeness_score"
    yield "", "end_of_note", note.outcome_label, "outcome"


_LABEL_MODES: Registry[Any] = Registry("label mode", {
    "true": lambda tokens, label: tokens.label_token(label),
    "placeholder": lambda tokens, label: tokens.placeholder,
    "plus": lambda tokens, label: tokens.plus,
})  # fmt: skip


def render_prm_string(note: Note, tokens: SpecialTokens, labels: LabelMode = "true", *, eos: str | None = None) -> str:
    """The PRM training/inference string of ``note`` (BOS is the tokenizer's job; ``eos`` is appended if given).

    ``labels``: "true" (the note's labels), "placeholder" (PLACEHOLDER in every slot), "plus" ('+' everywhere).
    Raises :class:`PRMFormatError` when a text contains a special token or the dialogue contains NOTE_HEADER.
    """
    label_of = _LABEL_MODES[labels]  # UnknownName (a ValueError) with the choices
    pattern, _ = _token_pattern(tokens)
    row = _row(note)
    if pattern.search(note.dialogue):
        raise PRMFormatError("the dialogue contains a special-token string", row=row, field="Dialogue")
    if (note.dialogue + NOTE_HEADER).find(NOTE_HEADER) != len(note.dialogue):
        raise PRMFormatError("the dialogue contains the note header line", row=row, field="Dialogue")
    parts = [_PREFIX, note.dialogue, NOTE_HEADER]
    expected: list[int] = []  # where each token must start
    pos = sum(len(p) for p in parts)
    where = [(0, pos, "Dialogue")]  # text spans, for errors
    for text, kind, label, field_name in _labeled_items(note):
        if pattern.search(text):
            raise PRMFormatError("the text contains a special-token string", row=row, field=field_name)
        where.append((pos, pos + len(text), field_name))
        pos += len(text)
        structural, label_token = getattr(tokens, kind), label_of(tokens, label)
        expected += [pos, pos + len(structural)]
        parts += [text, structural, label_token]
        pos += len(structural) + len(label_token)
    out = "".join(parts)
    found = [m.start() for m in pattern.finditer(out)]
    if found != expected:  # a text's end and the next token together spell another token
        bad = next(f for f, e in zip(found + [len(out)], expected + [len(out)]) if f != e)
        field_name = next((f for s, e, f in where if s <= bad <= e), "text")
        raise PRMFormatError("a text runs into a special-token string", row=row, field=field_name)
    return out + (eos or "")


def _row(note: Note) -> str | None:
    if not note.case_id:
        return None
    return note.case_id + (f" sample {note.sample_no}" if note.sample_no is not None else "")


# ------------------------------------------------------------------------------------------- parse
@dataclass(frozen=True)
class LabelSlot:
    """One label slot of a PRM string: the structural token's and the label token's character spans.

    ``label`` is '+', '-' or None (placeholder). ``problem`` / ``step`` are 0-based indices (None where n/a).
    """

    kind: str
    index: int
    token_start: int
    token_end: int
    label_start: int
    label_end: int
    label: str | None
    problem: int | None = None
    step: int | None = None


# state -> {structural kind it accepts: (must the text before it be empty, next state)}
_GRAMMAR: dict[str, dict[str, tuple[bool, str]]] = {
    "between": {"problem": (False, "inside"), "note_completeness": (True, "before_end")},
    "inside": {"step": (False, "inside"), "problem_completeness": (True, "between")},
    "before_end": {"end_of_note": (True, "done")},
}
_EXPECTED = {
    "between": "a PROBLEM or NOTE-COMPLETENESS token",
    "inside": "a STEP or PROBLEM-COMPLETENESS token",
    "before_end": "the END-OF-NOTE token",
}
_LABEL_NAMES = {"plus": "+", "minus": "-", "placeholder": None}


def _parse(text: str, tokens: SpecialTokens, eos: str | None) -> tuple[Note, list[LabelSlot]]:
    if not isinstance(text, str):
        raise PRMFormatError(f"expected a string, got {type(text).__name__}")
    if not text.startswith(_PREFIX):
        common = next((i for i, (a, b) in enumerate(zip(text, _PREFIX)) if a != b), min(len(text), len(_PREFIX)))
        raise PRMFormatError("the string does not start with the PRM prompt", offset=common)
    pattern, names = _token_pattern(tokens)
    end = len(text) - len(eos) if eos and text.endswith(eos) else len(text)
    matches = [m for m in pattern.finditer(text, 0, end)]
    first_token = matches[0].start() if matches else end
    header_at = text.find(NOTE_HEADER, len(_PREFIX), end)
    if header_at < 0 or header_at + len(NOTE_HEADER) > first_token:
        if matches and (header_at < 0 or header_at > first_token):
            raise PRMFormatError("special token before the note header", offset=first_token)
        raise PRMFormatError("missing the note header after the dialogue", offset=first_token)
    dialogue = text[len(_PREFIX) : header_at]

    problems: list[Problem] = []
    slots: list[LabelSlot] = []
    state, pos, i = "between", header_at + len(NOTE_HEADER), 0
    completeness = outcome = None
    while i < len(matches):
        m = matches[i]
        name = names[m.group()]
        if state == "done":
            raise PRMFormatError("text after the end-of-note label", offset=pos)
        if name not in _GRAMMAR[state]:
            raise PRMFormatError(f"expected {_EXPECTED[state]}, found {m.group()!r}", offset=m.start())
        must_be_empty, next_state = _GRAMMAR[state][name]
        segment = text[pos : m.start()]
        if must_be_empty and segment:
            raise PRMFormatError(f"unexpected text before {m.group()!r}", offset=pos)
        lab = matches[i + 1] if i + 1 < len(matches) else None
        if lab is None or lab.start() != m.end() or names[lab.group()] not in _LABEL_NAMES:
            raise PRMFormatError(f"expected a label token after {m.group()!r}", offset=m.end())
        label = _LABEL_NAMES[names[lab.group()]]
        value = label or "+"
        if name == "problem":
            problems.append(Problem(header=segment, no=str(len(problems) + 1), label=value))
        elif name == "step":
            steps = problems[-1].steps
            steps.append(Step(text=segment, no=str(len(steps) + 1), label=value))
        elif name == "problem_completeness":
            problems[-1].completeness = value
        elif name == "note_completeness":
            completeness = value
        else:
            outcome = label
        in_problem = name in ("problem", "step", "problem_completeness")
        slots.append(
            LabelSlot(
                kind=name, index=len(slots), token_start=m.start(), token_end=m.end(),
                label_start=lab.start(), label_end=lab.end(), label=label,
                problem=len(problems) - 1 if in_problem else None,
                step=len(problems[-1].steps) - 1 if name == "step" else None,
            )
        )  # fmt: skip
        state, pos, i = next_state, lab.end(), i + 2
    if state != "done":
        raise PRMFormatError(f"the string ends early: expected {_EXPECTED[state]}", offset=end)
    if pos != end:
        raise PRMFormatError("text after the end-of-note label", offset=pos)
    note = Note(problems=problems, completeness=completeness or "+", dialogue=dialogue)
    if outcome is not None and all(s.label is not None for s in slots) and outcome != note.outcome_label:
        raise PRMFormatError(
            f"end-of-note label {outcome!r} contradicts the other labels (outcome {note.outcome_label!r})",
            offset=slots[-1].label_start,
        )
    return note, slots


def parse_prm_string(text: str, tokens: SpecialTokens, *, eos: str | None = None) -> Note:
    """Inverse of :func:`render_prm_string`: the note (problems/steps numbered 1..n) with its labels.

    Placeholder labels read as '+'. A trailing ``eos`` is allowed when given. The end-of-note label must agree
    with the others (it is derived, not stored). Raises :class:`PRMFormatError` with the character offset.
    """
    return _parse(text, tokens, eos)[0]


def label_slots(text: str, tokens: SpecialTokens, *, eos: str | None = None) -> list[LabelSlot]:
    """Every label slot of a PRM string, in order, with character spans (validates the whole string)."""
    return _parse(text, tokens, eos)[1]


# ------------------------------------------------------------------------------------ token indices
@dataclass(frozen=True)
class TokenSlot:
    """A label slot in token space: predict the label at ``token_index`` (the structural token), read it at
    ``label_index`` (= token_index + 1). ``label`` is '+', '-' or None (placeholder)."""

    kind: str
    index: int
    token_index: int
    label_index: int
    label: str | None


def label_token_positions(input_ids: Sequence[int], ids: TokenIds) -> list[TokenSlot]:
    """Label slots of a tokenized PRM string. A structural token at the very end (truncated input) is skipped."""
    names = {v: k for k, v in asdict(ids).items()}
    out: list[TokenSlot] = []
    ids_list = list(input_ids)
    for i, token_id in enumerate(ids_list[:-1]):
        kind = names.get(token_id)
        if kind not in SLOT_KINDS:
            continue
        label_name = names.get(ids_list[i + 1])
        if label_name not in _LABEL_NAMES:
            raise PRMFormatError(f"token {i + 1} after a {kind} token is not a label token")
        out.append(TokenSlot(kind, len(out), i, i + 1, _LABEL_NAMES[label_name]))
    return out


def label_positions(
    text: str, tokens: SpecialTokens, tokenizer: Any, *, eos: str | None = None, add_special_tokens: bool = True
) -> list[TokenSlot]:
    """Label slots of ``text`` as token indices of ``tokenizer(text)`` (a fast tokenizer, for offsets).

    Checks the string's layout first, then that every structural and label token is one token of its own.
    """
    slots = label_slots(text, tokens, eos=eos)
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    index_of = {tuple(span): k for k, span in enumerate(enc["offset_mapping"]) if span[1] > span[0]}
    out = []
    for s in slots:
        at = index_of.get((s.token_start, s.token_end))
        lab = index_of.get((s.label_start, s.label_end))
        if at is None or lab != at + 1:
            raise PRMFormatError(f"the tokenizer splits the {s.kind} slot's tokens", offset=s.token_start)
        out.append(TokenSlot(s.kind, s.index, at, lab, s.label))
    return out
