"""Reference selection rules that need no model: medoid, random (exact expectation), length, first.

Each rule returns one score per candidate (higher = preferred); the caller picks the unique maximum, and a
tie at the top that includes the gold counts as a miss. ``random`` is not a rule that picks: its accuracy is
the exact expectation, the mean of 1/n over cases (see :func:`clinrl.prm.evaluate.evaluate_selection`).

- ``medoid``: minus the summed size of the symmetric difference between the candidate's set of item texts
  (problem headers and step texts) and each other candidate's. Reads the other candidates, never the dialogue:
  a reference for how much the task leaks through "every error sample is an edit of the gold", not a verifier.
- ``length``: the number of characters in the note's item texts (headers and steps), so the longest note wins.
- ``first``: the first candidate in input order (A-Prefer's "always Note_1").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from clinrl.prm.schema import Note
from clinrl.registry import Registry

__all__ = ["RULES", "first_scores", "item_set", "length_scores", "medoid_scores"]


def item_set(note: Note) -> frozenset[str]:
    """The set of a note's item texts: problem headers and steps."""
    return frozenset(note.items())


def medoid_scores(candidates: Sequence[Note]) -> list[float]:
    """Minus each candidate's summed symmetric-difference size to every other candidate's item set."""
    sets = [item_set(n) for n in candidates]
    return [-float(sum(len(a ^ b) for j, b in enumerate(sets) if j != i)) for i, a in enumerate(sets)]


def length_scores(candidates: Sequence[Note]) -> list[float]:
    """Characters in each note's headers and steps."""
    return [float(sum(len(t) for t in n.items())) for n in candidates]


def first_scores(candidates: Sequence[Note]) -> list[float]:
    """1 for the first candidate, 0 for the others."""
    return [1.0 if i == 0 else 0.0 for i in range(len(candidates))]


RULES: Registry[Callable[[Sequence[Note]], list[float]]] = Registry("rule", {
    "medoid": medoid_scores,
    "length": length_scores,
    "first": first_scores,
})  # fmt: skip
