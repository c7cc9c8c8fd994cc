"""DRG metrics on hand-made generation files, every figure computed by hand (see the comments)."""

from __future__ import annotations

import json
import math

import pytest

from clinrl.cli import main
from clinrl.drg.eval.metrics import default_ks, majority, pass_at_k, read_generations, score_generations
from clinrl.errors import DataError

A = "HEART FAILURE AND SHOCK WITH MCC"  # 291, principal HF, MCC, weight 1.4796, MDC 05
B = "HEART FAILURE AND SHOCK WITH CC"  # 292, HF, CC, 0.9574
C = "CHRONIC OBSTRUCTIVE PULMONARY DISEASE WITH MCC"  # 190, COPD, MCC, 1.1481, MDC 04
D = "CHRONIC OBSTRUCTIVE PULMONARY DISEASE WITH CC"  # 191, COPD, CC, 0.9184


def ok(answer: str) -> str:
    return f"<think>reasoning</think>\n<answer>{answer}</answer>"


NO_THINK = "<answer>{}</answer>"  # format failure, but a valid answer block
NONE = "<think>ran out of tokens"  # format failure, no answer
INVALID = ok("HEART FAILURE")  # strict format, not a v34 description

RECORDS = [
    # gold A: DRG hits F T T F (c=2); principal T T T F (c=3); CC/MCC F T T F (c=2)
    {"hadm_id": 1, "solution": A, "completions": [ok(B), ok(A), ok(A.lower()), INVALID]},
    # gold C: DRG c=0; principal F - - T (c=1); CC/MCC T - - F (c=1); the 2nd sample's format fails
    {"hadm_id": 2, "solution": C, "completions": [ok(A), NO_THINK.format(C), NONE, ok(D)]},
    # gold D: nothing answered
    {"hadm_id": 3, "solution": D, "completions": [NONE] * 4},
]


def approx(x):
    return pytest.approx(x, abs=1e-12)


def test_pass_at_k_and_majority_rules():
    assert pass_at_k(4, 2, 2) == approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert pass_at_k(4, 1, 2) == approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(4, 3, 2) == 1.0 and pass_at_k(4, 0, 4) == 0.0 and pass_at_k(8, 1, 8) == 1.0
    assert pass_at_k(10, 3, 1) == approx(0.3)
    assert majority(["x", "y", "y", "x"]) == "x"  # tie: the one voted first
    assert majority([None, "y", "x", None]) == "y" and majority([None, None]) is None
    assert default_ks(8) == (1, 2, 4, 8) and default_ks(6) == (1, 2, 4, 6) and default_ks(1) == (1,)


def test_hand_made_file_gives_the_hand_computed_figures():
    m = score_generations(RECORDS)
    assert (m["n_cases"], m["n_samples"], m["n_samples_total"]) == (3, 4, 12)
    drg, principal, cc = m["drg"], m["principal"], m["cc_mcc"]
    assert drg["pass@1"] == approx((0.5 + 0 + 0) / 3)
    assert drg["pass@k"] == {"1": approx(1 / 6), "2": approx((5 / 6) / 3), "4": approx(1 / 3)}
    # maj@1 [B] wrong; maj@2 [B, A] tie -> B wrong; maj@4 [B, A, A, -] -> A right
    assert drg["maj@k"] == {"1": 0, "2": 0, "4": approx(1 / 3)}
    assert principal["pass@1"] == approx((0.75 + 0.25) / 3)
    assert principal["pass@k"] == {"1": approx(1 / 3), "2": approx((1 + 0.5) / 3), "4": approx(2 / 3)}
    # case 2 votes [HF, -, -, COPD]: tie -> HF (first) wrong
    assert principal["maj@k"] == {"1": approx(1 / 3), "2": approx(1 / 3), "4": approx(1 / 3)}
    assert cc["pass@1"] == approx((0.5 + 0.25) / 3)
    assert cc["pass@k"] == {"1": approx(0.25), "2": approx((5 / 6 + 0.5) / 3), "4": approx(2 / 3)}
    # case 1: [CC], [CC, MCC] tie -> CC, then MCC; case 2: [MCC, -, -, CC] -> MCC first
    assert cc["maj@k"] == {"1": approx(1 / 3), "2": approx(1 / 3), "4": approx(2 / 3)}
    assert m["format_failure_rate"] == approx(6 / 12)
    assert m["invalid_answer_rate"] == approx(1 / 12)
    assert m["no_answer_rate"] == approx(5 / 12)
    assert m["abstain_rate"] == approx(7 / 12)


def test_analysis_figures():
    m = score_generations(RECORDS, ks=[4])
    assert list(m["drg"]["pass@k"]) == ["4"]
    assert m["per_mdc"] == {
        "04": {"name": "Diseases and Disorders of the Respiratory System", "n_cases": 2, "pass@1": 0.0},
        "05": {"name": "Diseases and Disorders of the Circulatory System", "n_cases": 1, "pass@1": 0.5},
    }
    # per sample: class 291 tp 2, fp 1, fn 2 -> F1 4/7; 190 and 191 F1 0
    assert m["macro_f1"] == approx(4 / 21)
    # majority: case 1 -> 291 right, case 2 -> 291 (tie, first) wrong, case 3 -> none
    assert m["macro_f1_maj"] == approx(2 / 9)
    mix = m["case_mix"]
    assert mix["n_samples"] == 5
    assert mix["mean_pred_weight"] == approx((0.9574 + 3 * 1.4796 + 0.9184) / 5)
    assert mix["mean_true_weight"] == approx((3 * 1.4796 + 2 * 1.1481) / 5)
    assert mix["mean_abs_weight_error"] == approx(
        (abs(0.9574 - 1.4796) + abs(1.4796 - 1.1481) + abs(0.9184 - 1.1481)) / 5
    )
    errors = m["error_breakdown"]
    assert errors["n_wrong"] == 3 and errors["counts"] == {"wrong_principal": 1, "wrong_cc_mcc": 2, "both": 0}
    assert errors["wrong_principal"] == approx(1 / 3) and errors["both"] == 0
    both = score_generations([{"solution": A, "completions": [ok(D)]}])["error_breakdown"]
    assert both["both"] == 1.0
    conf = m["cc_mcc_confusion"]
    assert conf["columns"][-1] == "invalid" and conf["labels"][2] == "with MCC"
    assert conf["matrix"][2] == [0, 2, 3, 0, 0, 3]
    assert conf["matrix"][1] == [0, 0, 0, 0, 0, 4]
    assert sum(map(sum, conf["matrix"])) == 12


def test_exact_match_semantics_from_the_rewards():
    # a DRG number, a substring and look-alike letters never match; case and spacing do not matter
    texts = [
        ok("291 " + A),
        ok("HEART FAILURE AND SHOCK"),
        ok(A.replace("A", "\u0410")),
        ok("  heart  failure and shock with mcc "),
    ]
    m = score_generations([{"solution": A, "completions": texts}], ks=[1])
    assert m["drg"]["pass@1"] == 0.25 and m["invalid_answer_rate"] == 0.75


def test_score_cli_and_torn_lines(tmp_path, capsys):
    path = tmp_path / "generations.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS) + '{"hadm_id": 4, "solu', encoding="utf-8")
    assert len(read_generations(path)) == 3  # the torn last line of a killed run is ignored
    out = tmp_path / "metrics.json"
    main(["drg", "score", "--generations", str(path), "--out", str(out)])
    metrics = json.loads(out.read_text())
    assert metrics["drg"]["maj@k"]["4"] == approx(1 / 3) and metrics["invalid_answer_rate"] == approx(1 / 12)
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["cc_mcc"]["pass@4"] == pytest.approx(2 / 3, abs=1e-4)  # the headline is rounded
    main(["drg", "score", "--generations", str(path), "--k", "2"])
    printed = json.loads(capsys.readouterr().out)
    assert list(printed["drg"]["pass@k"]) == ["2"] and math.isclose(printed["drg"]["pass@k"]["2"], 5 / 18)


def test_bad_records_name_the_row(tmp_path, capsys):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n" + json.dumps({"solution": "NOT A DRG", "completions": ["x"]}) + "\n")
    with pytest.raises(DataError, match="row 2.*solution"):
        score_generations(path)
    path.write_text(json.dumps({"solution": A, "completions": []}) + "\n")
    with pytest.raises(DataError, match="completions"):
        score_generations(path)
    with pytest.raises(SystemExit) as exit_:
        main(["drg", "score", "--generations", str(tmp_path / "missing.jsonl")])
    assert exit_.value.code == 2 and "not found" in capsys.readouterr().err
