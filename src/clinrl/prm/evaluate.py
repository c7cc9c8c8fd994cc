"""Evaluate selection rules and PRMs on PRM-Clinic verification tasks and A-Prefer-style preference data.

**Gold selection** (:func:`evaluate_selection`): each case = its gold note + its error samples. A rule or a
model gives every candidate a score; the case counts as correct when the gold alone has the top score (a tie
with another candidate is a miss). Grouped by ``Data_source``, whatever the names are. ``random`` reports
the exact expectation: accuracy = mean of 1/n_candidates, ``correct`` = its sum (a float).

Every accuracy and rate in the reports is a fraction in [0, 1] (as in ``clinrl drg``'s metrics.json);
only the tables printed for people show percentages.

**Step-level error detection** (scorers that give every label slot a P(+): the models ``prm``/``orm`` and the
no-model word-overlap rule ``lexical``, :mod:`clinrl.prm.lexical`), over every candidate's label slots against
the stored labels, with "error" ('-') as the positive class and 1 - P(+) as its score:

- ``auroc_steps`` (step slots) and ``auroc_all`` (all slots, end-of-note included);
- ``f1``/``precision``/``recall`` at the fixed threshold P(+) < 0.5 (:data:`THRESHOLD`), and separately
  ``best_f1`` with the P(+) threshold that reaches it (chosen on the same data: optimistic, for reference);
- ``by_error_type``: share of edited slots flagged (P(+) < 0.5) — Hallucination / Unhelpful /
  Factual Inaccuracy at the swapped step or header slot; "Step Incompleteness" at the problem-completeness slot
  of a problem that lost steps; "Problem Incompleteness" at the note-completeness slot. Each affected slot counts
  once; edits inside removed content have no slot and are not counted. ``false_alarm`` = share of '+' slots
  flagged.
- ``processbench`` (ProcessBench-style earliest error, per note): the true earliest error is the first slot in
  slot order whose label is '-' (end-of-note left out: it is the note-level outcome, not a place), none for a
  clean note; the predicted one is the first flagged slot, or none. ``acc_error`` = share of erroneous notes
  whose predicted position is the true one, ``acc_clean`` = share of clean notes with nothing flagged, ``f1``
  their harmonic mean. Given twice: ``at_threshold`` (flag = P(+) < 0.5) and ``at_false_alarm`` (the
  thresholds below), since a fixed 0.5 is arbitrary for a scorer that is not calibrated.
- ``at_false_alarm``: per slot group — ``content`` (headers, steps) and ``completeness`` (problem and note
  completeness) — the largest P(+) threshold t at which at most ``rate`` (default 5 %) of the group's '+'
  slots are flagged (flag = P(+) < t, so equal scores are all flagged or all not; t is a score of the data).
  Per group, because scorers are calibrated differently per slot kind (the lexical rule's completeness is a
  coverage share, its steps 1/(1 + count)); each group stays within the rate, so all slots together do too.
  ``by_error_type`` gives each error type's recall at its own group's threshold: Hallucination / Unhelpful /
  Factual Inaccuracy at ``content``, Step and Problem Incompleteness at ``completeness``.
- ``calibration``: expected calibration error of P(+) against the label '+' (10 equal-width bins, each weighted
  by its share of slots) and the Brier score, over all slots and over step slots.

Slot scorers score each note on its own (:class:`clinrl.prm.score.PRMScorer`,
:class:`clinrl.prm.lexical.LexicalScorer`), never seeing the other candidates.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinrl.errors import ClinrlError, DataError, shown_id
from clinrl.prm import demo_data_dir
from clinrl.prm.baselines import RULES
from clinrl.prm.format import parse_prm_string
from clinrl.prm.lexical import LexicalScorer
from clinrl.prm.schema import Note, load_notes
from clinrl.prm.score import AGGREGATES

__all__ = [
    "FALSE_ALARM_RATE",
    "MODEL_SCORERS",
    "SLOT_GROUPS",
    "SLOT_SCORERS",
    "THRESHOLD",
    "Case",
    "DetectionStats",
    "SelectionReport",
    "auroc",
    "best_f1",
    "calibration",
    "detection_table",
    "earliest_error_accuracy",
    "false_alarm_threshold",
    "evaluate_preference",
    "evaluate_selection",
    "group_cases",
    "limit_cases",
    "load_dev_cases",
    "load_preference_cases",
    "pick",
    "selection_table",
]

THRESHOLD = 0.5
FALSE_ALARM_RATE = 0.05
CALIBRATION_BINS = 10
MODEL_SCORERS = ("prm", "orm", "judge")  # judge: clinrl.prm.judge.JudgeScorer
SLOT_SCORERS = (*MODEL_SCORERS, "lexical")  # a P(+) at every label slot: detection metrics
SELECTION_SCORERS = ("medoid", "random", "length", "lexical", "prm", "orm", "judge")
PREFERENCE_SCORERS = ("prm", "orm", "judge", "lexical", "random", "length", "first")
ERROR_KINDS = ("Hallucination", "Unhelpful", "Factual Inaccuracy", "Step Incompleteness", "Problem Incompleteness")
SLOT_GROUPS = {"content": ("problem", "step"), "completeness": ("problem_completeness", "note_completeness")}
ERROR_GROUP = {"Hallucination": "content", "Unhelpful": "content", "Factual Inaccuracy": "content",
               "Step Incompleteness": "completeness", "Problem Incompleteness": "completeness"}  # fmt: skip
_GROUP_OF = {kind: group for group, kinds in SLOT_GROUPS.items() for kind in kinds}


@dataclass
class Case:
    """One selection case: candidates in input order and which of them is the target (gold / preferred)."""

    case_id: str
    data_source: str
    candidates: list[Note]
    target: int = 0


def group_cases(gold: Sequence[Note], errors: Sequence[Note]) -> tuple[list[Case], dict[str, int]]:
    """Cases in gold-file order: gold first, then its error samples by ``Sample_no``.

    Returns the cases and counted drops: error samples whose case has no gold note, and gold notes with no
    error sample (nothing to select between).
    """
    by_case: dict[str, list[Note]] = defaultdict(list)
    for note in errors:
        by_case[note.case_id].append(note)
    seen: set[str] = set()
    cases = []
    dropped = {"errors_without_gold": 0, "gold_without_errors": 0}
    for i, g in enumerate(gold):
        if g.case_id in seen:
            raise DataError(f"duplicate gold case {shown_id(g.case_id)}", row=i, field="Case_id")
        seen.add(g.case_id)
        samples = sorted(by_case.get(g.case_id, []), key=lambda n: n.sample_no if n.sample_no is not None else -1)
        if not samples:
            dropped["gold_without_errors"] += 1
            continue
        cases.append(Case(g.case_id, g.data_source or "unknown", [g, *samples]))
    dropped["errors_without_gold"] = sum(len(v) for k, v in by_case.items() if k not in seen)
    return cases, dropped


def load_dev_cases(data: str | Path | None = None) -> tuple[list[Case], dict[str, int]]:
    """The dev verification cases (``verification_dev_gold/error.json.gz`` in ``data``, default the bundled PRM
    data) grouped by :func:`group_cases`: (cases, counted drops)."""
    folder = Path(data) if data is not None else demo_data_dir()
    gold, errors = (load_notes(folder / f"verification_dev_{kind}.json.gz") for kind in ("gold", "error"))
    return group_cases(gold, errors)


def limit_cases(cases: Sequence[Case], per_source: int) -> list[Case]:
    """The first ``per_source`` cases of each ``Data_source`` (quick runs)."""
    count: dict[str, int] = defaultdict(int)
    out = []
    for case in cases:
        if count[case.data_source] < per_source:
            count[case.data_source] += 1
            out.append(case)
    return out


def pick(scores: Sequence[float]) -> int | None:
    """Index of the unique top score, or None when the top is tied."""
    top = max(scores)
    winners = [i for i, s in enumerate(scores) if s == top]
    return winners[0] if len(winners) == 1 else None


# ------------------------------------------------------------------------------------------ metrics
def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None when a class is empty."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return precision, recall, f1


def best_f1(p_plus: Sequence[float], is_error: Sequence[bool]) -> tuple[float, float]:
    """The best F1 for "error when P(+) ≤ t" over all thresholds t, and that t."""
    p = np.asarray(p_plus, dtype=float)
    y = np.asarray(is_error, dtype=bool)
    n_pos = int(y.sum())
    if n_pos == 0 or len(p) == 0:
        return 0.0, 0.0
    order = np.argsort(p, kind="mergesort")
    tp = np.cumsum(y[order])
    k = np.arange(1, len(p) + 1)
    last_of_value = np.r_[p[order][1:] != p[order][:-1], True]  # thresholds between distinct values only
    f1 = np.where(last_of_value, 2 * tp / (k + n_pos), -1.0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(p[order][best])


def false_alarm_threshold(p_ok: Sequence[float], rate: float = FALSE_ALARM_RATE) -> float | None:
    """The largest threshold t such that flagging P(+) < t flags at most ``rate`` of ``p_ok`` (the P(+) of
    '+' slots); None when there are none.

    t is one of the scores: the smallest score whose slots, flagged too, would exceed the budget. Slots at t
    are not flagged, so equal scores are all flagged or all not (a tie is never split to hit the rate).
    """
    _check_rate(rate)
    if len(p_ok) == 0:
        return None
    values, counts = np.unique(np.asarray(p_ok, dtype=float), return_counts=True)
    flagged_through = np.cumsum(counts)  # '+' slots flagged once t passes each value
    over = np.flatnonzero(flagged_through > rate * len(p_ok) + 1e-9)  # never empty: the rate is under 1
    return float(values[over[0]])


def _check_rate(rate: float) -> None:
    if not 0 <= rate < 1:
        raise ClinrlError(f"the false-alarm rate must be in [0, 1), got {rate}")


def earliest_error_accuracy(notes: Iterable[tuple[Sequence[bool], Sequence[bool]]]) -> dict[str, Any]:
    """ProcessBench's earliest-error scores over notes given as (flagged, is_error) per slot in slot order.

    A note with an error counts as right when its first flagged slot is its first error slot; a clean note
    when nothing is flagged. ``f1`` is the harmonic mean of the two accuracies (0 when both are 0, None
    when a kind of note is missing).
    """
    hits = {"error": [], "clean": []}
    for flagged, is_error in notes:
        predicted = next((i for i, f in enumerate(flagged) if f), None)
        true = next((i for i, e in enumerate(is_error) if e), None)
        hits["clean" if true is None else "error"].append(predicted == true)
    acc_error = sum(hits["error"]) / len(hits["error"]) if hits["error"] else None
    acc_clean = sum(hits["clean"]) / len(hits["clean"]) if hits["clean"] else None
    f1 = None
    if acc_error is not None and acc_clean is not None:
        f1 = 2 * acc_error * acc_clean / (acc_error + acc_clean) if acc_error + acc_clean else 0.0
    return {"n_error_notes": len(hits["error"]), "n_clean_notes": len(hits["clean"]),
            "acc_error": acc_error, "acc_clean": acc_clean, "f1": f1}  # fmt: skip


def calibration(p_plus: Sequence[float], is_plus: Sequence[bool], bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Expected calibration error of P(+) against the label '+' (``bins`` equal-width bins on [0, 1], P = 1
    in the top bin, each bin weighted by its share of slots) and the Brier score; None when empty."""
    p = np.asarray(p_plus, dtype=float)
    y = np.asarray(is_plus, dtype=float)
    if len(p) == 0:
        return {"ece": None, "brier": None}
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = sum(abs(p[which == b].mean() - y[which == b].mean()) * (which == b).mean() for b in np.unique(which))
    return {"ece": float(ece), "brier": float(np.mean((p - y) ** 2))}


@dataclass
class DetectionStats:
    """Slot records of one group of notes, for step-level error detection: per slot its P(+), label, kind and
    note (in ``add`` order); per error kind the P(+) of every slot an edit of that kind landed on."""

    false_alarm_rate: float = FALSE_ALARM_RATE
    p_plus: list[float] = field(default_factory=list)
    is_error: list[bool] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    note_of: list[int] = field(default_factory=list)
    edits: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ERROR_KINDS})
    n_notes: int = 0

    def add(self, note: Note, scored: Any) -> None:
        for slot in scored.slots:
            self.p_plus.append(slot.p_plus)
            self.is_error.append(slot.label == "-")
            self.kinds.append(slot.kind)
            self.note_of.append(self.n_notes)
        for kind, slot in _edited_slots(note, scored.slots):
            self.edits[kind].append(slot.p_plus)
        self.n_notes += 1

    def __post_init__(self) -> None:
        _check_rate(self.false_alarm_rate)

    def to_dict(self) -> dict[str, Any]:
        p = np.asarray(self.p_plus, dtype=float)
        err = np.asarray(self.is_error, dtype=bool)
        step = np.asarray(self.kinds) == "step"
        flagged = p < THRESHOLD
        tp, fp, fn = int((flagged & err).sum()), int((flagged & ~err).sum()), int((~flagged & err).sum())
        precision, recall, f1 = _prf(tp, fp, fn)
        bf1, bt = best_f1(p, err)
        n_ok = int((~err).sum())
        thresholds = self.group_thresholds()
        all_slots, steps = calibration(p, ~err), calibration(p[step], ~err[step])
        return {
            "n_slots": len(p), "n_error_slots": int(err.sum()),
            "auroc_steps": auroc(1 - p[step], err[step]) if step.any() else None,
            "auroc_all": auroc(1 - p, err),
            "threshold": THRESHOLD, "precision": precision, "recall": recall, "f1": f1,
            "best_f1": bf1, "best_f1_threshold": bt,
            "false_alarm": fp / n_ok if n_ok else None,
            "by_error_type": {
                k: {"detected": sum(x < THRESHOLD for x in v), "total": len(v),
                    "rate": sum(x < THRESHOLD for x in v) / len(v) if v else None}
                for k, v in self.edits.items()
            },
            "processbench": self.processbench_block(thresholds),
            "at_false_alarm": self.at_false_alarm(thresholds),
            "calibration": {"bins": CALIBRATION_BINS, "ece_all": all_slots["ece"], "ece_steps": steps["ece"],
                            "brier_all": all_slots["brier"], "brier_steps": steps["brier"]},
        }  # fmt: skip

    def group_thresholds(self) -> dict[str, float | None]:
        """Per slot group (:data:`SLOT_GROUPS`), the :func:`false_alarm_threshold` of its '+' slots."""
        return {
            group: false_alarm_threshold(
                [p for p, e, k in zip(self.p_plus, self.is_error, self.kinds) if not e and k in kinds],
                self.false_alarm_rate,
            )
            for group, kinds in SLOT_GROUPS.items()
        }

    def processbench_block(self, thresholds: dict[str, float | None]) -> dict[str, Any]:
        """Note counts, then :meth:`processbench` at P(+) < 0.5 (``at_threshold``) and at the per-group
        false-alarm ``thresholds`` (``at_false_alarm``)."""
        fixed = self.processbench(lambda kind: THRESHOLD)
        chosen = self.processbench(lambda kind: thresholds[_GROUP_OF[kind]])
        scores = ("acc_error", "acc_clean", "f1")
        return {
            "n_error_notes": fixed["n_error_notes"], "n_clean_notes": fixed["n_clean_notes"],
            "at_threshold": {"threshold": THRESHOLD, **{k: fixed[k] for k in scores}},
            "at_false_alarm": {"rate": self.false_alarm_rate, "thresholds": thresholds,
                               **{k: chosen[k] for k in scores}},
        }  # fmt: skip

    def processbench(self, threshold_of: Callable[[str], float | None]) -> dict[str, Any]:
        """:func:`earliest_error_accuracy` over the notes, end-of-note left out, a slot flagged when its P(+)
        is under ``threshold_of(kind)`` (None: never flagged)."""
        notes: dict[int, tuple[list[bool], list[bool]]] = {}
        for p, e, k, n in zip(self.p_plus, self.is_error, self.kinds, self.note_of):
            if k == "end_of_note":
                continue
            t = threshold_of(k)
            flagged, errors = notes.setdefault(n, ([], []))
            flagged.append(t is not None and p < t)
            errors.append(e)
        return earliest_error_accuracy(notes.values())

    def at_false_alarm(self, thresholds: dict[str, float | None]) -> dict[str, Any]:
        """Each group's threshold and realised false-alarm share, and each error type's recall at its group's
        threshold (an edited slot detected when its P(+) is under it)."""
        realised = {}
        for group, kinds in SLOT_GROUPS.items():
            ok = [p for p, e, k in zip(self.p_plus, self.is_error, self.kinds) if not e and k in kinds]
            t = thresholds[group]
            realised[group] = sum(p < t for p in ok) / len(ok) if ok and t is not None else None
        by_type = {}
        for kind, values in self.edits.items():
            t = thresholds[ERROR_GROUP[kind]]
            hit = sum(t is not None and x < t for x in values)
            by_type[kind] = {"detected": hit, "total": len(values), "recall": hit / len(values) if values else None}
        return {"rate": self.false_alarm_rate, "thresholds": thresholds, "false_alarm": realised,
                "by_error_type": by_type}  # fmt: skip


def _edited_slots(note: Note, slots: Sequence[Any]) -> Iterable[tuple[str, Any]]:
    """(error kind, slot) for every slot an edit of ``note`` landed on, each slot once per kind."""
    index = {(s.kind, s.problem_no, s.step_no): s for s in slots}
    seen: set[tuple[str, int]] = set()
    targets = []
    for swap in note.swaps:
        key = ("step", swap.problem_no, swap.step_no) if swap.level == "Step" else ("problem", swap.problem_no, None)
        targets.append((swap.error_type, key))
    for removal in note.removals:
        if removal.level == "Step":
            targets.append((removal.change_type, ("problem_completeness", removal.problem_no, None)))
        else:
            targets.append((removal.change_type, ("note_completeness", None, None)))
    for kind, key in targets:
        slot = index.get(key)
        if slot is not None and (kind, slot.index) not in seen:
            seen.add((kind, slot.index))
            yield kind, slot


# ------------------------------------------------------------------------------------------ selection
@dataclass
class SourceResult:
    correct: float = 0.0
    total: int = 0
    detection: DetectionStats | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "accuracy": self.correct / self.total if self.total else None,
            "correct": self.correct,
            "total": self.total,
        }
        if self.detection is not None:
            out["detection"] = self.detection.to_dict()
        return out


@dataclass
class SelectionReport:
    """Per-source results (``sources``, in first-seen order) and ``overall``."""

    scorer: str
    aggregate: str | None
    sources: dict[str, SourceResult]
    overall: SourceResult
    dropped: dict[str, int] = field(default_factory=dict)
    scoring: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer, "aggregate": self.aggregate,
            "sources": {k: v.to_dict() for k, v in self.sources.items()},
            "overall": self.overall.to_dict(), "dropped": self.dropped, "scoring": self.scoring,
        }  # fmt: skip


def _candidate_scores(
    cases: Sequence[Case], scorer: str, model: Any, aggregate: str | None, progress: Callable[[int], None] | None
) -> Iterable[tuple[Case, list[float] | None, list[Any] | None]]:
    for case in cases:
        if scorer == "random":
            yield case, None, None
        elif scorer in RULES:
            yield case, RULES[scorer](case.candidates), None
        else:
            scored = model.score_notes(case.candidates)  # each note independently (shared prefix only)
            yield case, [s.score(aggregate) for s in scored], scored
        if progress is not None:
            progress(1)


def _check_scorer(scorer: str, allowed: Sequence[str], model: Any) -> Any:
    """The slot scorer to use (``model``, or the built-in rule for ``lexical``); errors for an unknown scorer
    or a model scorer without a model."""
    if scorer not in allowed:
        raise ClinrlError(f"unknown scorer {scorer!r}: use one of {', '.join(allowed)}")
    if scorer in MODEL_SCORERS and model is None:
        raise ClinrlError(f"scorer {scorer!r} needs a model (--model PATH)")
    if scorer == "lexical" and model is None:
        return LexicalScorer()
    return model


def _aggregate_for(scorer: str, aggregate: str | None, model: Any) -> str | None:
    if aggregate is not None and aggregate not in AGGREGATES:
        raise ClinrlError(f"unknown aggregate {aggregate!r}: use one of {', '.join(AGGREGATES)}")
    if scorer == "orm":
        return "last"
    if scorer in SLOT_SCORERS:  # the scorer's default (a model's clinrl_prm.json) before the study's sum_log
        return aggregate or getattr(model, "default_aggregate", None) or "sum_log"
    return None


def evaluate_selection(
    cases: Sequence[Case],
    scorer: str,
    *,
    model: Any = None,
    aggregate: str | None = None,
    dropped: dict[str, int] | None = None,
    progress: Callable[[int], None] | None = None,
    false_alarm_rate: float = FALSE_ALARM_RATE,
) -> SelectionReport:
    """Gold-selection accuracy per ``Data_source`` (+ step-level detection for slot scorers).

    ``model`` is a :class:`clinrl.prm.score.PRMScorer` for ``prm``/``orm``; ``orm`` uses ln P(+) at
    end-of-note, ``prm`` uses ``aggregate`` (default: the model's, else ``sum_log``); ``lexical`` needs no
    model (:class:`clinrl.prm.lexical.LexicalScorer`, default ``mean``). ``false_alarm_rate`` sets the
    thresholds of the ``at_false_alarm`` metrics.
    """
    model = _check_scorer(scorer, SELECTION_SCORERS, model)
    _check_rate(false_alarm_rate)
    agg = _aggregate_for(scorer, aggregate, model)

    def detection() -> DetectionStats | None:
        return DetectionStats(false_alarm_rate) if scorer in SLOT_SCORERS else None

    sources: dict[str, SourceResult] = {}
    overall = SourceResult(detection=detection())
    for case, scores, scored in _candidate_scores(cases, scorer, model, agg, progress):
        result = sources.setdefault(case.data_source, SourceResult(detection=detection()))
        hit = 1 / len(case.candidates) if scores is None else float(pick(scores) == case.target)
        for r in (result, overall):
            r.correct += hit
            r.total += 1
            if scored is not None and r.detection is not None:
                for note, s in zip(case.candidates, scored):
                    r.detection.add(note, s)
    scoring = {}
    if model is not None and scorer in SLOT_SCORERS:
        scoring = {**vars(model.config), "head": model.head, "objective": model.objective, "paths": dict(model.stats),
                   "backend": getattr(model, "backend", "transformers")}  # fmt: skip
    return SelectionReport(scorer, agg, sources, overall, dict(dropped or {}), scoring)


def selection_table(report: SelectionReport, title: str | None = None):
    """A rich table: accuracy per source in percent (one decimal), plus detection columns for slot scorers
    (the sharper step-level metrics: :func:`detection_table`)."""
    from rich.table import Table

    detect = report.overall.detection is not None
    default = f"Gold selection — {report.scorer}" + (f" ({report.aggregate})" if report.aggregate else "")
    table = Table(title=title or default)
    table.add_column("Data_source")
    table.add_column("accuracy %", justify="right")
    table.add_column("correct", justify="right")
    table.add_column("total", justify="right")
    if detect:
        for name in ("AUROC steps", "AUROC all", "F1@0.5", "best F1"):
            table.add_column(name, justify="right")
    rows = list(report.sources.items()) + [("all", report.overall)]
    for name, result in rows:
        d = result.to_dict()
        cells = [
            name,
            _fmt(None if d["accuracy"] is None else 100 * d["accuracy"], 1),
            _fmt_count(d["correct"]),
            str(d["total"]),
        ]
        if detect:
            det = d["detection"]
            cells += [_fmt(det[k], 3) for k in ("auroc_steps", "auroc_all", "f1", "best_f1")]
        table.add_row(*cells, style="bold" if name == "all" else None)
    return table


def detection_table(report: SelectionReport):
    """A second rich table for slot scorers (None for the others): ProcessBench earliest-error F1 at P(+) < 0.5
    and at the false-alarm thresholds, its two accuracies there in percent, ECE and Brier of P(+) (all slots),
    and a caption with each error type's recall at the false-alarm thresholds over all sources (percent)."""
    from rich.table import Table

    if report.overall.detection is None:
        return None
    fa = f"{100 * report.overall.detection.false_alarm_rate:g}%FA"
    table = Table(title=f"Step-level detection — {report.scorer}")
    for name in ("Data_source", "PB F1@0.5", f"PB F1@{fa}", "err/clean %", "ECE", "Brier"):
        table.add_column(name, justify="left" if name == "Data_source" else "right")
    for name, result in [*report.sources.items(), ("all", report.overall)]:
        det = result.to_dict()["detection"]
        pb, cal = det["processbench"], det["calibration"]
        both = pb["at_false_alarm"]
        accs = " / ".join(_fmt(None if both[k] is None else 100 * both[k], 1) for k in ("acc_error", "acc_clean"))
        cells = [name, _fmt(pb["at_threshold"]["f1"], 3), _fmt(both["f1"], 3), accs]
        cells += [_fmt(cal["ece_all"], 3), _fmt(cal["brier_all"], 3)]
        table.add_row(*cells, style="bold" if name == "all" else None)
    table.caption = _recall_caption(report.overall.to_dict()["detection"]["at_false_alarm"])
    return table


def _recall_caption(at_fa: dict[str, Any]) -> str:
    """The caption line: each error type's recall at the false-alarm thresholds, in percent (types with no
    edited slot left out)."""
    parts = [f"{kind} {_fmt(100 * v['recall'], 1)} %" for kind, v in at_fa["by_error_type"].items() if v["total"]]
    return f"recall at {100 * at_fa['rate']:g} % false alarm (all sources): " + (", ".join(parts) or "—")


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _fmt_count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


# ------------------------------------------------------------------------------------------ preference
def _read_csv(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"missing column(s) {missing}", path=path, field=missing[0])
            return list(reader)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"not readable: {err}", path=path) from None


def load_preference_cases(
    csv_path: str | Path, labels_path: str | Path, tokens: Any
) -> tuple[list[Case], dict[str, int]]:
    """A-Prefer-style data: rendered PRM strings (``Case_id, Sample_no, Training_note``) + preferred sample
    (``Case_id, Preferred_note``). Candidates keep file order; cases without a label are dropped and counted."""

    csv_path, labels_path = Path(csv_path), Path(labels_path)
    rows = _read_csv(csv_path, ("Case_id", "Sample_no", "Training_note"))
    labels = _read_csv(labels_path, ("Case_id", "Preferred_note"))
    preferred = {}
    for i, row in enumerate(labels, start=2):
        if row["Case_id"] in preferred:
            raise DataError(f"duplicate case {shown_id(row['Case_id'])}", path=labels_path, row=i, field="Case_id")
        preferred[row["Case_id"]] = row["Preferred_note"]
    grouped: dict[str, list[tuple[str, Note]]] = {}
    for i, row in enumerate(rows, start=2):
        try:
            note = parse_prm_string(row["Training_note"], tokens)
        except DataError as err:
            raise DataError(str(err), path=csv_path, row=i, field="Training_note") from None
        note.case_id, note.data_source = row["Case_id"], "preference"
        grouped.setdefault(row["Case_id"], []).append((row["Sample_no"], note))
    cases = []
    for case_id, items in grouped.items():
        if case_id not in preferred:
            continue
        names = [name for name, _ in items]
        if preferred[case_id] not in names:
            raise DataError(
                f"preferred note {shown_id(preferred[case_id])} is not among the case's {len(names)} samples",
                path=labels_path, field="Preferred_note", row=shown_id(case_id),
            )  # fmt: skip
        cases.append(Case(case_id, "preference", [n for _, n in items], names.index(preferred[case_id])))
    dropped = {
        "cases_without_label": sum(1 for c in grouped if c not in preferred),
        "labels_without_notes": sum(1 for c in preferred if c not in grouped),
    }
    return cases, dropped


def evaluate_preference(
    cases: Sequence[Case], scorer: str, *, model: Any = None, aggregate: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Accuracy of picking the preferred note (a tie at the top is a miss; ``random`` = exact expectation)."""
    model = _check_scorer(scorer, PREFERENCE_SCORERS, model)
    agg = _aggregate_for(scorer, aggregate, model)
    correct, total = 0.0, 0
    for case, scores, _ in _candidate_scores(cases, scorer, model, agg, progress):
        correct += 1 / len(case.candidates) if scores is None else float(pick(scores) == case.target)
        total += 1
    return {
        "scorer": scorer, "aggregate": agg,
        "accuracy": correct / total if total else None, "correct": correct, "total": total,
    }  # fmt: skip
