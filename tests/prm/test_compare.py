import pytest
from rich.console import Console

from clinrl.prm.schema import Swap
from clinrl.prm.synth.compare import compare_error_sets, comparison_table, flatten_profile, profile_error_set
from clinrl.prm.synth.inject import EditPlan, apply_plan
from tests.prm.note_factory import make_gold

GOLD_TEXTS = [["Plan: Continue lisinopril.", "Assessment: Knee pain."], ["Return in 2 weeks."]]


@pytest.fixture()
def tiny():
    gold = make_gold([2, 1], dialogue="we talked about lisinopril and your knee pain", texts=GOLD_TEXTS)
    gold.problems[0].header, gold.problems[1].header = "Hypertension:", "Follow-up instructions:"
    a = apply_plan(gold, EditPlan(swaps=[
        Swap("Step", "1", "1", "Hallucination", "Plan: Continue lisinopril.", "Plan: Continue lisinopril and start warfarin."),
        Swap("Problem", "2", None, "Unhelpful", "Follow-up instructions:", "Next steps:"),
    ]), sample_no=0)  # fmt: skip
    b = apply_plan(gold, EditPlan(swaps=[
        Swap("Step", "1", "2", "Factual Inaccuracy", "Assessment: Knee pain.", "Assessment: Hip pain."),
        Swap("Problem", "1", None, "Hallucination", "Hypertension:", "Gout:"),
    ], step_removals=[("2", "1")]), sample_no=1)  # fmt: skip
    return gold, a, b


def test_profile_figures_on_a_tiny_set(tiny):
    gold, a, b = tiny
    prof = profile_error_set([a, b], [gold])
    assert prof["n_samples"] == 2 and prof["n_cases"] == 1 and prof["n_swaps"] == 4
    assert prof["swaps_per_sample"] == {"mean": 2.0, "dist": {2: 1.0}}
    assert prof["level_share"] == {"Step": 0.5, "Problem": 0.5}
    assert prof["type_mix"]["Step"] == {"Hallucination": 0.25, "Unhelpful": 0.0, "Factual Inaccuracy": 0.25}
    assert prof["type_mix"]["Problem"] == {"Hallucination": 0.25, "Unhelpful": 0.25, "Factual Inaccuracy": 0.0}
    assert prof["steps_removed_per_sample"] == {"mean": 0.5, "dist": {0: 0.5, 1: 0.5}}
    assert prof["share_with_removal"] == 0.5 and prof["share_with_problem_removal"] == 0.0
    gold_chars = len(
        "Hypertension:\nPlan: Continue lisinopril.\nAssessment: Knee pain.\nFollow-up instructions:\nReturn in 2 weeks."
    )
    a_chars = len(
        "Hypertension:\nPlan: Continue lisinopril and start warfarin.\nAssessment: Knee pain.\nNext steps:\nReturn in 2 weeks."
    )
    b_chars = len("Gout:\nPlan: Continue lisinopril.\nAssessment: Hip pain.\nFollow-up instructions:")
    assert prof["length"]["chars_change_rel"] == pytest.approx(
        ((a_chars / gold_chars - 1) + (b_chars / gold_chars - 1)) / 2
    )
    assert prof["length"]["steps_change"] == -0.5
    assert prof["length"]["steps_change_rel"] == pytest.approx(-1 / 6)
    support = prof["dialogue_support"]
    # "continue lisinopril start warfarin": only lisinopril is in the dialogue; the added words are not
    assert support["Step/Hallucination"] == {"new": 0.25, "novel": 0.0, "new_words": 4, "novel_words": 2}
    assert support["Step/Factual Inaccuracy"] == {"new": 0.5, "novel": 0.0, "new_words": 2, "novel_words": 1}
    assert support["Problem/Unhelpful"]["new"] == 0.0 and support["Problem/Hallucination"]["new"] == 0.0
    assert support["Step/Unhelpful"]["new"] is None  # no such swaps
    # without the gold notes, they are rebuilt from the edits: same figures
    assert profile_error_set([a, b]) == prof


def test_comparison_rows_and_table(tiny):
    gold, a, b = tiny
    result = compare_error_sets([a, b], [a], synthetic_gold=[gold], real_gold=[gold])
    rows = {r["metric"]: r for r in result["rows"]}
    assert rows["samples"] == {"metric": "samples", "synthetic": 2, "real": 1, "difference": 1}
    assert rows["share with any removal"]["synthetic"] == 0.5 and rows["share with any removal"]["real"] == 0.0
    assert rows["  share with 1 steps removed"]["real"] == 0.0  # missing in one set counts as 0
    assert rows["step removals per sample"]["difference"] == pytest.approx(0.5)
    assert set(flatten_profile(result["synthetic"])) <= set(rows)
    console = Console(record=True, width=200)
    console.print(comparison_table(result))
    text = console.export_text()
    assert "share with any removal" in text and "0.500" in text and "synthetic" in text
    console.print(comparison_table(result["real"], title="Real only"))
    assert "Real only" in console.export_text()


def test_rows_only_in_the_real_set_stay_in_their_group(tiny):
    gold, a, b = tiny
    metrics = [r["metric"] for r in compare_error_sets([a], [a, b])["rows"]]
    assert metrics.index("  share with 1 steps removed") == metrics.index("  share with 0 steps removed") + 1
