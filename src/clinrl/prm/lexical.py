"""The word-overlap rule as a per-slot verifier with no model: ``--scorer lexical``.

A header or step is suspect in proportion to how many of its content words the dialogue never uses
(:func:`clinrl.prm.encode.unsupported_words`: stop words and generic note words skipped, number words
matched to digits, a plural 's' ignored): its P(+) is ``1 / (1 + count)``. This is the bar a verifier must
clear to show it learnt more than word overlap (the CPU PRM is even *given* these words as input).

Every label slot gets a P(+), so the scorer goes through the same detection metrics as a trained PRM
(:mod:`clinrl.prm.evaluate`):

- ``problem``/``step``: the rule above.
- ``note_completeness``: the note's coverage of the dialogue (:func:`dialogue_coverage`): the share of the
  dialogue's content words that the note uses somewhere, by the same word rule read the other way. A note that
  lost a problem leaves more of the dialogue unmentioned. Measured on the dev tasks (2026-12-05): AUROC 0.77 /
  0.69 at the note-completeness slot (A_Validate / Dialogue_G). It is a ranking, not a calibrated
  probability: a note summarises a long dialogue, so coverage stays low (at most 0.22 / 0.50 on the dev
  notes) and nearly every note-completeness slot is flagged at the fixed 0.5 threshold; the 5 %-false-alarm
  threshold of :mod:`clinrl.prm.evaluate` is the fair reading.
- ``problem_completeness``: a constant :data:`NO_SIGNAL` (0.5). The same coverage per problem (the dialogue's
  words that the problem's header and steps use) was measured and separates complete from incomplete problems
  no better than chance (AUROC 0.50 / 0.52): a problem covers a small, unknown part of the dialogue. 0.5 is
  "no opinion": never flagged at the 0.5 threshold (flag = P(+) < t), all such slots tied, so it carries no
  signal rather than a wrong one.
- ``end_of_note`` (the note-level outcome): the smallest P(+) of the note's headers and steps times the note's
  coverage — a note is right only if its weakest part is right *and* it is complete (1.0 for the first factor
  when the note has no header or step). Measured: AUROC 0.71 / 0.63 at end-of-note, against 0.64 / 0.54 for
  the weakest part alone and 0.66 / 0.62 for coverage alone.

The note score is ``mean`` (mean of ln P(+) over all slots; :data:`clinrl.prm.score.AGGREGATES`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from clinrl.prm.encode import unsupported_words
from clinrl.prm.schema import Note
from clinrl.prm.score import NoteScore, SlotScore, group_by_dialogue, slot_layout

__all__ = [
    "NO_SIGNAL",
    "LexicalConfig",
    "LexicalScorer",
    "dialogue_coverage",
    "lexical_p_plus",
    "lexical_slot_scores",
]

NO_SIGNAL = 0.5
_ALL_WORDS = 10**9  # no cap on the words counted


def lexical_p_plus(text: str, dialogue: str) -> float:
    """1 / (1 + number of the text's content words the dialogue never uses)."""
    return 1.0 / (1 + len(unsupported_words(text, dialogue, _ALL_WORDS)))


def dialogue_coverage(note: Note, dialogue: str) -> float:
    """Share of the dialogue's content words (each once) that the note's headers and steps use, by
    :func:`~clinrl.prm.encode.unsupported_words` with the roles swapped; 1.0 when the dialogue has none."""
    words = unsupported_words(dialogue, "", _ALL_WORDS)
    if not words:
        return 1.0
    return 1.0 - len(unsupported_words(dialogue, "\n".join(note.items()), _ALL_WORDS)) / len(words)


def _slot_text(note: Note, slot: dict[str, Any]) -> str | None:
    """The header or step text of a content slot; None for the other kinds."""
    if slot["kind"] == "problem":
        return note.problems[slot["problem"]].header
    if slot["kind"] == "step":
        return note.problems[slot["problem"]].steps[slot["step"]].text
    return None


def lexical_slot_scores(note: Note, dialogue: str | None = None) -> NoteScore:
    """P(+) at every label slot of ``note`` by the rule (see the module docstring); ``dialogue`` replaces the
    note's own when given."""
    dialog = note.dialogue if dialogue is None else dialogue
    layout = slot_layout(note)
    texts = [_slot_text(note, slot) for slot in layout]
    content = [lexical_p_plus(t, dialog) for t in texts if t is not None]
    coverage = dialogue_coverage(note, dialog)
    fixed = {
        "problem_completeness": NO_SIGNAL,
        "note_completeness": coverage,
        "end_of_note": min(content, default=1.0) * coverage,
    }
    probs = iter(content)
    return NoteScore([
        SlotScore(index=k, p_plus=next(probs) if text is not None else fixed[meta["kind"]], **meta)
        for k, (meta, text) in enumerate(zip(layout, texts))
    ])  # fmt: skip


@dataclass(frozen=True)
class LexicalConfig:
    """The rule's settings, reported in ``scoring`` beside a model's :class:`~clinrl.prm.score.ScoreConfig`
    (fixed: the rule has no options; the fields name its choices)."""

    content: str = "1/(1+unsupported words)"
    problem_completeness: float = NO_SIGNAL
    note_completeness: str = "dialogue coverage"
    end_of_note: str = "min content x coverage"


@dataclass
class LexicalScorer:
    """Duck-typed like :class:`clinrl.prm.score.PRMScorer`: ``score_notes`` gives every label slot a P(+)
    by the word-overlap rule, each note on its own; no model, nothing to load."""

    config: LexicalConfig = field(default_factory=LexicalConfig)
    stats: Counter = field(default_factory=Counter)
    head: ClassVar[str] = "lexical"
    objective: ClassVar[str] = "prm"
    backend: ClassVar[str] = "rules"
    default_aggregate: ClassVar[str] = "mean"

    def score_notes(self, notes: Sequence[Note | str], dialogue: str | None = None) -> list[NoteScore]:
        """Score each note against its dialogue (``dialogue`` replaces the notes' own when given)."""
        resolved, _ = group_by_dialogue(notes, dialogue)
        self.stats["rules"] += len(resolved)
        return [lexical_slot_scores(note) for note in resolved]

    def score_note(self, note: Note | str, dialogue: str | None = None) -> NoteScore:
        return self.score_notes([note], dialogue)[0]
