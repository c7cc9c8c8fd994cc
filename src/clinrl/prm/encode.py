"""Model inputs of a PRM, identical for training and scoring: token ids, label slots and loss targets.

Two input layouts, one per head (:data:`HEADS`):

``causal-lm`` — the study's string (:func:`clinrl.prm.format.render_prm_string`) tokenised as
``[BOS] + tokens(string) [+ EOS when training]``, without a chat template. When the whole string is longer
than ``max_length`` (or the dialogue longer than ``dialogue_max_tokens``), the dialogue keeps its first lines
that fit (whole lines, speaker turns intact); the note is never cut. A note that cannot fit even without a
dialogue raises :class:`PRMInputError`.

``token-classification`` — an encoder (BERT-like, bidirectional) sees one *window* per problem plus one
note-level window, each ``[CLS] note part [SEP] dialogue part [SEP]``:

* problem window: ``header PROBLEM PH  step STEP PH … PROBLEM_COMPLETENESS PH`` (every label is the
  PLACEHOLDER: a bidirectional encoder must never see labels). A problem too long for the note budget
  (``note_fraction`` of the window) is split into several windows at step boundaries; later parts start with
  the header as plain text.
* note-level window: ``NOTE_COMPLETENESS PH END_OF_NOTE PH`` then the note's headers and steps as plain
  text (cut at the note budget).
* with ``mark_unsupported`` = k > 0, each header/step text is followed by ``(unsupported: w1 w2 …)``: up to
  k of its words that the dialogue never uses (:func:`unsupported_words`; stop words and generic note words
  such as "plan" are skipped, number words count as digits); the note-level window lists them for the note.
* ``mark_quantities`` (with ``mark_unsupported``): the list starts with the quantities (number + unit, e.g.
  ``10mg``, ``2week``) that the dialogue never states with that unit, though every single word and number
  may occur in it (:func:`quantities`): a changed dose or interval.
* the dialogue part: the dialogue lines most related to the note part, by lexical overlap (sum of the
  lines' inverse document frequency, within the dialogue, of the words shared with the note part), each
  line cut to ``line_max_tokens``, taken best first while they fit and put back in dialogue order. With
  ``evidence: item`` a problem window's lines are taken round robin over its header and steps (each item's
  best line, then each one's second best, …), so that a step with content of its own gets its own line.

Every text piece is tokenised on its own (``add_special_tokens=False``) and the ids concatenated, so the
result does not depend on how pieces would merge in one string. A window's slots carry the note-wide slot
index (:class:`~clinrl.prm.format.TokenSlot` ``index`` = position in the PRM string's slot order), the
structural token's position (``token_index``: read the logits there) and the label's (``label_index``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from clinrl.errors import DataError
from clinrl.prm.format import NOTE_HEADER, SpecialTokens, TokenIds, TokenSlot, label_token_positions, render_prm_string
from clinrl.prm.schema import Note
from clinrl.registry import Registry

__all__ = [
    "HEADS",
    "LOSS_GROUPS",
    "LOSS_MODES",
    "EncodeSettings",
    "PRMInputError",
    "Window",
    "causal_targets",
    "classification_targets",
    "encode_causal",
    "encode_windows",
    "note_slot_labels",
    "quantities",
    "select_dialogue_lines",
    "unsupported_words",
]

HEADS = ("causal-lm", "token-classification")
LOSS_MODES = ("vanilla", "special_token", "score_token_only")
Head = Literal["causal-lm", "token-classification"]

# loss groups of a causal-LM target position; each trained group is averaged on its own, then summed
GROUP_NONE, GROUP_LABEL, GROUP_STRUCTURAL, GROUP_TEXT = 0, 1, 2, 3
LOSS_GROUPS: Registry[tuple[int, ...]] = Registry("loss_mode", {
    "vanilla": (GROUP_LABEL, GROUP_STRUCTURAL, GROUP_TEXT),  # one mean over all of them (see causal_loss)
    "special_token": (GROUP_LABEL, GROUP_STRUCTURAL),
    "score_token_only": (GROUP_LABEL,),
})  # fmt: skip


class PRMInputError(DataError):
    """A note that cannot be turned into model input (e.g. too long for ``max_length`` without a dialogue)."""


@dataclass(frozen=True)
class EncodeSettings:
    """How inputs are built; saved in ``clinrl_prm.json`` so that scoring rebuilds them exactly."""

    head: Head = "causal-lm"
    max_length: int = 4096
    dialogue_max_tokens: int | None = None
    note_fraction: float = 0.45  # token-classification: share of a window for the note part
    line_max_tokens: int = 64  # token-classification: longest dialogue line kept
    mark_unsupported: int = 0  # token-classification: list up to this many note words the dialogue lacks
    mark_quantities: bool = False  # with mark_unsupported: also list quantities (number + unit) it lacks
    evidence: Literal["problem", "item"] = "problem"  # token-classification: dialogue lines per problem / per item

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length, "dialogue_max_tokens": self.dialogue_max_tokens,
            "note_fraction": self.note_fraction, "line_max_tokens": self.line_max_tokens,
            "mark_unsupported": self.mark_unsupported, "mark_quantities": self.mark_quantities,
            "evidence": self.evidence,
        }  # fmt: skip


@dataclass
class Window:
    """One model input: ``input_ids``, the label ``slots`` it carries, and (encoders) ``token_type_ids``.

    ``note_start`` (causal-LM) is the index of the first note token (after the note header): positions before
    it are prompt and dialogue, masked out of the loss by the notes-only option.
    """

    input_ids: list[int]
    slots: list[TokenSlot]
    token_type_ids: list[int] | None = None
    note_start: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


def note_slot_labels(note: Note) -> list[str]:
    """The note's labels in slot order, end-of-note (outcome) label last."""
    return note.labels() + [note.outcome_label]


def _with_dialogue(note: Note, dialogue: str) -> Note:
    if note.dialogue == dialogue:
        return note
    return Note(problems=note.problems, completeness=note.completeness, dialogue=dialogue, case_id=note.case_id,
                sample_no=note.sample_no, swaps=note.swaps, removals=note.removals)  # fmt: skip


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) if text else []


# ---------------------------------------------------------------------------------------- causal LM
def encode_causal(
    note: Note,
    dialogue: str,
    tokenizer: Any,
    tokens: SpecialTokens,
    ids: TokenIds,
    settings: EncodeSettings,
    *,
    labels: Literal["true", "placeholder", "plus"] = "placeholder",
    orm: bool = False,
    add_eos: bool = False,
) -> Window:
    """The study's input: ``[BOS] + tokens(render_prm_string(note)) [+ EOS]`` with the dialogue cut to fit.

    ``orm=True`` with ``labels="true"`` puts the true label in the end-of-note slot only (placeholders
    elsewhere), as an outcome model must not see step labels.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise PRMInputError("a fast tokenizer is needed (token offsets locate the note in the string)")
    lines = dialogue.split("\n")
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if add_eos and tokenizer.eos_token_id is not None else []
    encoded: dict[int, tuple[str, Any]] = {}  # kept lines -> (string, encoding): each is tokenised once

    def encode(kept: int) -> tuple[str, Any]:
        if kept not in encoded:
            text = render_prm_string(_with_dialogue(note, "\n".join(lines[:kept])), tokens, labels)
            text = _orm_string(text, tokens) if orm and labels == "true" else text
            encoded[kept] = (text, tokenizer(text, add_special_tokens=False, return_offsets_mapping=True))
        return encoded[kept]

    def fits(kept: int) -> bool:
        if settings.dialogue_max_tokens is not None:
            if len(_encode(tokenizer, "\n".join(lines[:kept]))) > settings.dialogue_max_tokens:
                return False
        return len(bos) + len(encode(kept)[1]["input_ids"]) + len(eos) <= settings.max_length

    kept = len(lines)
    if not fits(kept):
        if not fits(0):
            raise PRMInputError(f"the note alone is longer than max_length={settings.max_length} tokens",
                                row=note.case_id or None)  # fmt: skip
        lo, hi = 0, len(lines)  # the most lines that fit (fits is monotone in kept)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        kept = lo
    text, enc = encode(kept)
    input_ids = bos + list(enc["input_ids"]) + eos
    note_char = text.find(NOTE_HEADER) + len(NOTE_HEADER)
    first_note = next((k for k, (_, end) in enumerate(enc["offset_mapping"]) if end > note_char), len(enc["input_ids"]))
    slots = label_token_positions(input_ids, ids)
    extras = {"dialogue_lines_kept": kept, "dialogue_lines": len(lines)}
    return Window(input_ids, slots, None, len(bos) + first_note, extras)


def _orm_string(text: str, tokens: SpecialTokens) -> str:
    """Every label token but the last replaced by the placeholder (the end-of-note slot keeps its label)."""
    cut = text.rfind(tokens.end_of_note)
    head = text[:cut].replace(tokens.plus, tokens.placeholder).replace(tokens.minus, tokens.placeholder)
    return head + text[cut:]


def causal_targets(window: Window, ids: TokenIds, loss_mode: str, *, notes_only: bool, orm: bool) -> list[int]:
    """Loss group of each *target* position t (the token at t+1 predicted from position t), length len-1.

    ``GROUP_LABEL`` marks '+'/'-' targets (end-of-note only for ``orm``), ``GROUP_STRUCTURAL`` the structural
    tokens, ``GROUP_TEXT`` every other token; ``GROUP_NONE`` is not trained. ``loss_mode`` picks the trained
    groups (:data:`LOSS_GROUPS`); ``notes_only`` drops targets before the note (prompt and dialogue).
    """
    LOSS_GROUPS[loss_mode]  # UnknownName (a ValueError) with the choices
    n = len(window.input_ids)
    groups = [GROUP_TEXT] * (n - 1)
    structural = {s.token_index for s in window.slots}
    labelled = {s.label_index for s in window.slots if not orm or s.kind == "end_of_note"}
    all_labels = {s.label_index for s in window.slots}
    for t in range(n - 1):
        target = t + 1
        if target in labelled:
            groups[t] = GROUP_LABEL
        elif target in all_labels:  # an untrained (placeholder) label slot of an ORM string
            groups[t] = GROUP_TEXT
        elif target in structural:
            groups[t] = GROUP_STRUCTURAL
        if notes_only and target < window.note_start:
            groups[t] = GROUP_NONE
    trained = LOSS_GROUPS[loss_mode]
    return [g if g in trained else GROUP_NONE for g in groups]


# ---------------------------------------------------------------------------------- token classification
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be but by do for from had has have he her his i if in is it its me my no not of on or "
    "our she so that the their them then there they this to was we were what when will with you your".split()
)


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) - _STOP


@lru_cache(maxsize=64)
def _dialogue_index(dialogue: str, tokenizer: Any, line_max_tokens: int) -> tuple[Any, ...]:
    """(lines, token ids per line, word set per line, within-dialogue IDF); cached: candidates share dialogues."""
    lines = tuple(line for line in dialogue.split("\n") if line.strip())
    encoded = tokenizer(list(lines), add_special_tokens=False, verbose=False)["input_ids"] if lines else []
    ids = tuple(tuple(e[:line_max_tokens]) for e in encoded)
    words = tuple(frozenset(_words(line)) for line in lines)
    df = Counter(w for ws in words for w in ws)
    idf = {w: math.log((len(lines) + 1) / (c + 0.5)) for w, c in df.items()}  # ~0 for a word in every line
    return lines, ids, words, idf


def select_dialogue_lines(
    query: str | Sequence[str], dialogue: str, tokenizer: Any, budget: int, line_max_tokens: int
) -> list[int]:
    """Ids of the dialogue lines most related to ``query`` that fit ``budget`` tokens, in dialogue order.

    A line's score is the summed within-dialogue IDF of the (non-stop) words it shares with ``query``; ties
    keep the earlier line; once some line is chosen, lines sharing nothing are not added. Lines are cut to
    ``line_max_tokens``.

    ``query`` may be several texts (a problem's header and each of its steps): lines are then taken round
    robin — each text's best line, then each text's second best, … — so that every step gets its own
    evidence. With one query for the whole problem, the lines sharing words with many of its steps win and a
    step with content of its own (where an added finding or a changed dose sits) may get no line at all.
    """
    lines, ids, words, idf = _dialogue_index(dialogue, tokenizer, line_max_tokens)
    queries = [query] if isinstance(query, str) else list(query)
    rankings = []
    for text in queries:
        q = _words(text)
        scores = [sum(idf[w] for w in ws & q) for ws in words]
        rankings.append([(scores[i], i) for i in sorted(range(len(lines)), key=lambda i: (-scores[i], i))])
    chosen: list[int] = []
    used = 0
    for rank in range(len(lines)):
        for ranking in rankings:
            score, i = ranking[rank]
            if (score <= 0 and chosen) or i in chosen:  # nothing shared (once some line is in), or taken
                continue
            if used + len(ids[i]) <= budget:
                chosen.append(i)
                used += len(ids[i])
    out: list[int] = []
    for i in sorted(chosen):
        out += ids[i]
    return out


_TERM = re.compile(r"[a-z]+|[0-9]+")
_NUMBERS = {w: n for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}  # fmt: skip
_NUMBERS.update({w: 10 * k for k, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), start=3)})
_NUMBERS.update({"hundred": 100, "thousand": 1000, "once": 1, "twice": 2, "half": 5})
_ALIASES = {"milligrams": "mg", "milligram": "mg", "micrograms": "mcg", "kilograms": "kg", "pounds": "lbs",
            "percent": "%", "milliliters": "ml", "units": "u"}  # fmt: skip
# words of any A&P note that a dialogue rarely says (most frequent "unsupported" words of gold training notes)
_NOTE_WORDS = frozenset(
    "assessment plan follow up instructions return clinic continue monitor patient reports history obtain "
    "further assess treatment needed currently symptoms provide management consider recommend diagnosis refer "
    "due response differential including start controlled discuss likely evaluation consistent post worsen "
    "also any all been being can may should would which such note noted well order ordered prescribe "
    "prescribed schedule scheduled advise advised recommended patients presents presented evaluate current "
    "include includes exam examination therapy daily experiencing care possible instruct after status recent "
    "perform signs physical suggesting suggestive suggest new encourage risk reveals revealed shows related "
    "closely review sooner consult does office without adjust denies develop supportive increased improve "
    "following ensure cause causes avoid progress options use medication associated other findings potential "
    "medical necessary seen qday mg bid q x".split()
)


@lru_cache(maxsize=64)
def _dialogue_terms(dialogue: str) -> frozenset:
    words = _TERM.findall(dialogue.lower())
    out = set(words)
    for i, w in enumerate(words):
        if w in _NUMBERS:
            value = _NUMBERS[w]
            out.add(str(value))
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if 20 <= value < 100 and _NUMBERS.get(nxt, 10) < 10:
                out.add(str(value + _NUMBERS[nxt]))
        if w in _ALIASES:
            out.add(_ALIASES[w])
    return frozenset(out)


# units a quantity is compared by (a note's "20mg" against a dialogue's "twenty milligrams"), canonical forms
_UNITS = {
    **{u: "mg" for u in ("mg", "milligram", "milligrams", "mgs")}, **{u: "mcg" for u in ("mcg", "microgram", "micrograms")},
    **{u: "g" for u in ("g", "gram", "grams")}, **{u: "kg" for u in ("kg", "kilo", "kilos", "kilogram", "kilograms")},
    **{u: "lb" for u in ("lb", "lbs", "pound", "pounds")}, **{u: "ml" for u in ("ml", "milliliter", "milliliters", "cc")},
    **{u: "u" for u in ("u", "unit", "units", "iu")}, **{u: "%" for u in ("%", "percent")}, "gy": "gy", "mmhg": "mmhg",
    **{u: "hour" for u in ("h", "hr", "hrs", "hour", "hours")}, **{u: "day" for u in ("day", "days")},
    **{u: "week" for u in ("wk", "wks", "week", "weeks")}, **{u: "month" for u in ("mo", "month", "months")},
    **{u: "year" for u in ("yr", "yrs", "year", "years")}, **{u: "time" for u in ("time", "times", "x")},
    **{u: "tablet" for u in ("tablet", "tablets", "tab", "tabs", "pill", "pills", "capsule", "capsules")},
    **{u: "mile" for u in ("mile", "miles")}, **{u: "minute" for u in ("min", "mins", "minute", "minutes")},
}  # fmt: skip
_QTY_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+|%")


def _numbers_as_digits(text: str) -> list[str]:
    """Lower-cased tokens (digit runs, words, '%') with number words turned into digits ("twenty five" → 25)."""
    out: list[str] = []
    for w in _QTY_TOKEN.findall(text.lower()):
        value = _NUMBERS.get(w)
        if value is None or w in ("once", "twice", "half"):
            out.append(w)
        elif out and value < 10 and out[-1].isdigit() and 20 <= int(out[-1]) < 100 and int(out[-1]) % 10 == 0:
            out[-1] = str(int(out[-1]) + value)
        else:
            out.append(str(value))
    return out


def quantities(text: str) -> list[str]:
    """The quantities of ``text`` as "number unit" strings in order ("20 mg", "2 week"): a number followed by a
    known unit (:data:`_UNITS`), number words read as digits; a bare number is not a quantity."""
    words = _numbers_as_digits(text)
    out: list[str] = []
    for i in range(len(words) - 1):
        if words[i][0].isdigit() and words[i + 1] in _UNITS:
            q = f"{words[i]} {_UNITS[words[i + 1]]}"
            if q not in out:
                out.append(q)
    return out


@lru_cache(maxsize=64)
def _dialogue_quantities(dialogue: str) -> frozenset:
    return frozenset(quantities(dialogue))


def unsupported_words(text: str, dialogue: str, limit: int, *, with_quantities: bool = False) -> list[str]:
    """Up to ``limit`` words of ``text`` (in order, each once) that ``dialogue`` never uses: letters and digit
    runs compared lower-cased, number words in the dialogue counted as digits, a plural 's' ignored; stop
    words and generic note words are never listed.

    ``with_quantities``: first the quantities of ``text`` (:func:`quantities`, written "20mg") that the dialogue
    never states with that unit, although their number may occur elsewhere in it — a changed dose or interval
    ("lisinopril 10mg" for the dialogue's "twenty milligrams", "in 1 month" for "in two weeks") leaves every
    single word supported, which word overlap alone cannot see."""
    terms = _dialogue_terms(dialogue)
    out: list[str] = []
    if with_quantities:
        stated = _dialogue_quantities(dialogue)
        out += [q.replace(" ", "") for q in quantities(text) if q not in stated][:limit]
    for w in _TERM.findall(text.lower()):
        if len(out) >= limit:
            break
        if w in _STOP or w in _NOTE_WORDS or w in terms or w in out:
            continue
        if (w.endswith("s") and w[:-1] in terms) or w + "s" in terms:
            continue
        out.append(w)
    return out


def _marked(text: str, dialogue: str, limit: int, with_quantities: bool = False) -> str:
    if limit <= 0:
        return text
    words = unsupported_words(text, dialogue, limit, with_quantities=with_quantities)
    return f"{text} (unsupported: {' '.join(words)})" if words else text


@dataclass
class _Part:
    """A note part: (text, structural kind, note-wide slot index) pieces and the text to retrieve lines by."""

    pieces: list[tuple[str, str, int]]
    query: str
    items: list[str] = field(default_factory=list)  # the header and step texts, unmarked


def _note_parts(note: Note, dialogue: str, mark: int, qty: bool = False) -> list[_Part]:
    problems: list[_Part] = []
    slot = 0
    for p in note.problems:
        pieces: list[tuple[str, str, int]] = [(_marked(p.header, dialogue, mark, qty), "problem", slot)]
        slot += 1
        for s in p.steps:
            pieces.append((_marked(s.text, dialogue, mark, qty), "step", slot))
            slot += 1
        pieces.append(("", "problem_completeness", slot))
        slot += 1
        items = [p.header] + [s.text for s in p.steps]
        problems.append(_Part(pieces, "\n".join(items), items))
    note_level = _Part([("", "note_completeness", slot), ("", "end_of_note", slot + 1)], note.text())
    return problems + [note_level]


def encode_windows(
    note: Note,
    dialogue: str,
    tokenizer: Any,
    tokens: SpecialTokens,
    ids: TokenIds,
    settings: EncodeSettings,
) -> list[Window]:
    """The encoder windows of ``note`` (see the module docstring); every slot of the note is in exactly one."""
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls_id is None or sep_id is None:
        raise PRMInputError("the tokenizer has neither CLS/SEP nor BOS/EOS tokens")
    note_budget = max(16, int(settings.max_length * settings.note_fraction))
    windows: list[Window] = []
    parts = _note_parts(note, dialogue, settings.mark_unsupported, settings.mark_quantities)
    for part in parts[:-1]:
        for chunk in _chunk_problem(part, tokenizer, ids, note_budget):
            query = part.items if settings.evidence == "item" else part.query
            windows.append(_assemble(chunk, query, dialogue, tokenizer, settings, cls_id, sep_id))
    # note-level: the two slots first, then the note text as context, cut to the note budget
    note_part = parts[-1]
    body: list[int] = []
    slots: list[tuple[int, int, str]] = []
    for _, kind, slot in note_part.pieces:
        slots.append((len(body), slot, kind))
        body += [getattr(ids, kind), ids.placeholder]
    context = note_part.query
    if settings.mark_unsupported > 0:
        words = unsupported_words(
            note_part.query, dialogue, 4 * settings.mark_unsupported, with_quantities=settings.mark_quantities
        )
        context = f"(unsupported: {' '.join(words)}) {context}" if words else context
    text_ids = _encode(tokenizer, context)[: max(0, note_budget - len(body))]
    windows.append(_assemble((body + text_ids, slots), note_part.query, dialogue, tokenizer, settings, cls_id, sep_id))
    return windows


_Chunk = tuple[list[int], list[tuple[int, int, str]]]  # note-part ids, [(position, slot index, kind)]


def _chunk_problem(part: _Part, tokenizer: Any, ids: TokenIds, budget: int) -> list[_Chunk]:
    """Split a problem's pieces into chunks of at most ``budget`` tokens."""
    header_text = part.pieces[0][0]
    chunks: list[_Chunk] = []
    current: list[int] = []
    slots: list[tuple[int, int, str]] = []
    for text, kind, slot in part.pieces:
        piece = _encode(tokenizer, text)
        tail = [getattr(ids, kind), ids.placeholder]
        if len(piece) + 2 > budget:
            piece = piece[: budget - 2]
        if current and len(current) + len(piece) + 2 > budget:
            chunks.append((current, slots))
            current = _encode(tokenizer, header_text)[: budget // 4]
            slots = []
            piece = piece[: budget - 2 - len(current)]
        current = current + piece
        slots.append((len(current), slot, kind))
        current = current + tail
    chunks.append((current, slots))
    return chunks


def _assemble(
    chunk: _Chunk,
    query: str | list[str],
    dialogue: str,
    tokenizer: Any,
    settings: EncodeSettings,
    cls_id: int,
    sep_id: int,
) -> Window:
    note_ids, slots = chunk
    budget = settings.max_length - len(note_ids) - 3
    if settings.dialogue_max_tokens is not None:
        budget = min(budget, settings.dialogue_max_tokens)
    dial_ids = select_dialogue_lines(query, dialogue, tokenizer, max(0, budget), settings.line_max_tokens)
    input_ids = [cls_id] + note_ids + [sep_id] + dial_ids + [sep_id]
    types = [0] * (len(note_ids) + 2) + [1] * (len(dial_ids) + 1)
    token_slots = [TokenSlot(kind, slot, pos + 1, pos + 2, None) for pos, slot, kind in slots]  # +1: CLS
    return Window(input_ids, token_slots, types, 0)


def classification_targets(window: Window, labels: Sequence[str], *, orm: bool) -> list[int]:
    """Per-position class targets of an encoder window: 1 '+', 0 '-', -100 elsewhere.

    ``labels`` are the note's labels in slot order (:func:`note_slot_labels`); ``orm`` trains the
    end-of-note slot only.
    """
    out = [-100] * len(window.input_ids)
    for s in window.slots:
        if orm and s.kind != "end_of_note":
            continue
        out[s.token_index] = 1 if labels[s.index] == "+" else 0
    return out
