import gzip
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinrl.cli import main
from clinrl.prm.schema import NoteSchemaError, Removal, Swap, load_notes, note_from_dict, note_to_dict
from clinrl.prm.synth.labels import (
    EditError,
    check_label_consistency,
    expected_labels,
    label_positions,
    relabel,
    restore_gold,
)
from tests.prm.note_factory import JSON, make_gold

# The label noise of verification_dev_error.json.gz: five swaps whose New_content equals their
# Original_content, so no edit landed, yet the position is labelled '-' (found by check_label_consistency;
# every other label of the 768 samples follows the rules in clinrl.prm.synth.labels).
KNOWN_NOISY = {
    ("A_Validate_18", 5, "Problem 1 header"),
    ("Dialogue_G_1256", 6, "Problem 2 Step 2"),
    ("Dialogue_G_1289", 1, "Problem 1 Step 4"),
    ("Dialogue_G_1289", 6, "Problem 1 Step 3"),
    ("Dialogue_G_1289", 7, "Problem 1 Step 2"),
}


@pytest.fixture(scope="module")
def dev(prm_data):
    return (
        load_notes(prm_data / "verification_dev_error.json.gz"),
        load_notes(prm_data / "verification_dev_gold.json.gz"),
    )


def test_real_dev_errors_follow_the_rules_except_known_noise(dev):
    errors, gold = dev
    report = check_label_consistency(errors, gold)
    assert report.n_samples == 768 and report.gold_checked
    assert report.issues == []  # totals, numbering, Original/New_content and removed content all agree
    found = {(m.case_id, m.sample_no, m.position) for m in report.mismatches}
    assert found == KNOWN_NOISY
    assert all(m.stored == "-" and m.expected == "+" and "unchanged" in m.reason for m in report.mismatches)
    assert report.noisy_samples == sorted({(c, s) for c, s, _ in KNOWN_NOISY})


def test_known_noise_is_exactly_the_no_op_swaps(prm_data):
    raw = json.load(gzip.open(prm_data / "verification_dev_error.json.gz"))
    no_ops = set()
    for item in raw:
        for swap in item["Swapped_info"]:
            if swap["New_content"] == swap["Original_content"]:
                where = f"Problem {swap['Problem_no']}" + (
                    f" Step {swap['Step_no']}" if swap["Error_level"] == "Step" else " header"
                )
                no_ops.add((item["Case_id"], item["Sample_no"], where))
    assert no_ops == KNOWN_NOISY
    # counting no-op swaps as edits, every stored label is reproduced
    notes = load_notes(prm_data / "verification_dev_error.json.gz")
    for note in notes:
        assert [lab for _, lab in expected_labels(note, count_noop_swaps=True)] == [
            lab for _, lab in label_positions(note)
        ]


def test_expected_labels_line_up_with_note_labels(dev):
    errors, _ = dev
    noisy = {(c, s) for c, s, _ in KNOWN_NOISY}
    for note in errors:
        in_note = [lab for pos, lab in expected_labels(note) if not pos.removed]
        assert len(in_note) == len(note.labels())
        if (note.case_id, note.sample_no) not in noisy:
            assert in_note == note.labels()


def test_restore_gold_rebuilds_every_gold_note(dev):
    errors, gold = dev
    by_case = {g.case_id: note_to_dict(g) for g in gold}
    for note in errors:
        assert note_to_dict(restore_gold(note)) == by_case[note.case_id]


def test_real_data_edge_cases_are_labelled_as_documented(dev):
    errors, _ = dev
    noisy = {(c, s) for c, s, _ in KNOWN_NOISY}
    seen = set()
    for note in errors:
        assert note.total_error_no == len(note.swaps)
        if (note.case_id, note.sample_no) in noisy:
            continue
        steps_removed = {r.problem_no for r in note.removals if r.level == "Step"}
        for removal in note.removals:
            if removal.level != "Problem":
                continue
            problem = removal.original
            swapped = {s.step_no for s in note.swaps if s.level == "Step" and s.problem_no == removal.problem_no}
            # a removed problem keeps the '-' of its steps swapped before it was removed
            assert [st.label for st in problem.steps] == ["-" if st.no in swapped else "+" for st in problem.steps]
            if swapped:
                seen.add("swap inside removed problem")
            # steps removed before the problem are missing from it, and its completeness is '-'
            assert problem.completeness == ("-" if removal.problem_no in steps_removed else "+")
            if removal.problem_no in steps_removed:
                seen.add("step removed from a removed problem")
            assert note.completeness == "-"
    assert seen == {"swap inside removed problem", "step removed from a removed problem"}


def _sample():
    """A hand-made error sample of a 3-problem gold note exercising every rule."""
    gold = make_gold([3, 2, 1])
    note = note_from_dict(note_to_dict(gold))
    p1, p2, p3 = note.problems
    note.swaps = [
        Swap("Step", "1", "2", "Hallucination", p1.steps[1].text, "Plan: start warfarin."),
        Swap("Problem", "2", None, "Unhelpful", p2.header, "Health issue:"),
        Swap("Step", "3", "1", "Factual Inaccuracy", p3.steps[0].text, "Plan: stop it."),  # then removed
    ]
    p1.steps[1].text, p2.header, p3.steps[0].text = "Plan: start warfarin.", "Health issue:", "Plan: stop it."
    removed_step = p1.steps.pop(0)
    removed_problem = note.problems.pop(2)
    note.removals = [Removal("Step", "1", "1", removed_step, "Step Incompleteness"),
                     Removal("Problem", "3", None, removed_problem, "Problem Incompleteness")]  # fmt: skip
    note.sample_no, note.total_error_no, note.total_steps_removed, note.total_problems_removed = 0, 3, 1, 1
    return gold, relabel(note)


def test_relabel_applies_every_rule():
    gold, note = _sample()
    p1, p2 = note.problems
    assert [s.label for s in p1.steps] == ["-", "+"]  # swapped step 2 (step 1 removed, no renumbering)
    assert [s.no for s in p1.steps] == ["2", "3"]
    assert p1.label == "+" and p1.completeness == "-"
    assert p2.label == "-" and p2.completeness == "+" and [s.label for s in p2.steps] == ["+", "+"]
    assert note.completeness == "-"
    removed_problem = note.removals[1].original
    assert removed_problem.steps[0].label == "-" and removed_problem.label == "+"
    assert note.removals[0].original.label == "+"
    assert check_label_consistency([note], [gold]).ok
    assert note_to_dict(restore_gold(note)) == note_to_dict(gold)


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda n: setattr(n.problems[0].steps[1], "label", "-"), "Problem 1 Step 3"),
        (lambda n: setattr(n.problems[1], "label", "+"), "Problem 2 header"),
        (lambda n: setattr(n.problems[0], "completeness", "+"), "Problem 1 completeness"),
        (lambda n: setattr(n, "completeness", "+"), "Note completeness"),
        (lambda n: setattr(n.removals[1].original.steps[0], "label", "+"), "Removed_info: Problem 3 Step 1"),
    ],
)
def test_flipped_labels_are_reported_at_their_position(mutate, where):
    gold, note = _sample()
    mutate(note)
    report = check_label_consistency([note], [gold])
    assert [(m.position, m.case_id, m.sample_no) for m in report.mismatches] == [(where, "T_1", 0)]
    assert report.issues == []
    assert "T_1 sample 0" in report.summary()


@pytest.mark.parametrize(
    "mutate, where, needs_gold",
    [
        (lambda n: setattr(n, "total_error_no", 2), "Total_error_no", False),
        (lambda n: setattr(n, "total_steps_removed", 3), "Total_steps_removed", False),
        (lambda n: setattr(n, "total_problems_removed", None), "Total_problems_removed", False),
        (lambda n: setattr(n.swaps[0], "new", "something else"), "Swapped_info[0]", False),
        (lambda n: setattr(n.swaps[1], "original", "Not the gold header:"), "Swapped_info[1]", True),
        (lambda n: setattr(n.swaps[0], "step_no", "9"), "Swapped_info[0]", False),
        (lambda n: setattr(n.removals[0], "change_type", "Problem Incompleteness"), "Removed_info[0]", False),
        (lambda n: setattr(n.removals[0].original, "text", "changed"), "Problem 1 Step 1", True),
        (lambda n: n.problems[0].steps.append(n.problems[0].steps[0]), "Problem 1", False),
    ],
)
def test_edit_records_are_checked(mutate, where, needs_gold):
    gold, note = _sample()
    mutate(note)
    report = check_label_consistency([note], [gold])
    assert where in {i.where for i in report.issues}
    if needs_gold:  # only visible against the gold note
        assert where not in {i.where for i in check_label_consistency([note]).issues}


def test_missing_gold_and_unrestorable_edits_are_issues_not_crashes():
    gold, note = _sample()
    assert "Case_id" in {i.where for i in check_label_consistency([note], {}).issues}
    note.removals[0].problem_no = "7"
    with pytest.raises(EditError):
        restore_gold(note)
    assert "edits" in {i.where for i in check_label_consistency([note], [gold]).issues}


def test_report_serialises_without_note_text(dev, tmp_path):
    errors, gold = dev
    report = check_label_consistency(errors, gold).to_dict()
    text = json.dumps(report)
    assert report["n_mismatches"] == len(KNOWN_NOISY) and report["n_issues"] == 0
    assert errors[0].problems[0].steps[0].text not in text


def test_check_labels_cli(prm_data, tmp_path, capsys):
    out = tmp_path / "report.json"
    main(["prm", "check-labels", "--errors", str(prm_data / "verification_dev_error.json.gz"),
          "--gold", str(prm_data / "verification_dev_gold.json.gz"), "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "768 samples" in printed and "5 label mismatches in 5 samples" in printed
    assert all(case in printed for case, _, _ in KNOWN_NOISY)
    assert json.loads(out.read_text())["noisy_samples"] == [
        [c, s] for c, s in sorted({(c, s) for c, s, _ in KNOWN_NOISY})
    ]


def test_check_labels_cli_bad_file_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"Problems": 3}]')
    with pytest.raises(SystemExit) as exit_info:
        main(["prm", "check-labels", "--errors", str(bad)])
    assert exit_info.value.code == 2
    assert "bad.json" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ properties
def _valid_item():
    return note_to_dict(_sample()[1])


def _mutations():
    """A valid error item with one random path replaced by arbitrary JSON."""

    @st.composite
    def build(draw):
        item = _valid_item()
        paths = []

        def walk(obj, path):
            paths.append(path)
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(v, path + [k])
            elif isinstance(obj, list):
                for i, v in enumerate(obj):
                    walk(v, path + [i])

        walk(item, [])
        path = draw(st.sampled_from(paths[1:]))
        value = draw(JSON)
        target = item
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return item

    return build()


@settings(max_examples=150, deadline=None)
@given(st.one_of(JSON, _mutations()))
def test_loader_and_checker_never_crash(raw):
    try:
        note = note_from_dict(raw, path="x.json", index=0)
    except NoteSchemaError as err:
        assert "x.json" in str(err)
        return
    gold, _ = _sample()
    report = check_label_consistency([note], [gold])
    assert report.n_samples == 1
    report.summary()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64) | JSON.map(lambda v: json.dumps(v).encode()))
def test_load_notes_raises_only_schema_errors(tmp_path, data):
    path = tmp_path / "f.json"
    path.write_bytes(data)
    try:
        notes = load_notes(path)
    except NoteSchemaError:
        return
    check_label_consistency(notes)


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_random_edit_records_never_crash_the_checker(rng: random.Random):
    gold, note = _sample()
    positions = [("1", None), ("1", "2"), ("2", "1"), ("3", "1"), ("9", "9")]
    for swap in note.swaps:
        swap.problem_no, swap.step_no = rng.choice(positions)
        swap.level = "Problem" if swap.step_no is None else "Step"
    for removal in note.removals:
        removal.problem_no = rng.choice(["1", "2", "3", "8"])
    rng.shuffle(note.removals)
    report = check_label_consistency([note], [gold])
    assert report.n_samples == 1 and report.n_labels == len(label_positions(note))
    assert all(m.stored != m.expected for m in report.mismatches)
    report.summary()


def test_check_labels_strict_exit_status(prm_data, tmp_path):
    from clinrl.cli import main

    errors = str(prm_data / "verification_dev_error.json.gz")
    main(["prm", "check-labels", "--errors", errors])  # reports the 5 noisy samples, exits 0
    with pytest.raises(SystemExit) as exit_info:
        main(["prm", "check-labels", "--errors", errors, "--strict"])
    assert exit_info.value.code == 1
    synthetic = tmp_path / "s.json"
    main(
        [
            "prm",
            "synth-errors",
            "--gold",
            str(prm_data / "verification_dev_gold.json.gz"),
            "--out",
            str(synthetic),
            "--per-note",
            "1",
        ]
    )
    main(["prm", "check-labels", "--errors", str(synthetic), "--strict"])  # consistent: no exit


def test_a_no_op_swap_gives_one_outcome_and_the_rendered_string_parses():
    # audit 2026-12-04 item 5: relabel gave '+' everywhere but the outcome stayed '-' (a swap existed),
    # so the PRM string contradicted itself and parse_prm_string refused it.
    from clinrl.prm.format import SpecialTokens, parse_prm_string, render_prm_string

    gold = make_gold([2, 1])
    note = note_from_dict(note_to_dict(gold))
    step = note.problems[0].steps[1]
    note.swaps = [Swap("Step", "1", "2", "Hallucination", step.text, step.text)]
    note.sample_no, note.total_error_no = 0, 1
    relabel(note)
    assert set(note.labels()) == {"+"} and note.outcome_label == "+"
    tokens = SpecialTokens.llama3()
    parsed = parse_prm_string(render_prm_string(note, tokens), tokens)
    assert parsed.labels() == note.labels() and parsed.outcome_label == "+"

    # the released data's noise (a no-op swap stored with '-') keeps '-' on both, consistently
    step.label = "-"
    assert note.outcome_label == "-"
    assert parse_prm_string(render_prm_string(note, tokens), tokens).outcome_label == "-"

    # a swap that changed the text is an error for both rules
    note.swaps = [Swap("Step", "1", "2", "Hallucination", step.text, "Plan: start warfarin.")]
    relabel(note)
    assert step.label == "-" and note.outcome_label == "-"
