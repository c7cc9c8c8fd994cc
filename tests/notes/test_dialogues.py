"""Dialogues from the gold notes: the by-case split (deterministic, no overlap), skipped records, prompts."""

from __future__ import annotations

import json

import pytest

from clinrl.errors import ClinrlError
from clinrl.notes.dialogues import (
    cut_dialogue,
    fit_note,
    load_dialogues,
    prompt_messages,
    render_note,
    rl_rows,
    sft_rows,
    split_dialogues,
)
from clinrl.prm.structure import structure_note
from tests.helpers.tokenizers import make_tiny_tokenizer


@pytest.fixture(scope="module")
def loaded():
    return load_dialogues()


def test_split_has_no_case_or_dialogue_overlap_and_is_deterministic(loaded):
    cases, skipped = loaded
    split = split_dialogues(cases, 0.1, seed=0, skipped=skipped)
    train_ids, held_ids = {c.case_id for c in split.train}, {c.case_id for c in split.held_out}
    assert not train_ids & held_ids and len(train_ids | held_ids) == len(cases)
    assert not {c.dialogue for c in split.train} & {c.dialogue for c in split.held_out}
    assert split.report["train"] + split.report["held_out"] == split.report["cases"] == len(cases)
    assert 0.05 < split.report["held_out"] / len(cases) < 0.15
    again = split_dialogues(list(reversed(cases)), 0.1, seed=0)
    assert {c.case_id for c in again.held_out} == held_ids  # order does not matter
    other = split_dialogues(cases, 0.1, seed=1)
    assert {c.case_id for c in other.held_out} != held_ids
    sources = split.report["by_source"]
    assert sum(sources["train"].values()) == len(split.train)


def test_shared_dialogue_stays_on_one_side(loaded):
    cases, _ = loaded
    from dataclasses import replace

    twins = [replace(c, case_id=f"{c.case_id}-twin") for c in cases[:200]]
    split = split_dialogues(cases[:200] + twins, 0.3, seed=0)
    assert split.report["cases_sharing_a_dialogue"] == 200
    assert not {c.dialogue for c in split.train} & {c.dialogue for c in split.held_out}


def test_bad_records_are_counted(tmp_path, loaded):
    cases, _ = loaded
    from clinrl.prm.schema import note_to_dict

    good = [note_to_dict(c.reference) for c in cases[:3]]
    empty = dict(good[0], Case_id="x-empty", Dialogue="  ")
    no_problems = dict(good[1], Case_id="x-none", Problems=[])
    duplicate = dict(good[2])
    path = tmp_path / "gold.json"
    path.write_text(json.dumps(good + [empty, no_problems, duplicate]), encoding="utf-8")
    found, skipped = load_dialogues(path)
    assert len(found) == 3 and skipped == {"empty_dialogue": 1, "no_problems": 1, "duplicate_case": 1}
    with pytest.raises(ClinrlError, match="one side empty"):
        split_dialogues(found, 0.01, seed=0)
    with pytest.raises(ClinrlError, match="held_out_fraction"):
        split_dialogues(found, 1.5)


def test_rendered_reference_parses_back(loaded):
    cases, _ = loaded
    same = sum(len(structure_note(render_note(c.reference)).problems) == len(c.reference.problems) for c in cases[:300])
    assert same / 300 > 0.95


def test_rows_cut_the_prompt_dialogue_only():
    tok = make_tiny_tokenizer()
    from clinrl.notes.dialogues import DialogueCase
    from clinrl.prm.schema import Note, Problem, Step

    dialogue = "\n".join(f"[doctor]: line {i} about the patient's heart failure and shock." for i in range(40))
    note = Note([Problem(f"Problem {i}:", str(i), [Step(f"Step {i} with enough words here.", "1")]) for i in range(6)])
    case = DialogueCase("c1", dialogue, note)
    shown, cut = cut_dialogue(dialogue, tok, 60)
    assert cut and len(tok(shown, add_special_tokens=False)["input_ids"]) <= 60 and dialogue.startswith(shown)
    assert cut_dialogue(dialogue) == (dialogue, False)
    rows, n_cut = rl_rows([case], tok, 60)
    assert n_cut == 1 and rows[0]["dialogue"] == dialogue  # rewards see the whole dialogue
    assert rows[0]["prompt"] == prompt_messages(shown) and rows[0]["ref_problems"] == 6
    sft = sft_rows([case], tok, 60, max_note_tokens=40)
    target = sft[0]["completion"][0]["content"]
    assert target.startswith("Problem 0:") and 1 <= target.count("Problem ") < 6


def test_fit_note_keeps_the_problems_and_drops_steps_first(loaded):
    cases, _ = loaded
    tok = make_tiny_tokenizer()
    case = next(c for c in cases if len(c.reference.problems) >= 3 and c.reference.n_steps >= 9)
    size = len(tok(render_note(case.reference), add_special_tokens=False)["input_ids"])
    fitted = fit_note(case.reference, tok, size // 2)
    assert len(tok(render_note(fitted), add_special_tokens=False)["input_ids"]) <= size // 2
    assert [p.header for p in fitted.problems] == [p.header for p in case.reference.problems][: len(fitted.problems)]
    assert all(p.steps for p in fitted.problems) and fitted.n_steps < case.reference.n_steps
    assert len(case.reference.problems[0].steps) >= len(fitted.problems[0].steps)
    assert fit_note(case.reference, tok, 10**6).items() == case.reference.items()
