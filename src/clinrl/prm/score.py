"""Score clinical notes with a PRM: P(+) at every label slot, and note scores by aggregation.

Each note is scored **independently** of the other candidates: the fast path only shares the computation of
the prompt+dialogue prefix, which is identical for every candidate of one dialogue, so a note's score does not
depend on which other notes are scored with it.

Options (:class:`ScoreConfig`):

- ``probability``: ``full`` (softmax over the vocabulary, read at '+': the study) or ``binary`` ({'+', '-'}).
- ``context`` (what the label slots hold at inference): ``placeholder`` (the study), ``plus`` ('+' tokens) or
  ``greedy`` (each slot gets the label predicted there, slot by slot).
- ``fast``: shared-prefix KV cache + batched continuations + LM head at slot positions only
  (:mod:`clinrl.prm.fastpath`); a note whose tokens do not start with the prefix's own tokens (a BPE merge
  across the boundary) falls back to the reference path, counted in :attr:`PRMScorer.stats`.

Aggregations (:data:`AGGREGATES`, on ln P(+) with P floored at 1e-10): ``sum_log`` (the study's PRM score),
``min``, ``mean`` (mean of ln P, i.e. the log geometric mean), ``last`` (ln P(+) at end-of-note: the ORM score).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from clinrl.errors import ClinrlError, DataError
from clinrl.prm.encode import EncodeSettings, encode_causal
from clinrl.prm.format import (
    DIALOGUE_HEADER,
    NOTE_HEADER,
    PROMPT,
    SpecialTokens,
    TokenIds,
)
from clinrl.prm.model import load_prm, slot_probabilities
from clinrl.prm.schema import Note
from clinrl.prm.structure import structure_note
from clinrl.registry import Registry

__all__ = [
    "AGGREGATES",
    "CONTEXTS",
    "FLOOR",
    "NoteScore",
    "PRMScorer",
    "ScoreConfig",
    "SlotScore",
    "as_note",
    "causal_slot_inputs",
    "default_aggregate",
    "group_by_dialogue",
    "load_scorer",
    "slot_layout",
]

FLOOR = 1e-10
CONTEXTS = ("placeholder", "plus", "greedy")
PROBABILITIES = ("full", "binary")


def _last(logs: Sequence[float]) -> float:
    return logs[-1]


AGGREGATES: Registry[Callable[[Sequence[float]], float]] = Registry("aggregate", {
    "sum_log": lambda logs: float(sum(logs)),
    "min": lambda logs: float(min(logs)),
    "mean": lambda logs: float(sum(logs) / len(logs)),
    "last": _last,
})  # fmt: skip


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class SlotScore:
    """P(+) at one label slot. ``problem``/``step`` are 0-based indices; ``problem_no``/``step_no`` the note's
    own numbering (matches ``Swapped_info``/``Removed_info``); ``label`` the note's stored label ('+'/'-')."""

    kind: str
    index: int
    p_plus: float
    label: str
    problem: int | None = None
    step: int | None = None
    problem_no: str | None = None
    step_no: str | None = None

    @property
    def log_p(self) -> float:
        return math.log(max(self.p_plus, FLOOR))

    @property
    def where(self) -> str:
        """A position name without note text, e.g. "P2 S3", "P1 header", "P2 complete", "note", "end"."""
        pn = self.problem + 1 if self.problem is not None else None
        return {
            "problem": f"P{pn} header",
            "step": f"P{pn} S{(self.step or 0) + 1}",
            "problem_completeness": f"P{pn} complete",
            "note_completeness": "note complete",
            "end_of_note": "end",
        }[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "index": self.index, "problem": self.problem, "step": self.step,
            "p_plus": self.p_plus, "label": self.label,
        }  # fmt: skip


@dataclass
class NoteScore:
    """All slot scores of one note; ``fed_labels`` are the labels fed under the greedy context."""

    slots: list[SlotScore]
    fed_labels: list[str] | None = None

    def score(self, aggregate: str = "sum_log") -> float:
        """The note score under ``aggregate`` (higher is better)."""
        return AGGREGATES[aggregate]([s.log_p for s in self.slots])

    def weakest(self, k: int = 3, kinds: Iterable[str] = ("problem", "step")) -> list[SlotScore]:
        """The ``k`` slots of the given kinds with the lowest P(+), weakest first."""
        wanted = set(kinds)
        return sorted((s for s in self.slots if s.kind in wanted), key=lambda s: (s.p_plus, s.index))[:k]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scores": {a: self.score(a) for a in AGGREGATES}}
        out["slots"] = [s.to_dict() for s in self.slots]
        if self.fed_labels is not None:
            out["fed_labels"] = "".join(self.fed_labels)
        return out


def slot_layout(note: Note) -> list[dict[str, Any]]:
    """The label slots of ``note`` in PRM-string order: kind, indices, numbering and stored label."""
    out: list[dict[str, Any]] = []
    for i, p in enumerate(note.problems):
        out.append(dict(kind="problem", problem=i, problem_no=p.no, label=p.label))
        for j, s in enumerate(p.steps):
            out.append(dict(kind="step", problem=i, step=j, problem_no=p.no, step_no=s.no, label=s.label))
        out.append(dict(kind="problem_completeness", problem=i, problem_no=p.no, label=p.completeness))
    out.append(dict(kind="note_completeness", label=note.completeness))
    out.append(dict(kind="end_of_note", label=note.outcome_label))
    return out


def as_note(note: Note | str, dialogue: str | None = None) -> Note:
    """A :class:`Note` from a structured note or free text (:func:`clinrl.prm.structure.structure_note`);
    ``dialogue`` replaces the note's own when given."""
    if isinstance(note, str):
        return structure_note(note, dialogue=dialogue or "")
    if dialogue is not None and note.dialogue != dialogue:
        from dataclasses import replace

        return replace(note, dialogue=dialogue)
    return note


# ------------------------------------------------------------------------------------------ scorer
@dataclass(frozen=True)
class ScoreConfig:
    """How to score (see the module docstring)."""

    probability: Literal["full", "binary"] = "full"
    context: Literal["placeholder", "plus", "greedy"] = "placeholder"
    fast: bool = True
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.probability not in PROBABILITIES:
            raise ClinrlError(f"probability must be one of {PROBABILITIES}, got {self.probability!r}")
        if self.context not in CONTEXTS:
            raise ClinrlError(f"context must be one of {CONTEXTS}, got {self.context!r}")
        if self.batch_size < 1:
            raise ClinrlError("batch_size must be at least 1")


@dataclass
class PRMScorer:
    """A loaded PRM plus scoring options. ``head`` is "causal-lm" or "token-classification"; ``objective``
    ("prm"/"orm") sets :attr:`default_aggregate`. ``loaded`` is the object :func:`load_prm` returned, if any."""

    model: Any
    tokenizer: Any
    tokens: SpecialTokens
    head: str = "causal-lm"
    objective: str = "prm"
    config: ScoreConfig = field(default_factory=ScoreConfig)
    loaded: Any = None
    stats: Counter = field(default_factory=Counter)
    _prefixes: dict[str, list[int]] = field(default_factory=dict, repr=False)
    backend: ClassVar[str] = "transformers"  # the scorer backend's name (vLLM: clinrl.prm.vllm_score)

    def __post_init__(self) -> None:
        _BACKENDS[self.head]  # an unknown head fails here, with the choices
        self.model.eval()
        self.ids = TokenIds.from_tokenizer(self.tokens, self.tokenizer) if self.head == "causal-lm" else None

    @property
    def default_aggregate(self) -> str:
        """See :func:`default_aggregate`."""
        return default_aggregate(self.objective, getattr(self.loaded, "meta", None))

    def score_notes(self, notes: Sequence[Note | str], dialogue: str | None = None) -> list[NoteScore]:
        """Score each note independently (notes of the same dialogue share the prefix computation only)."""
        resolved, groups = group_by_dialogue(notes, dialogue)
        out: list[NoteScore | None] = [None] * len(resolved)
        for dialog, members in groups.items():
            scored = _BACKENDS[self.head](self, dialog, [resolved[i] for i in members])
            for i, s in zip(members, scored):
                out[i] = s
        return out  # type: ignore[return-value]

    def score_note(self, note: Note | str, dialogue: str | None = None) -> NoteScore:
        return self.score_notes([note], dialogue)[0]


def default_aggregate(objective: str, meta: Any = None) -> str:
    """ORM: ``last``. PRM: the aggregation stored with the model (``score_aggregate`` in ``clinrl_prm.json``,
    ``meta`` a :class:`~clinrl.prm.model.PRMMeta`) if any, else the study's ``sum_log``."""
    if objective == "orm":
        return "last"
    return getattr(meta, "score_aggregate", None) or "sum_log"


def group_by_dialogue(
    notes: Sequence[Note | str], dialogue: str | None = None
) -> tuple[list[Note], dict[str, list[int]]]:
    """The notes resolved (:func:`as_note`) and their indices grouped by dialogue, in first-seen order."""
    resolved = [as_note(n, dialogue) for n in notes]
    groups: dict[str, list[int]] = {}
    for i, note in enumerate(resolved):
        groups.setdefault(note.dialogue, []).append(i)
    return resolved, groups


def _note_score(note: Note, probs: Sequence[float], fed: list[str] | None = None) -> NoteScore:
    layout = slot_layout(note)
    if len(layout) != len(probs):
        raise RuntimeError(f"{len(probs)} slot probabilities for {len(layout)} label slots")
    slots = [SlotScore(index=k, p_plus=float(p), **meta) for k, (meta, p) in enumerate(zip(layout, probs))]
    return NoteScore(slots, fed)


def causal_slot_inputs(
    note: Note, dialogue: str, tokenizer: Any, tokens: SpecialTokens, ids: TokenIds, settings: Any, context: str
) -> tuple[list[int], list[int], int]:
    """(token ids, structural-token positions, dialogue lines kept) of one note as every causal-LM scorer
    backend reads it: the trainer's own encoder (:func:`clinrl.prm.encode.encode_causal`: BOS + the string,
    dialogue cut to fit ``settings``), label slots holding '+' under the ``plus`` context, else the
    PLACEHOLDER (``greedy`` replaces them slot by slot while scoring)."""

    labels = "plus" if context == "plus" else "placeholder"
    window = encode_causal(note, dialogue, tokenizer, tokens, ids, settings, labels=labels)
    if len(window.slots) != note.n_label_positions:
        found, want = len(window.slots), note.n_label_positions
        raise DataError(f"found {found} label slots in the tokenised note, expected {want}", row=note.case_id or None)
    return window.input_ids, [s.token_index for s in window.slots], window.extras["dialogue_lines_kept"]


def _encode_causal(scorer: PRMScorer, note: Note, dialogue: str) -> tuple[list[int], list[int], list[int]]:
    """(token ids, structural-token positions, token ids of the prompt+dialogue prefix) of one note
    (:func:`causal_slot_inputs`)."""

    settings = scorer.loaded.meta.settings if scorer.loaded is not None else EncodeSettings(max_length=10**9)
    seq, positions, kept_lines = causal_slot_inputs(
        note, dialogue, scorer.tokenizer, scorer.tokens, scorer.ids, settings, scorer.config.context
    )
    kept = "\n".join(dialogue.split("\n")[:kept_lines])
    return seq, positions, _prefix_ids(scorer, kept)


def _prefix_ids(scorer: PRMScorer, dialogue: str) -> list[int]:
    cache = scorer._prefixes
    if dialogue not in cache:
        cache.clear()  # one dialogue at a time
        bos = [scorer.tokenizer.bos_token_id] if scorer.tokenizer.bos_token_id is not None else []
        text = PROMPT + DIALOGUE_HEADER + dialogue + NOTE_HEADER
        cache[dialogue] = bos + list(scorer.tokenizer(text, add_special_tokens=False)["input_ids"])
    return cache[dialogue]


def _score_causal(scorer: PRMScorer, dialogue: str, notes: list[Note]) -> list[NoteScore]:
    """Group the notes by their token prefix (same dialogue after any cut), then fast path or reference."""
    from clinrl.prm import fastpath  # lazy: pulls torch

    cfg = scorer.config
    encoded = [_encode_causal(scorer, n, dialogue) for n in notes]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (seq, _, prefix) in enumerate(encoded):
        shared = cfg.fast and fastpath.split_prefix([seq], prefix)[0]
        groups.setdefault(tuple(prefix) if shared else (), []).append(i)  # () = reference path
    scores: list[NoteScore | None] = [None] * len(notes)
    for prefix, members in groups.items():
        got = _score_group(scorer, list(prefix), [encoded[i][0] for i in members], [encoded[i][1] for i in members])
        scorer.stats["fast" if prefix else "reference"] += len(members)
        for i, (probs, fed) in zip(members, got):
            scores[i] = _note_score(notes[i], probs, fed)
    return scores  # type: ignore[return-value]


def _score_group(
    scorer: PRMScorer, prefix: list[int], sequences: list[list[int]], positions: list[list[int]]
) -> list[tuple[list[float], list[str] | None]]:
    """P(+) per slot for sequences that all start with ``prefix`` (empty: no sharing, reference path)."""
    from clinrl.prm import fastpath  # lazy: pulls torch

    cfg, model = scorer.config, scorer.model
    pm = (scorer.ids.plus, scorer.ids.minus)
    if cfg.context == "greedy":
        cache = (fastpath.prefix_cache(model, prefix), len(prefix)) if prefix else None
        out = []
        for seq, pos in zip(sequences, positions):
            probs, fed = fastpath.greedy_slot_probs(model, seq, pos, pm, cfg.probability, prefix_cache=cache)
            out.append((probs.tolist(), fed))
        return out
    if prefix:
        pad = scorer.tokenizer.pad_token_id if scorer.tokenizer.pad_token_id is not None else 0
        got = fastpath.fast_slot_probs(
            model, prefix, [s[len(prefix) :] for s in sequences], positions, pm, cfg.probability,
            batch_size=cfg.batch_size, pad_id=pad,
        )  # fmt: skip
    else:
        got = fastpath.reference_slot_probs(model, sequences, positions, pm, cfg.probability)
    return [(p.tolist(), None) for p in got]


def _score_token_classification(scorer: PRMScorer, dialogue: str, notes: list[Note]) -> list[NoteScore]:
    """Encoder PRMs: the trainer's windows and read-out (:func:`clinrl.prm.model.slot_probabilities`)."""

    if scorer.loaded is None:
        raise ClinrlError("a token-classification PRM must be loaded with load_scorer (it needs its encoding settings)")
    scorer.stats["reference"] += len(notes)
    return [_note_score(n, slot_probabilities(scorer.loaded, n, dialogue, batch_size=scorer.config.batch_size))
            for n in notes]  # fmt: skip


_BACKENDS: Registry[Callable[[PRMScorer, str, list[Note]], list[NoteScore]]] = Registry("PRM head", {
    "causal-lm": _score_causal,
    "token-classification": _score_token_classification,
})  # fmt: skip


def load_scorer(path: str | Path, config: ScoreConfig | None = None) -> PRMScorer:
    """A :class:`PRMScorer` for a saved PRM directory (:func:`clinrl.prm.model.load_prm`), or for a judge
    folder (``clinrl_judge.json``) a :class:`clinrl.prm.judge.JudgeScorer`, which scores alike (``config``,
    the PRM's read-out options, does not apply to it)."""
    from clinrl.prm import judge  # lazy: a cycle (judge builds on this module)

    if judge.is_judge_folder(path):
        return judge.load_judge(path)  # type: ignore[return-value]
    loaded = load_prm(path)
    return PRMScorer(
        model=loaded.model, tokenizer=loaded.tokenizer, tokens=loaded.meta.tokens, head=loaded.meta.head,
        objective=loaded.meta.objective, config=config or ScoreConfig(), loaded=loaded,
    )  # fmt: skip
