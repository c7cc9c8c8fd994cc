"""Note-generation rewards: each reward-hacking guard against a constructed degenerate note, the callables'
contract (one float per completion, in order; the PRM loaded once; the fast path), format and completeness."""

from __future__ import annotations

import math

import pytest

from clinrl.errors import ClinrlError
from clinrl.notes import rewards as R
from clinrl.notes.dialogues import load_dialogues, render_note
from clinrl.prm.schema import Note, Problem
from clinrl.prm.score import FLOOR, NoteScore, SlotScore, slot_layout
from tests.notes.tiny_models import tiny_prm_dir

WEIGHTS = [1.0, 0.5, 1.0, 1.0]  # prm, format, completeness, guard (the recipe's)


@pytest.fixture(scope="module")
def cases():
    found, _ = load_dialogues()
    return found


@pytest.fixture(scope="module")
def case(cases):
    """A gold case with several problems (reference size drives the limits)."""
    return next(c for c in cases if len(c.reference.problems) >= 4 and c.reference.n_steps >= 10)


def columns(case, n: int) -> dict:
    return {"dialogue": [case.dialogue] * n, **{k: [v] * n for k, v in case.stats.items()}}


class StubScorer:
    """A PRM that is fooled: P(+) = ``fooled`` for every note except ``honest_text``'s, which gets ``honest``."""

    default_aggregate = "mean"

    def __init__(self, honest_note: Note | None = None, honest: float = 0.01, fooled: float = 1.0):
        self.honest_items = honest_note.items() if honest_note is not None else None
        self.honest, self.fooled = honest, fooled
        self.calls: list[int] = []

    def score_notes(self, notes, dialogue=None):
        self.calls.append(len(notes))
        out = []
        for note in notes:
            p = self.honest if note.items() == self.honest_items else self.fooled
            out.append(NoteScore([SlotScore(index=k, p_plus=p, **m) for k, m in enumerate(slot_layout(note))]))
        return out


# --------------------------------------------------------------------------------------- degenerate notes
def _reasonable(case) -> str:
    return render_note(case.reference)


def _one_problem(case) -> str:
    return render_note(Note(problems=case.reference.problems[:1]))


def _repeated_steps(case) -> str:
    problems = [Problem(p.header, p.no, [p.steps[0]] * 4) for p in case.reference.problems]
    return render_note(Note(problems=problems))


def _copy_of_dialogue(case) -> str:
    lines = [line.strip() for line in case.dialogue.split("\n") if line.strip()]
    headers = [p.header for p in case.reference.problems]
    chunk = max(1, len(lines) // len(headers))
    blocks = [h + "".join(f"\n- {line}" for line in lines[i * chunk : (i + 1) * chunk]) for i, h in enumerate(headers)]
    return "\n\n".join(blocks)


def _over_long(case, cases) -> str:
    others = [c for c in cases if c.case_id != case.case_id][:8]
    return "\n\n".join([_reasonable(case)] + [render_note(c.reference) for c in others])


DEGENERATE = {
    "empty": (lambda case, cases: "", "empty"),
    "whitespace": (lambda case, cases: "  \n\n ", "empty"),
    "one_problem": (lambda case, cases: _one_problem(case), "too_few_problems"),
    "repeated_steps": (lambda case, cases: _repeated_steps(case), "repeated"),
    "copy_of_dialogue": (lambda case, cases: _copy_of_dialogue(case), "copies_dialogue"),
    "over_long": (_over_long, "too_long"),
}


def _rewards(scorer, aggregate="mean"):
    return [R.PRMNoteReward(scorer, aggregate), R.FormatReward(), R.CompletenessReward(), R.GuardReward()]


def test_reasonable_note_is_admissible(case):
    check = R.check_note(_reasonable(case), case.dialogue, R.Reference(**_ref(case)))
    assert check.admissible and check.violations == ()


def _ref(case) -> dict:
    s = case.stats
    return {
        "problems": s["ref_problems"],
        "steps": s["ref_steps"],
        "words": s["ref_words"],
        "headers": tuple(s["ref_headers"]),
    }


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
def test_each_guard_fires_on_its_degenerate_note(kind, case, cases):
    build, guard = DEGENERATE[kind]
    check = R.check_note(build(case, cases), case.dialogue, R.Reference(**_ref(case)))
    assert guard in check.violations


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
@pytest.mark.parametrize("aggregate", ["mean", "sum_log", "min", "last"])
def test_degenerate_note_cannot_beat_a_reasonable_one_even_when_the_prm_is_fooled(kind, aggregate, case, cases):
    reasonable = _reasonable(case)
    degenerate = DEGENERATE[kind][0](case, cases)
    # the PRM loves every note except the reasonable one (P(+) 0.01 there, 1.0 elsewhere)
    scorer = StubScorer(R.check_note(reasonable, case.dialogue).note, honest=0.01, fooled=1.0)
    total = R.total_rewards(_rewards(scorer, aggregate), [reasonable, degenerate], WEIGHTS, **columns(case, 2))
    assert total[1] < total[0], (kind, total)
    prm = R.PRMNoteReward(scorer, aggregate)([reasonable, degenerate], **columns(case, 2))
    assert prm[1] <= prm[0]  # the PRM term alone: the degenerate note is floored


@pytest.mark.parametrize("kind", sorted(DEGENERATE))
def test_degenerate_note_loses_under_the_tiny_prm(kind, case, cases):
    from clinrl.prm.score import load_scorer

    scorer = load_scorer(tiny_prm_dir())
    notes = [_reasonable(case), DEGENERATE[kind][0](case, cases)]
    total = R.total_rewards(_rewards(scorer), notes, WEIGHTS, **columns(case, 2))
    assert total[1] < total[0]


def test_sum_log_floor_is_below_every_admissible_note(case):
    reward = R.PRMNoteReward(StubScorer(), "sum_log")
    limits = R.Limits.of(R.Reference(**_ref(case)), reward.guards)
    assert reward.floor(limits) == pytest.approx(math.log(FLOOR) * limits.max_slots)
    # the worst admissible note: the longest one, with P(+) at the floor in every slot
    assert reward.floor(limits) <= math.log(FLOOR) * (2 * limits.max_problems + limits.max_steps + 2)
    assert R.PRMNoteReward(StubScorer(), "mean").floor(limits) == pytest.approx(math.log(FLOOR))


def test_relative_floor_sits_below_the_worst_admissible_note_of_the_dialogue(case, cases):
    other = next(c for c in cases if c.case_id != case.case_id and len(c.reference.problems) >= 2)
    shorter = render_note(Note(problems=case.reference.problems[:2]))
    texts = [_reasonable(case), "", shorter, _one_problem(other), _reasonable(other), ""]
    owners = [case, case, case, other, other, case]
    cols = {"dialogue": [c.dialogue for c in owners], **{k: [c.stats[k] for c in owners] for k in case.stats}}

    class Scorer(StubScorer):
        def score_notes(self, notes, dialogue=None):
            return [NoteScore([SlotScore(index=k, p_plus=0.9 ** (1 + j), **m) for k, m in enumerate(slot_layout(n))])
                    for j, n in enumerate(notes)]  # fmt: skip

    got = R.PRMNoteReward(Scorer(), "mean", R.GuardConfig(floor_margin=0.5))(texts, **cols)
    worst = min(got[0], got[2])
    assert got[1] == got[5] == pytest.approx(worst - 0.5)
    assert got[3] == pytest.approx(got[4] - 0.5)  # the other dialogue's own worst admissible note
    alone = R.PRMNoteReward(Scorer(), "mean")([""], **columns(case, 1))
    assert alone == [pytest.approx(math.log(FLOOR))]  # nothing admissible to sit below: the absolute floor
    with pytest.raises(ClinrlError, match="floor"):
        R.GuardConfig(floor="zero")


def test_gold_notes_are_almost_all_admissible(cases):
    ok = sum(R.check_note(render_note(c.reference), c.dialogue, R.Reference(**_ref(c))).admissible for c in cases)
    assert ok / len(cases) > 0.95


def test_limits_scale_with_the_reference_and_fall_back_without_one():
    g = R.GuardConfig()
    small, big = R.Limits.of(R.Reference(2, 5, 60), g), R.Limits.of(R.Reference(8, 30, 400), g)
    assert small.min_problems == 2 and big.min_problems == 4
    assert small.max_steps < big.max_steps and small.max_words < big.max_words
    one = R.Limits.of(R.Reference(1, 3, 40), g)
    assert one.min_problems == 1  # never more than the reference itself
    none = R.Limits.of(R.Reference(), g)
    assert (none.min_problems, none.max_problems) == (g.min_problems, g.default_max_problems)


# --------------------------------------------------------------------------------------- contract
def test_one_float_per_completion_in_order_grouped_by_dialogue(cases):
    a, b = cases[0], cases[1]

    class LengthScorer(StubScorer):
        def score_notes(self, notes, dialogue=None):
            self.calls.append((dialogue, len(notes)))
            return [NoteScore([SlotScore(index=k, p_plus=1 / (1 + note.n_steps), **m) for k, m in enumerate(slot_layout(note))])
                    for note in notes]  # fmt: skip

    notes_a = [render_note(Note(problems=a.reference.problems[:k])) for k in (2, len(a.reference.problems))]
    notes_b = [render_note(Note(problems=b.reference.problems[:k])) for k in (len(b.reference.problems), 2)]
    completions = [notes_a[0], notes_b[0], "", notes_a[1], notes_b[1]]
    owners = [a, b, a, a, b]
    cols = {"dialogue": [c.dialogue for c in owners], **{k: [c.stats[k] for c in owners] for k in a.stats}}
    scorer = LengthScorer()
    reward = R.PRMNoteReward(scorer, "mean", R.GuardConfig(floor="absolute"))
    got = reward(completions, **cols)
    assert len(got) == 5 and all(isinstance(v, float) for v in got)
    one_by_one = [reward([c], **{k: [v[i]] for k, v in cols.items()})[0] for i, c in enumerate(completions)]
    assert got == pytest.approx(one_by_one)
    assert got[2] == pytest.approx(math.log(FLOOR))  # the empty one
    # one scorer call per dialogue in the batch (the empty note is never scored)
    assert sorted(scorer.calls[:2], key=str) == sorted([(a.dialogue, 2), (b.dialogue, 2)], key=str)
    # chat-message completions give the same values
    chats = [[{"role": "assistant", "content": c}] for c in completions]
    assert reward(chats, **cols) == pytest.approx(got)
    for fn in (R.FormatReward(), R.CompletenessReward(), R.GuardReward()):
        values = fn(completions, **cols)
        assert len(values) == 5 and all(isinstance(v, float) for v in values)


def test_prm_is_loaded_once_and_scores_with_the_fast_path(monkeypatch, case):
    from clinrl.notes.grpo import NotesGRPOConfig, build_rewards
    from clinrl.prm import score as score_module

    loads = []
    real = score_module.load_scorer

    def counting(path, config=None):
        loads.append(path)
        return real(path, config)

    monkeypatch.setattr(R, "load_scorer", counting)
    cfg = NotesGRPOConfig(model="-", prm=str(tiny_prm_dir()), output_dir="-")
    rewards = build_rewards(cfg)
    assert [r.__name__ for r in rewards] == ["prm", "format", "completeness", "guard"] and len(loads) == 1
    prm = rewards[0]
    notes = [_reasonable(case), render_note(Note(problems=case.reference.problems[:3]))] * 2
    first = prm(notes, **columns(case, 4))
    prm(notes, **columns(case, 4))
    assert len(loads) == 1
    assert prm.stats["path_fast"] == 8 and prm.stats.get("path_reference", 0) == 0
    slow = R.PRMNoteReward(real(tiny_prm_dir(), score_module.ScoreConfig(fast=False)), "mean")
    assert first == pytest.approx(slow(notes, **columns(case, 4)), abs=1e-4)


def test_prm_reward_needs_a_dialogue_column():
    with pytest.raises(ClinrlError, match="dialogue"):
        R.PRMNoteReward(StubScorer(), "mean")(["Asthma:\n- Continue the inhaler twice daily."])
    with pytest.raises(ClinrlError, match="aggregate"):
        R.PRMNoteReward(StubScorer(), "median")
    with pytest.raises(ClinrlError, match="unknown reward"):
        R.build_reward("length")


# --------------------------------------------------------------------------------------- format, completeness
def test_format_reward():
    fmt = R.FormatReward()
    good = "Hypertension:\n- Blood pressure is well controlled.\n- Continue lisinopril 10 mg daily.\n\nFollow-up instructions:\n- Return in three months."
    assert fmt([good]) == [1.0]
    assert fmt([""]) == [0.0]
    no_header = "The patient is doing well today. Continue the current medication."
    assert fmt([no_header])[0] == pytest.approx(2 / 3)
    short_steps = "Hypertension:\n- Stable.\n- Continue."
    assert fmt([short_steps])[0] == pytest.approx(2 / 3)
    assert fmt(["Hypertension:\n\nDiabetes:\n- Continue metformin twice daily."])[0] < 1.0


def test_completeness_reward(case):
    full, half = _reasonable(case), _one_problem(case)
    got = R.CompletenessReward()([full, half, ""], **columns(case, 3))
    assert got[0] == pytest.approx(1.0) and 0 < got[1] < got[0] and got[2] == 0.0
    # without a reference: distinct problems over min_problems
    assert R.CompletenessReward()(["Asthma:\n- Continue the inhaler.\n\nAsthma:\n- Continue the inhaler daily."]) == [
        0.5
    ]
    assert R.header_coverage(["Follow up:", "High blood pressure"], ["Follow-up instructions:", "Hypertension"]) == 0.5
