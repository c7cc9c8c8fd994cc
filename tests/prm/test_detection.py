"""The sharper step-level metrics of eval-selection (earliest error, recall at a false-alarm rate, calibration)
and the no-model lexical verifier, on inputs whose answers are known by construction."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.errors import ClinrlError
from clinrl.prm.evaluate import (
    DetectionStats,
    calibration,
    earliest_error_accuracy,
    evaluate_selection,
    false_alarm_threshold,
    group_cases,
)
from clinrl.prm.lexical import NO_SIGNAL, LexicalScorer, dialogue_coverage, lexical_p_plus
from clinrl.prm.schema import load_notes
from clinrl.prm.score import NoteScore, ScoreConfig, SlotScore, slot_layout
from tests.prm.note_factory import make_gold


# ------------------------------------------------------------------------------ false-alarm threshold
def test_false_alarm_threshold_flags_the_allowed_share():
    ok = [i / 100 for i in range(1, 21)]  # 20 distinct '+' scores: 5 % allows one flagged
    t = false_alarm_threshold(ok, 0.05)
    assert t == 0.02 and sum(p < t for p in ok) == 1
    assert false_alarm_threshold(ok, 0.10) == 0.03
    assert false_alarm_threshold(ok, 0.0) == 0.01  # nothing flagged


def test_false_alarm_threshold_never_splits_a_tie():
    ok = [0.1, 0.1, *[0.5 + i / 100 for i in range(18)]]  # 1 allowed, but the lowest score is held by 2
    t = false_alarm_threshold(ok, 0.05)
    assert t == 0.1 and sum(p < t for p in ok) == 0
    assert false_alarm_threshold([0.9] * 50, 0.05) == 0.9  # a constant scorer flags nothing


def test_false_alarm_threshold_edges():
    assert false_alarm_threshold([], 0.05) is None
    with pytest.raises(ClinrlError, match="false-alarm rate"):
        false_alarm_threshold([0.5], 1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.7, 1.0]), min_size=1, max_size=40),
       st.sampled_from([0.0, 0.05, 0.2, 0.5]))  # fmt: skip
def test_false_alarm_threshold_is_the_largest_within_the_rate(ok, rate):
    t = false_alarm_threshold(ok, rate)
    assert sum(p < t for p in ok) <= rate * len(ok) + 1e-9
    above = [p for p in set(ok) if p > t]  # the next possible threshold already flags t's slots too
    assert t in ok and sum(p <= t for p in ok) > rate * len(ok) or not above


# ------------------------------------------------------------------------------ earliest error
def test_earliest_error_perfect_and_constant_scorers():
    notes = [  # (flagged, is_error) per slot
        ([False, True, False], [False, True, True]),  # erroneous, first error at 1: found at 1
        ([False, False], [False, False]),  # clean, nothing flagged
    ]
    assert earliest_error_accuracy(notes) == {
        "n_error_notes": 1, "n_clean_notes": 1, "acc_error": 1.0, "acc_clean": 1.0, "f1": 1.0,
    }  # fmt: skip
    never = [([False] * len(e), e) for _, e in notes]
    got = earliest_error_accuracy(never)
    assert (got["acc_error"], got["acc_clean"], got["f1"]) == (0.0, 1.0, 0.0)


def test_earliest_error_needs_the_first_error_exactly():
    errors = [False, True, True, False]
    late = ([False, False, True, False], errors)  # flags the second error only
    early = ([True, True, True, False], errors)  # flags a good slot before it
    right = ([False, True, True, True], errors)  # later flags do not matter
    got = earliest_error_accuracy([late, early, right, ([True, False], [False, False])])
    assert got["acc_error"] == pytest.approx(1 / 3) and got["acc_clean"] == 0.0 and got["f1"] == 0.0
    assert earliest_error_accuracy([right])["f1"] is None  # no clean note: no harmonic mean
    mixed = earliest_error_accuracy([right, late, ([False], [False])])
    assert mixed["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)


# ------------------------------------------------------------------------------ calibration
def test_calibration_by_hand():
    assert calibration([0.7] * 10, [True] * 7 + [False] * 3)["ece"] == pytest.approx(0.0)
    got = calibration([1.0, 1.0, 0.0, 0.0], [True, False, False, False])
    assert got["ece"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.0)  # P = 1 falls in the top bin
    assert got["brier"] == pytest.approx((0 + 1 + 0 + 0) / 4)
    two_bins = calibration([0.05, 0.05, 0.95, 0.95], [False, True, True, True])
    assert two_bins["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    assert calibration([], []) == {"ece": None, "brier": None}


# ------------------------------------------------------------------------------ DetectionStats
def _stats(rows, edits=None, rate=0.05) -> DetectionStats:
    """rows: (note, kind, P(+), is_error) per slot, in slot order."""
    stats = DetectionStats(rate)
    for note, kind, p, err in rows:
        stats.p_plus.append(p)
        stats.is_error.append(err)
        stats.kinds.append(kind)
        stats.note_of.append(note)
    stats.edits.update(edits or {})
    stats.n_notes = len({r[0] for r in rows})
    return stats


def test_thresholds_are_per_slot_group():
    """Steps '+' at 0.9 and errors at 0.6; completeness '+' at 0.3 and errors at 0.1: one pooled threshold
    cannot separate both, a threshold per group does."""
    rows = [(n, "step", 0.9, False) for n in range(40)] + [(n, "note_completeness", 0.3, False) for n in range(40)]
    rows += [(40, "step", 0.6, True), (41, "note_completeness", 0.1, True)]
    edits = {"Factual Inaccuracy": [0.6], "Problem Incompleteness": [0.1]}
    det = _stats(rows, edits).to_dict()
    at = det["at_false_alarm"]
    assert at["thresholds"] == {"content": 0.9, "completeness": 0.3}
    assert at["false_alarm"] == {"content": 0.0, "completeness": 0.0}
    assert at["by_error_type"]["Factual Inaccuracy"] == {"detected": 1, "total": 1, "recall": 1.0}
    assert at["by_error_type"]["Problem Incompleteness"]["recall"] == 1.0
    assert at["by_error_type"]["Hallucination"] == {"detected": 0, "total": 0, "recall": None}
    pb = det["processbench"]
    assert pb["at_false_alarm"]["f1"] == 1.0  # 40 clean notes, 2 erroneous, each first error found
    assert (pb["n_clean_notes"], pb["n_error_notes"]) == (40, 2)
    assert pb["at_threshold"]["acc_clean"] == 0.0  # at 0.5 every completeness '+' (0.3) is flagged
    assert det["by_error_type"]["Factual Inaccuracy"]["rate"] == 0.0  # the old 0.5 rate misses 0.6


def test_end_of_note_is_not_a_position():
    rows = [(0, "step", 0.9, False), (0, "end_of_note", 0.1, True), (1, "step", 0.1, True)]
    pb = _stats(rows).processbench(lambda kind: 0.5)
    assert (pb["n_error_notes"], pb["n_clean_notes"], pb["f1"]) == (1, 1, 1.0)


class _Constant:
    """A scorer that gives every slot the same P(+) (each note on its own)."""

    head, objective, config, default_aggregate = "constant", "prm", ScoreConfig(), "mean"

    def __init__(self, p: float | None = None):
        self.p, self.stats = p, {}

    def score_notes(self, notes):
        def p_of(meta):  # None: the oracle, 0.1 at '-' slots and 0.9 at '+'
            return self.p if self.p is not None else (0.1 if meta["label"] == "-" else 0.9)

        return [NoteScore([SlotScore(index=k, p_plus=p_of(m), **m) for k, m in enumerate(slot_layout(n))])
                for n in notes]  # fmt: skip


@pytest.fixture(scope="module")
def dev_cases(prm_data):
    gold = load_notes(prm_data / "verification_dev_gold.json.gz")[:4]
    ids = {g.case_id for g in gold}
    errors = [e for e in load_notes(prm_data / "verification_dev_error.json.gz") if e.case_id in ids]
    return group_cases(gold, errors)[0]


def test_oracle_and_constant_scorers_on_dev_cases(dev_cases):
    oracle = evaluate_selection(dev_cases, "prm", model=_Constant()).to_dict()["overall"]["detection"]
    pb = oracle["processbench"]
    assert pb["n_clean_notes"] >= len(dev_cases) and pb["n_error_notes"] > 0
    assert pb["at_threshold"]["f1"] == 1.0 and pb["at_false_alarm"]["f1"] == 1.0
    recalls = [v["recall"] for v in oracle["at_false_alarm"]["by_error_type"].values() if v["total"]]
    assert recalls and all(r == 1.0 for r in recalls)
    assert oracle["calibration"]["ece_all"] == pytest.approx(0.1)
    assert oracle["calibration"]["brier_all"] == pytest.approx(0.01)

    flat = evaluate_selection(dev_cases, "prm", model=_Constant(0.9)).to_dict()["overall"]["detection"]
    for at in ("at_threshold", "at_false_alarm"):
        got = flat["processbench"][at]
        assert (got["acc_clean"], got["acc_error"], got["f1"]) == (1.0, 0.0, 0.0)
    assert all(v["detected"] == 0 for v in flat["at_false_alarm"]["by_error_type"].values())
    share_ok = 1 - flat["n_error_slots"] / flat["n_slots"]
    assert flat["calibration"]["ece_all"] == pytest.approx(abs(0.9 - share_ok))


def test_false_alarm_rate_is_a_parameter(dev_cases):
    wide = evaluate_selection(dev_cases, "lexical", false_alarm_rate=0.5).to_dict()["overall"]["detection"]
    narrow = evaluate_selection(dev_cases, "lexical").to_dict()["overall"]["detection"]
    assert wide["at_false_alarm"]["rate"] == 0.5 and narrow["at_false_alarm"]["rate"] == 0.05
    assert wide["at_false_alarm"]["thresholds"]["content"] > narrow["at_false_alarm"]["thresholds"]["content"]
    assert all(v <= 0.05 for v in narrow["at_false_alarm"]["false_alarm"].values())
    with pytest.raises(ClinrlError, match="false-alarm rate"):
        evaluate_selection(dev_cases, "lexical", false_alarm_rate=1.0)


# ------------------------------------------------------------------------------ lexical verifier
DIALOGUE = "The patient has knee pain. Take ibuprofen 400 mg."


def _note():
    """Header and first step fully in the dialogue; the second step brings 3 words the dialogue never uses
    (warfarin, atrial, fibrillation). Dialogue content words: knee, pain, take, ibuprofen, 400 ("the",
    "has" are stop words; "patient", "mg" generic note words); the note uses all but "take"."""
    note = make_gold([2], dialogue=DIALOGUE,
                     texts=[["Start ibuprofen 400 mg daily.", "Start warfarin for atrial fibrillation."]])  # fmt: skip
    note.problems[0].header = "Knee pain:"
    return note


def test_lexical_scorer_p_plus_on_a_constructed_note():
    scored = LexicalScorer().score_note(_note())
    got = {s.where: s.p_plus for s in scored.slots}
    assert got == {
        "P1 header": 1.0, "P1 S1": 1.0, "P1 S2": 1 / (1 + 3),
        "P1 complete": NO_SIGNAL, "note complete": 4 / 5, "end": 1 / 4 * 4 / 5,
    }  # fmt: skip
    assert [s.label for s in scored.slots] == [s["label"] for s in slot_layout(_note())]
    assert scored.score("mean") == pytest.approx(sum(math.log(p) for p in got.values()) / 6)


def test_lexical_scorer_reads_the_given_dialogue():
    other = "Knee pain on warfarin for atrial fibrillation; take ibuprofen 400."
    scored = LexicalScorer().score_notes([_note()], dialogue=other)[0]
    assert scored.slots[2].p_plus == 1.0  # the second step is now supported
    assert lexical_p_plus("Start warfarin", "") == 0.5 and dialogue_coverage(_note(), "") == 1.0
    scorer = LexicalScorer()
    scorer.score_notes([_note(), _note()])
    assert scorer.stats == {"rules": 2} and scorer.default_aggregate == "mean"
