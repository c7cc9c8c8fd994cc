import gzip
import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinrl.cli import main
from clinrl.errors import DataError
from clinrl.prm.schema import Swap, load_notes, note_to_dict
from clinrl.prm.synth import edits
from clinrl.prm.synth.compare import profile_error_set
from clinrl.prm.synth.inject import (
    EditPlan,
    ErrorSynthesizer,
    NoteTooSmallError,
    SynthConfig,
    SynthConfigError,
    apply_plan,
    synthesize,
    synthesize_errors,
)
from clinrl.prm.synth.labels import check_label_consistency
from tests.prm.note_factory import gold_notes, make_gold


@pytest.fixture(scope="module")
def train_gold(prm_data):
    return load_notes(prm_data / "prm_clinic_gold.json.gz")


@pytest.fixture(scope="module")
def train_errors(train_gold):
    start = time.perf_counter()
    notes = synthesize_errors(train_gold, 2, seed=0)
    return notes, time.perf_counter() - start


def _key_pattern(item: dict) -> tuple[str, ...]:
    return tuple(item)


def test_all_training_gold_notes_twice_are_label_consistent(train_gold, train_errors):
    notes, seconds = train_errors
    assert len(notes) == 2 * len(train_gold)
    report = check_label_consistency(notes, train_gold)
    assert report.ok, report.summary()[:2000]
    assert len(notes) / seconds > 500  # thousands per second on a normal machine; generous for CI
    for note in notes:
        assert 2 <= len(note.swaps) <= 5 and len(note.removals) <= 8
        assert all(s.new != s.original for s in note.swaps)
        assert sum(r.level == "Problem" for r in note.removals) <= 1
        assert note.outcome_label == "-"
    assert {n.sample_no for n in notes} == {0, 1}


def test_schema_matches_the_real_error_files(prm_data, train_errors, tmp_path):
    real = json.load(gzip.open(prm_data / "verification_dev_error.json.gz"))
    real_patterns = {_key_pattern(item) for item in real}
    real_swap_keys = {tuple(s) for item in real for s in item["Swapped_info"]}
    real_removal_keys = {tuple(r) for item in real for r in item.get("Removed_info", [])}
    notes, _ = train_errors
    save_path = tmp_path / "syn.json.gz"
    from clinrl.prm.schema import save_notes

    save_notes(notes, save_path)
    ours = json.load(gzip.open(save_path))
    assert {_key_pattern(item) for item in ours} == real_patterns  # which keys appear when, and their order
    assert {tuple(s) for item in ours for s in item["Swapped_info"]} == real_swap_keys
    assert {tuple(r) for item in ours for r in item.get("Removed_info", [])} == real_removal_keys
    for item in ours:
        removed = item.get("Removed_info", [])
        assert item["Total_error_no"] == len(item["Swapped_info"])
        assert item.get("Total_steps_removed") == (sum(r["Error_level"] == "Step" for r in removed) or None)
        assert item.get("Total_problems_removed") == (sum(r["Error_level"] == "Problem" for r in removed) or None)
    assert load_notes(save_path)[0].case_id == notes[0].case_id


def test_mixes_track_the_real_dev_set(prm_data, train_gold):
    real = load_notes(prm_data / "verification_dev_error.json.gz")
    gold = load_notes(prm_data / "verification_dev_gold.json.gz")
    ours = profile_error_set(synthesize_errors(gold, 8, seed=3, pool=train_gold), gold)
    theirs = profile_error_set(real, gold)
    assert abs(ours["swaps_per_sample"]["mean"] - theirs["swaps_per_sample"]["mean"]) < 0.25
    assert abs(ours["level_share"]["Problem"] - theirs["level_share"]["Problem"]) < 0.05
    for level in ("Step", "Problem"):
        for error_type, share in theirs["type_mix"][level].items():
            assert abs(ours["type_mix"][level][error_type] - share) < 0.05
    assert abs(ours["share_with_removal"] - theirs["share_with_removal"]) < 0.08
    assert abs(ours["share_with_problem_removal"] - theirs["share_with_problem_removal"]) < 0.06
    assert abs(ours["steps_removed_per_sample"]["mean"] - theirs["steps_removed_per_sample"]["mean"]) < 0.3
    support = ours["dialogue_support"]
    # hallucinated additions are mostly unsupported by the dialogue; factual/unhelpful edits keep more of it
    assert support["Step/Hallucination"]["novel"] < support["Step/Unhelpful"]["novel"]
    assert support["Step/Hallucination"]["new"] < support["Step/Factual Inaccuracy"]["new"]
    assert support["Problem/Hallucination"]["new"] < support["Problem/Factual Inaccuracy"]["new"]


def test_deterministic_and_order_independent(train_gold):
    subset = train_gold[:40]
    first = [note_to_dict(n) for n in synthesize_errors(subset, 3, seed=7)]
    again = [note_to_dict(n) for n in synthesize_errors(subset, 3, seed=7)]
    other = [note_to_dict(n) for n in synthesize_errors(subset, 3, seed=8)]
    assert first == again and first != other
    reversed_run = [note_to_dict(n) for n in synthesize_errors(subset[::-1], 3, seed=7, pool=subset)]
    key = lambda d: (d["Case_id"], d["Sample_no"])  # noqa: E731
    assert sorted(first, key=key) == sorted(reversed_run, key=key)


def test_config_counts_are_respected(train_gold):
    subset = train_gold[:60]
    config = SynthConfig(min_swaps=3, max_swaps=3, max_removals=0)
    notes = synthesize_errors(subset, 2, config=config)
    assert all(len(n.swaps) == 3 and not n.removals for n in notes)
    assert all(n.total_steps_removed is None and n.total_problems_removed is None for n in notes)
    config = SynthConfig(min_swaps=1, max_swaps=1, max_removals=2, problem_removal_rate=1.0)
    notes = synthesize_errors(subset, 2, config=config)
    assert all(len(n.swaps) == 1 and len(n.removals) <= 2 for n in notes)
    assert all(sum(r.level == "Problem" for r in n.removals) == 1 for n in notes)
    only_problem = SynthConfig(problem_level_share=1.0, problem_type_weights={"Unhelpful": 1.0})
    notes = synthesize_errors(subset, 1, config=only_problem)
    big = [n for n in notes if len(n.problems) + sum(r.level == "Problem" for r in n.removals) >= 5]
    assert big and all(s.level == "Problem" and s.error_type == "Unhelpful" for n in big for s in n.swaps)


@pytest.mark.parametrize(
    "kwargs",
    [dict(min_swaps=0), dict(min_swaps=4, max_swaps=3), dict(problem_removal_rate=1.5),
     dict(step_type_weights={"Typo": 1.0}), dict(max_removals=-1), dict(on_too_small="ignore")],
)  # fmt: skip
def test_bad_config_is_a_clear_error(kwargs):
    with pytest.raises(SynthConfigError):
        SynthConfig(**kwargs)


def test_too_small_notes_are_skipped_and_counted_or_refused():
    tiny = make_gold([0], case_id="tiny")  # a single header: one swappable item
    ok = make_gold([2, 1], case_id="ok")
    result = synthesize([tiny, ok], 2)
    assert result.skipped == ["tiny"] and {n.case_id for n in result.notes} == {"ok"}
    assert [n.case_id for n in synthesize_errors([tiny, ok], 1)] == ["ok"]
    with pytest.raises(NoteTooSmallError) as err:
        synthesize([tiny], 1, config=SynthConfig(on_too_small="raise"))
    assert isinstance(err.value, DataError) and "tiny" in str(err.value)
    one = synthesize([tiny], 1, config=SynthConfig(min_swaps=1)).notes
    assert len(one) == 1 and [s.level for s in one[0].swaps] == ["Problem"]
    assert check_label_consistency(one, [tiny]).ok


def test_apply_plan_rejects_invalid_plans():
    gold = make_gold([2])
    header = gold.problems[0].header
    for plan in (
        EditPlan(swaps=[Swap("Problem", "1", None, "Unhelpful", header, header)]),  # no change
        EditPlan(swaps=[Swap("Problem", "2", None, "Unhelpful", "x", "y")]),  # no such problem
        EditPlan(swaps=[Swap("Step", "1", "1", "Unhelpful", "not the text", "y")]),
        EditPlan(step_removals=[("1", "5")]),
        EditPlan(problem_removals=["1", "1"]),
    ):
        with pytest.raises(DataError):
            apply_plan(gold, plan, sample_no=0)


class _UpperCaser:
    """A stand-in for an LLM-backed synthesizer: only ``propose`` is needed."""

    def propose(self, gold, rng):
        problem = gold.problems[0]
        return EditPlan(
            swaps=[Swap("Problem", problem.no, None, "Unhelpful", problem.header, problem.header.upper() + "!")]
        )


def test_custom_synthesizers_plug_in():
    synth: ErrorSynthesizer = _UpperCaser()
    gold = make_gold([1, 1])
    notes = synthesize([gold], 2, synthesizer=synth).notes
    assert [n.sample_no for n in notes] == [0, 1]
    assert notes[0].problems[0].label == "-" and notes[0].problems[0].header.endswith("!")
    assert check_label_consistency(notes, [gold]).ok


@settings(max_examples=120, deadline=None)
@given(gold_notes(), st.integers(0, 2**16), st.integers(1, 3), st.integers(0, 4))
def test_any_small_gold_note_gives_consistent_samples_or_a_clear_refusal(gold, seed, min_swaps, max_removals):
    config = SynthConfig(min_swaps=min_swaps, max_swaps=min_swaps + 2, max_removals=max_removals)
    items = len(gold.problems) + gold.n_steps
    result = synthesize([gold], 2, seed=seed, config=config)
    if items < min_swaps:
        assert result.notes == [] and len(result.skipped) == 1
        return
    assert len(result.notes) == 2 and not result.skipped
    report = check_label_consistency(result.notes, [gold])
    assert report.ok, report.summary()
    for note in result.notes:
        assert min_swaps <= len(note.swaps) <= min(min_swaps + 2, items)
        assert len(note.removals) <= max_removals
        assert all(s.new != s.original for s in note.swaps)


# ------------------------------------------------------------------------------------ operators
CTX = edits.RewriteContext(dialogue="[doctor] your left knee hurts? [patient] yes, since two weeks.", case_id="A")


@pytest.mark.parametrize(
    "op, text, check",
    [
        (edits.swap_drug, "Plan: Continue lisinopril 20 mg daily.",
         lambda new: "lisinopril" not in new and any(d in new for d in ("enalapril", "ramipril", "benazepril", "captopril"))),
        (edits.swap_opposite, "Left knee pain.", lambda new: new == "Right knee pain."),
        (edits.change_number, "Plan: Continue lisinopril 20 mg daily.", lambda new: "20" not in new and " mg daily" in new),
        (edits.change_number, "Follow up in 1 week.", lambda new: new.endswith("weeks.") and "1 " not in new),
        (edits.swap_timing, "Take it twice daily.", lambda new: new == "Take it once daily."),
        (edits.toggle_negation, "Patient denies chest pain.", lambda new: new == "Patient reports chest pain."),
        (edits.toggle_negation, "No fever.", lambda new: new == "Fever."),
        (edits.swap_test, "Order an MRI of the spine.", lambda new: "MRI" not in new),
        (edits.negate_whole, "Refer to cardiology.", lambda new: new == "Do not refer to cardiology."),
        (edits.qualify_header, "Hypertension", lambda new: new.endswith("hypertension") and " " in new),
        (edits.vague_header, "Hypertension:", lambda new: new.endswith(":") and "pressure" in new.lower()),
        (edits.vague_step, "Plan: Start metformin 500 mg twice daily.", lambda new: new.startswith("Plan: ") and "metformin" not in new),
        (edits.strip_specifics, "Return to clinic in 4 weeks, or sooner if needed.", lambda new: new == "Return to clinic."),
        (edits.add_finding, "Assessment: Knee is swollen.", lambda new: new.startswith("Assessment: Knee is swollen ")),
        (edits.add_plan, "Plan: Start ibuprofen.", lambda new: new.startswith("Plan: Start ibuprofen") and len(new) > 25),
    ],
)  # fmt: skip
def test_operators(op, text, check):
    new = op(text, CTX, random.Random(1))
    assert new is not None and new != text and check(new), new


def test_hallucinations_borrow_from_other_cases_only():
    own = make_gold([2], case_id="A", texts=[["Assessment: own finding alpha.", "Assessment: own finding beta."]])
    other = make_gold([1], case_id="B", texts=[["Assessment: shingles on the trunk."]])
    ctx = edits.RewriteContext(dialogue="", case_id="A", pool=edits.TextPool.from_notes([own, other]))
    for seed in range(20):
        new = edits.pool_step("Assessment: own finding alpha.", ctx, random.Random(seed))
        assert new in (None, "Assessment: shingles on the trunk.")
    supported = edits.RewriteContext(dialogue="shingles on the trunk", case_id="A", pool=ctx.pool)
    assert edits.pool_step("Assessment: x.", supported, random.Random(0)) is None  # the dialogue supports it


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60), st.sampled_from(sorted(edits.OPERATORS)), st.integers(0, 1000))
def test_rewrite_always_changes_any_text(text, key, seed):
    level, error_type = key
    assert edits.rewrite(text, level, error_type, CTX, random.Random(seed)) != text


def test_rewrite_rejects_unknown_types():
    with pytest.raises(edits.RewriteError):
        edits.rewrite("x", "Step", "Typo", CTX, random.Random(0))


# ------------------------------------------------------------------------------------ CLI
def test_synth_errors_cli(prm_data, tmp_path, capsys):
    out = tmp_path / "syn.json"
    main(["prm", "synth-errors", "--gold", str(prm_data / "verification_dev_gold.json.gz"), "--out", str(out),
          "--per-note", "2", "--seed", "5", "--max-swaps", "4", "--report"])  # fmt: skip
    captured = capsys.readouterr()
    notes = load_notes(out)
    assert len(notes) == 200 and all(2 <= len(n.swaps) <= 4 for n in notes)
    assert check_label_consistency(notes, load_notes(prm_data / "verification_dev_gold.json.gz")).ok
    assert "swaps per sample" in captured.out and "200 error samples" in captured.err
    assert notes[0].problems and notes[0].problems[0].header not in captured.out + captured.err  # no note text


def test_synth_errors_cli_compare(prm_data, tmp_path, capsys):
    main(["prm", "synth-errors", "--gold", str(prm_data / "verification_dev_gold.json.gz"),
          "--out", str(tmp_path / "s.json.gz"), "--per-note", "1",
          "--compare-with", str(prm_data / "verification_dev_error.json.gz")])  # fmt: skip
    printed = capsys.readouterr().out
    assert "synthetic" in printed and "real" in printed and "share with any removal" in printed


def test_synth_errors_cli_user_mistakes(prm_data, tmp_path, capsys):
    gold = str(prm_data / "verification_dev_gold.json.gz")
    with pytest.raises(SystemExit) as err:
        main(
            [
                "prm",
                "synth-errors",
                "--gold",
                gold,
                "--out",
                str(tmp_path / "x.json"),
                "--min-swaps",
                "4",
                "--max-swaps",
                "3",
            ]
        )
    assert err.value.code == 2 and "--min-swaps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["prm", "synth-errors", "--gold", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.json")])
    assert err.value.code == 2 and "missing.json" in capsys.readouterr().err


def test_error_samples_are_not_accepted_as_gold(prm_data):
    errors = load_notes(prm_data / "verification_dev_error.json.gz")[:3]
    with pytest.raises(DataError, match="not a gold note"):
        synthesize_errors(errors, 1)


@pytest.mark.parametrize("text", ["Start loſartan.", "Patient preſented with pain.", "ＭＲＩ ٣ weeks", "Left Kidney"])
def test_operators_survive_case_folding_oddities(text):
    for (level, error_type), (ops, _) in edits.OPERATORS.items():
        for op, _weight in ops:
            new = op(text, CTX, random.Random(0))
            assert new is None or isinstance(new, str)
        assert edits.rewrite(text, level, error_type, CTX, random.Random(0)) != text
