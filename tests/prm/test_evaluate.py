"""Evaluation: gold selection on the dev verification tasks, metrics, error-type detection, A-Prefer."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from clinrl.cli import app
from clinrl.errors import DataError
from clinrl.prm.evaluate import (
    Case,
    auroc,
    best_f1,
    evaluate_preference,
    evaluate_selection,
    group_cases,
    limit_cases,
    load_preference_cases,
    pick,
)
from clinrl.prm.format import SpecialTokens
from clinrl.prm.schema import load_notes
from clinrl.prm.score import NoteScore, ScoreConfig, SlotScore, slot_layout
from tests.prm.note_factory import make_gold


def _run(args: list[str]):
    result = CliRunner().invoke(app, ["prm", *args])
    assert result.exit_code == 0, result.output
    return result


def _selection(prm_data: Path, scorer: str, out: Path, gold: Path | None = None, errors: Path | None = None, extra=()):
    gold = gold or prm_data / "verification_dev_gold.json.gz"
    errors = errors or prm_data / "verification_dev_error.json.gz"
    result = _run(["eval-selection", "--gold", str(gold), "--errors", str(errors), "--scorer", scorer,
                   "--json", str(out), *extra])  # fmt: skip
    return result.output, json.loads(out.read_text())


def _row(output: str, source: str) -> list[str]:
    line = next(line for line in output.splitlines() if source in line)
    return [cell.strip() for cell in line.strip("│┃ ").split("│")]


def test_medoid_on_the_dev_tasks(prm_data, tmp_path):
    output, report = _selection(prm_data, "medoid", tmp_path / "medoid.json")
    assert _row(output, "A_Validate")[1] == "100.0"
    assert _row(output, "Dialogue_G")[1] == "88.8"
    assert report["sources"]["Dialogue_G"] == {"accuracy": 0.8875, "correct": 71.0, "total": 80}
    assert report["overall"]["total"] == 100


def _raw(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def test_random_is_the_exact_expectation(prm_data, tmp_path):
    gold = _raw(prm_data / "verification_dev_gold.json.gz")
    errors = _raw(prm_data / "verification_dev_error.json.gz")
    per_case = {g["Case_id"]: 1 for g in gold}
    for e in errors:
        per_case[e["Case_id"]] += 1
    source = {g["Case_id"]: g["Data_source"] for g in gold}
    output, report = _selection(prm_data, "random", tmp_path / "random.json")
    for name in ("A_Validate", "Dialogue_G"):
        ns = [n for c, n in per_case.items() if source[c] == name]
        want = sum(1 / n for n in ns) / len(ns)
        assert report["sources"][name]["accuracy"] == pytest.approx(want)
        assert _row(output, name)[1] == f"{100 * want:.1f}"  # tables: percent


def test_same_command_runs_on_a_relabelled_held_back_style_task(prm_data, tmp_path):
    paths = {}
    for kind in ("gold", "error"):
        items = _raw(prm_data / f"verification_dev_{kind}.json.gz")
        for item in items:
            if item["Data_source"] == "A_Validate":
                item["Data_source"] = "A_Verify"
                item["Case_id"] = item["Case_id"].replace("A_Validate", "A_Verify")
        paths[kind] = tmp_path / f"{kind}.json.gz"
        with gzip.open(paths[kind], "wt", encoding="utf-8") as handle:
            json.dump(items, handle)
    output, report = _selection(prm_data, "medoid", tmp_path / "m.json", paths["gold"], paths["error"])
    assert set(report["sources"]) == {"A_Verify", "Dialogue_G"}
    assert _row(output, "A_Verify")[1] == "100.0" and _row(output, "Dialogue_G")[1] == "88.8"


def test_a_tie_with_the_gold_is_a_miss():
    assert pick([1.0, 1.0, 0.0]) is None and pick([0.0, 2.0, 1.0]) == 1
    gold = make_gold([1, 1])
    same_length = make_gold([1, 1], case_id="T_1")
    same_length.sample_no = 1
    cases = [Case("T_1", "T", [gold, same_length])]
    assert evaluate_selection(cases, "length").sources["T"].correct == 0
    longer = make_gold([2, 1])
    longer.sample_no = 2
    assert evaluate_selection([Case("T_1", "T", [longer, gold])], "length").sources["T"].correct == 1


def test_group_cases_counts_what_it_cannot_use():
    gold = [make_gold([1], case_id="A"), make_gold([1], case_id="B")]
    err = make_gold([2], case_id="A")
    err.sample_no = 1
    orphan = make_gold([2], case_id="Z")
    orphan.sample_no = 1
    cases, dropped = group_cases(gold, [err, orphan])
    assert [c.case_id for c in cases] == ["A"] and len(cases[0].candidates) == 2
    assert dropped == {"errors_without_gold": 1, "gold_without_errors": 1}


def _brute_auroc(scores, positive):
    pos = [s for s, y in zip(scores, positive) if y]
    neg = [s for s, y in zip(scores, positive) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]), st.booleans()), min_size=1, max_size=30))
def test_auroc_and_best_f1_match_brute_force(pairs):
    scores = [s for s, _ in pairs]
    labels = [y for _, y in pairs]
    if all(labels) or not any(labels):
        assert auroc(scores, labels) is None
    else:
        assert auroc(scores, labels) == pytest.approx(_brute_auroc(scores, labels))
    f1, threshold = best_f1(scores, labels)
    brute = 0.0
    for t in set(scores):
        tp = sum(1 for s, y in pairs if s <= t and y)
        k = sum(1 for s, _ in pairs if s <= t)
        brute = max(brute, 2 * tp / (k + sum(labels)) if tp else 0.0)
    assert f1 == pytest.approx(brute)
    if f1 > 0:
        tp = sum(1 for s, y in pairs if s <= threshold and y)
        assert 2 * tp / (sum(1 for s in scores if s <= threshold) + sum(labels)) == pytest.approx(f1)


class _OracleScorer:
    """A stand-in model: P(+) = 0.1 on slots whose stored label is '-', 0.9 elsewhere (one note at a time)."""

    head, objective, config = "oracle", "prm", ScoreConfig()

    def __init__(self):
        self.stats: dict[str, int] = {}

    def score_notes(self, notes):
        out = []
        for note in notes:
            layout = slot_layout(note)
            out.append(NoteScore([SlotScore(index=k, p_plus=0.1 if m["label"] == "-" else 0.9, **m)
                                  for k, m in enumerate(layout)]))  # fmt: skip
        return out


def test_detection_metrics_and_error_types_with_an_oracle(prm_data):
    gold = load_notes(prm_data / "verification_dev_gold.json.gz")[:6]
    errors = load_notes(prm_data / "verification_dev_error.json.gz")
    cases, _ = group_cases(gold, [e for e in errors if e.case_id in {g.case_id for g in gold}])
    report = evaluate_selection(cases, "prm", model=_OracleScorer()).to_dict()
    det = report["overall"]["detection"]
    assert report["overall"]["accuracy"] == 1.0
    assert det["auroc_all"] == 1.0 and det["auroc_steps"] == 1.0 and det["f1"] == 1.0 and det["false_alarm"] == 0.0
    by_type = det["by_error_type"]
    expected_swaps = sum(
        1 for c in cases for n in c.candidates for s in n.swaps
        if any(p.no == s.problem_no and (s.level == "Problem" or any(t.no == s.step_no for t in p.steps))
               for p in n.problems)
    )  # fmt: skip
    assert sum(by_type[k]["total"] for k in ("Hallucination", "Unhelpful", "Factual Inaccuracy")) <= expected_swaps
    assert all(v["rate"] in (None, 1.0) for v in by_type.values())
    assert by_type["Step Incompleteness"]["total"] > 0


def test_eval_selection_lexical_through_the_cli(prm_data, tmp_path):
    """Two cases (one per source): the full detection block, the same figures as the library's, both tables."""
    output, report = _selection(prm_data, "lexical", tmp_path / "lex.json", extra=["--limit", "1"])
    assert report["overall"]["total"] == 2 and report["aggregate"] == "mean"
    assert report["scoring"]["backend"] == "rules" and report["scoring"]["paths"]["rules"] > 2
    gold = load_notes(prm_data / "verification_dev_gold.json.gz")
    errors = load_notes(prm_data / "verification_dev_error.json.gz")
    cases = limit_cases(group_cases(gold, errors)[0], 1)
    want = json.loads(json.dumps(evaluate_selection(cases, "lexical").to_dict()))
    assert report["sources"] == want["sources"] and report["overall"] == want["overall"]
    det = report["overall"]["detection"]
    assert {"processbench", "at_false_alarm", "calibration", "auroc_steps", "by_error_type"} <= set(det)
    assert all(0 <= v <= 0.05 for v in det["at_false_alarm"]["false_alarm"].values() if v is not None)
    assert "Step-level detection" in output and "recall at 5 % false alarm" in output
    pb_cell = _row(output.split("Step-level detection")[1], "all")[2]  # PB F1 at the false-alarm thresholds
    assert pb_cell == f"{det['processbench']['at_false_alarm']['f1']:.3f}"
    medoid_out, medoid = _selection(prm_data, "medoid", tmp_path / "m.json", extra=["--limit", "1"])
    assert "detection" not in medoid["overall"] and "Step-level detection" not in medoid_out


def test_preference_dev_data(prm_data, tmp_path):
    cases, dropped = load_preference_cases(
        prm_data / "a_prefer_dev.csv", prm_data / "a_prefer_dev_labels.csv", SpecialTokens.llama3()
    )
    assert len(cases) == 10 and all(len(c.candidates) == 3 for c in cases) and not any(dropped.values())
    assert evaluate_preference(cases, "random")["accuracy"] == pytest.approx(1 / 3)
    with (prm_data / "a_prefer_dev_labels.csv").open() as handle:
        firsts = sum(row["Preferred_note"] == "Note_1" for row in csv.DictReader(handle))
    assert evaluate_preference(cases, "first")["correct"] == firsts
    lexical = evaluate_preference(cases, "lexical")
    assert lexical["aggregate"] == "mean" and lexical["total"] == 10 and lexical["correct"] == int(lexical["correct"])
    out = _run(
        [
            "eval-preference",
            "--csv",
            str(prm_data / "a_prefer_dev.csv"),
            "--labels",
            str(prm_data / "a_prefer_dev_labels.csv"),
            "--scorer",
            "random",
            "--json",
            str(tmp_path / "p.json"),
        ]
    )
    assert "33.3" in out.output


def test_preference_bad_input_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Case_id,Sample_no\nA,Note_1\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("Case_id,Preferred_note\nA,Note_1\n")
    with pytest.raises(DataError, match="Training_note"):
        load_preference_cases(bad, labels, SpecialTokens.llama3())


def test_model_scorer_needs_a_model():
    with pytest.raises(Exception, match="needs a model"):
        evaluate_selection([], "prm")


def test_eval_selection_with_a_tiny_prm(prm_data, tmp_path):
    from clinrl.prm.model import PRMMeta, save_prm
    from tests.prm.test_score import tiny_prm

    model, tokenizer, tokens = tiny_prm()
    meta = PRMMeta(head="causal-lm", objective="prm", tokens=tokens, loss_mode="special_token", notes_only=False,
                   max_length=4096, dialogue_max_tokens=None, base_model="tiny")  # fmt: skip
    save_prm(tmp_path / "prm", model, tokenizer, meta)
    for kind in ("gold", "error"):  # dev data with short dialogues, to keep the test fast
        items = _raw(prm_data / f"verification_dev_{kind}.json.gz")
        for item in items:
            item["Dialogue"] = "\n".join(item["Dialogue"].split("\n")[:4])
        (tmp_path / f"{kind}.json").write_text(json.dumps(items))
    out = tmp_path / "prm.json"
    _run(["eval-selection", "--gold", str(tmp_path / "gold.json"), "--errors", str(tmp_path / "error.json"),
          "--scorer", "prm", "--model", str(tmp_path / "prm"), "--limit", "1", "--json", str(out)])  # fmt: skip
    report = json.loads(out.read_text())
    assert set(report["sources"]) == {"A_Validate", "Dialogue_G"} and report["overall"]["total"] == 2
    det = report["sources"]["Dialogue_G"]["detection"]
    assert 0.0 <= det["auroc_steps"] <= 1.0 and det["n_slots"] > det["n_error_slots"] > 0
    assert report["scoring"]["paths"]["fast"] > 0
