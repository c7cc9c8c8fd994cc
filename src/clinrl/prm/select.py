"""Best-of-N: score candidate notes for one dialogue with a PRM and rank them.

Each candidate is scored on its own (:class:`clinrl.prm.score.PRMScorer`); the ranking sorts by the chosen
aggregate, best first, ties broken by input order. Every entry keeps its per-slot scores and its weakest
steps (lowest P(+) among problem headers and steps). :func:`ranking_table` prints positions and scores; item
texts only when asked (``show_text``), since notes hold patient data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinrl.errors import DataError
from clinrl.io import read_text_file
from clinrl.prm.schema import Note, load_notes
from clinrl.prm.score import NoteScore, PRMScorer, as_note

__all__ = ["Ranked", "Ranking", "best_of_n", "item_text", "ranking_table", "read_candidates"]


@dataclass
class Ranked:
    """One candidate in the ranking: ``index`` in the input, its ``score``, slot scores and weakest slots."""

    rank: int
    index: int
    name: str
    score: float
    note: Note
    scored: NoteScore
    weakest: list[Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank, "index": self.index, "name": self.name, "score": self.score,
            "weakest": [{"where": s.where, **s.to_dict()} for s in self.weakest],
            "slots": [s.to_dict() for s in self.scored.slots],
        }  # fmt: skip


@dataclass
class Ranking:
    """Candidates best first under ``aggregate``."""

    aggregate: str
    entries: list[Ranked]

    @property
    def best(self) -> Ranked:
        return self.entries[0]

    def to_dict(self) -> dict[str, Any]:
        return {"aggregate": self.aggregate, "ranking": [e.to_dict() for e in self.entries]}


def best_of_n(
    dialogue: str,
    notes: Sequence[Note | str],
    scorer: PRMScorer,
    aggregate: str | None = None,
    *,
    names: Sequence[str] | None = None,
    weakest: int = 3,
) -> Ranking:
    """Rank ``notes`` (structured or free text) for ``dialogue``; ``aggregate`` defaults to the model's own
    (``sum_log`` for a PRM, ``last`` for an ORM)."""
    if not notes:
        raise ValueError("best_of_n needs at least one candidate note")
    agg = aggregate or scorer.default_aggregate
    resolved = [as_note(n, dialogue) for n in notes]
    scored = scorer.score_notes(resolved)
    labels = list(names) if names is not None else [f"note {i + 1}" for i in range(len(resolved))]
    values = [s.score(agg) for s in scored]
    order = sorted(range(len(resolved)), key=lambda i: (-values[i], i))
    entries = [
        Ranked(rank, i, labels[i], values[i], resolved[i], scored[i], scored[i].weakest(weakest))
        for rank, i in enumerate(order, start=1)
    ]
    return Ranking(agg, entries)


def item_text(note: Note, slot: Any) -> str:
    problem = note.problems[slot.problem]
    return problem.header if slot.kind == "problem" else problem.steps[slot.step].text


def ranking_table(ranking: Ranking, *, show_text: bool = False):
    """A rich table: rank, candidate, score, slot count and the weakest positions with P(+)."""
    from rich.table import Table

    table = Table(title=f"Best-of-{len(ranking.entries)} ({ranking.aggregate})")
    for name, justify in (("rank", "right"), ("candidate", "left"), ("score", "right"), ("slots", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("weakest steps (P+)")
    for e in ranking.entries:
        weak = []
        for s in e.weakest:
            text = f": {item_text(e.note, s)}" if show_text else ""
            weak.append(f"{s.where} ({s.p_plus:.3f}){text}")
        table.add_row(str(e.rank), e.name, f"{e.score:.3f}", str(len(e.scored.slots)), "\n".join(weak) or "—")
    return table


def read_candidates(paths: Sequence[str | Path]) -> tuple[list[Note | str], list[str]]:
    """Candidate notes from files: PRM-Clinic JSON (``.json``/``.json.gz``, every note in it) or plain text
    (one free-text note per file). Returns the notes and a name per note (file, and case/sample for JSON)."""

    notes: list[Note | str] = []
    names: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.name.endswith((".json", ".json.gz")):
            loaded = load_notes(path)
            notes += loaded
            names += [f"{path.name}[{i}]" + (f" s{n.sample_no}" if n.sample_no is not None else "")
                      for i, n in enumerate(loaded)]  # fmt: skip
            continue
        text = read_text_file(path)
        if not text.strip():
            raise DataError("empty note", path=path)
        notes.append(text)
        names.append(path.name)
    return notes, names
