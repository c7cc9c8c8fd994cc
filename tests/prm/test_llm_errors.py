"""LLM error synthesis and LLM structuring, driven by scripted answers (fake backend and loopback endpoint)."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest

from clinrl.prm.llm_structure import StructureConfig, parse_structure, structure_notes
from clinrl.prm.schema import Note, load_notes, save_notes
from clinrl.prm.synth.inject import SwapTarget, SynthConfig, apply_plan
from clinrl.prm.synth.labels import check_label_consistency
from clinrl.prm.synth.llm_inject import (
    LLMErrorSynthesizer,
    LLMRejectedError,
    LLMSynthConfig,
    build_error_prompt,
    extract_json,
    parse_swaps,
    synthesize_with_llm,
)
from tests.prm.note_factory import make_gold

_POSITION = re.compile(r"^- (\{.*?\}): (\".*\")$", re.M)
_TYPE = re.compile(r"^Error type: (.+)\.$", re.M)
_CASE = re.compile(r"case number (\d+)")

# What a scripted model does wrong for case k when k % 3 == 2 (always), or on the first answer when k % 3 == 1.
MALFORMED = ["not_json", "wrong_error_type", "missing_target", "no_change", "original_mismatch", "unknown_target",
             "bad_text", "schema"]  # fmt: skip


def _text(prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


def scripted_edits(prompt_text: str, seen: Counter) -> str:
    """A model answer for one error-type prompt: valid, or malformed as the case number says."""
    case = int(_CASE.search(prompt_text).group(1))
    error_type = _TYPE.search(prompt_text).group(1)
    seen[(case, error_type)] += 1
    items = []
    for where, original in _POSITION.findall(prompt_text):
        item = json.loads(where)
        original = json.loads(original)
        items.append({**item, "Error_type": error_type, "Original_content": original,
                      "New_content": f"{original.rstrip('.:')} ({error_type.lower()} edit)."})  # fmt: skip
    bad = None
    if case % 3 == 2 or (case % 3 == 1 and seen[(case, error_type)] == 1):
        bad = MALFORMED[(case // 3) % len(MALFORMED)]
    if bad == "not_json":
        return "Sure! Here are the edits: Problem 1 becomes worse."
    if bad == "wrong_error_type":
        items[0]["Error_type"] = "Typo"
    elif bad == "missing_target":
        items = items[1:]
    elif bad == "no_change":
        items[0]["New_content"] = items[0]["Original_content"] + " "
    elif bad == "original_mismatch":
        items[0]["Original_content"] = "Something else."
    elif bad == "unknown_target":
        items[0]["Problem_no"] = "99"
    elif bad == "bad_text":
        items[0]["New_content"] = "two\nlines"
    elif bad == "schema":
        del items[0]["Error_level"]
    return "```json\n" + json.dumps({"Swapped_info": items}) + "\n```"


class ScriptedEditor:
    name = "scripted"

    def __init__(self):
        self.seen: Counter = Counter()
        self.prompts = 0

    def generate(self, prompts, params):
        self.prompts += len(prompts)
        return [[scripted_edits(_text(p), self.seen)] for p in prompts]


def _gold_notes(n: int) -> list[Note]:
    return [make_gold([3, 2, 2], case_id=f"C_{k}", dialogue=f"Doctor and patient talk; case number {k}.")
            for k in range(n)]  # fmt: skip


CONFIG = SynthConfig(min_swaps=2, max_swaps=4)


def test_extract_json_and_prompt():
    assert extract_json('text {"a": [1]} more') == {"a": [1]}
    assert extract_json("```json\n[1, 2]\n```") == [1, 2]
    with pytest.raises(ValueError):
        extract_json("no json { here")
    gold = _gold_notes(1)[0]
    prompt = _text(build_error_prompt(gold, "Unhelpful", [SwapTarget("1", "2"), SwapTarget("2")]))
    assert "case number 0" in prompt and "Error type: Unhelpful." in prompt
    assert '- {"Error_level": "Problem", "Problem_no": "2"}: "Hypertension 1:"' in prompt


def test_parse_swaps_rejects_each_malformation():
    gold = _gold_notes(1)[0]
    targets = [SwapTarget("1", "2"), SwapTarget("3")]
    prompt = _text(build_error_prompt(gold, "Hallucination", targets))
    good = parse_swaps(scripted_edits(prompt, Counter()), gold, "Hallucination", targets)
    assert [(s.problem_no, s.step_no, s.level) for s in good] == [("1", "2", "Step"), ("3", None, "Problem")]
    for k, reason in enumerate(MALFORMED):
        case_prompt = prompt.replace("case number 0", f"case number {3 * k + 2}")
        with pytest.raises(LLMRejectedError) as err:
            parse_swaps(scripted_edits(case_prompt, Counter()), gold, "Hallucination", targets)
        assert err.value.reason == reason
    extra = json.dumps({"Swapped_info": [good[0].to_dict(), good[1].to_dict(),
                                         {**good[0].to_dict(), "Step_no": "1"}]})  # fmt: skip
    with pytest.raises(LLMRejectedError, match="unrequested_target"):
        parse_swaps(extra, gold, "Hallucination", targets)
    token = json.dumps({"Swapped_info": [{**good[0].to_dict(), "New_content": "x <|reserved_special_token_2|>"},
                                         good[1].to_dict()]})  # fmt: skip
    with pytest.raises(LLMRejectedError, match="bad_text"):
        parse_swaps(token, gold, "Hallucination", targets)


def test_synthesizer_keeps_only_valid_label_consistent_samples():
    gold = _gold_notes(12)
    editor = ScriptedEditor()
    synth = LLMErrorSynthesizer(editor, CONFIG, LLMSynthConfig(max_attempts=2, batch_size=5))
    result = synthesize_with_llm(gold, 2, synth, seed=3)
    kept_cases = Counter(n.case_id for n in result.notes)
    # cases k % 3 == 0 valid at once, == 1 valid on the retry, == 2 always malformed -> rejected
    assert set(kept_cases) == {f"C_{k}" for k in range(12) if k % 3 != 2}
    assert all(v == 2 for v in kept_cases.values())
    assert len(result.rejected) == 8 and all(r["case_id"] in {"C_2", "C_5", "C_8", "C_11"} for r in result.rejected)
    assert result.rejects_by_reason == {"not_json": 2, "wrong_error_type": 2, "missing_target": 2, "no_change": 2}
    report = result.to_dict()
    assert report["samples"] == 16 and report["requests"] == editor.prompts
    assert set(report["invalid_answers_by_reason"]) == {"not_json", "wrong_error_type", "missing_target", "no_change"}
    # every kept sample is schema-valid and label-consistent, and its edits came from the model
    by_case = {g.case_id: g for g in gold}
    check = check_label_consistency(result.notes, by_case)
    assert check.ok, check.summary()
    for note in result.notes:
        assert 2 <= len(note.swaps) <= 4 and all(s.new.endswith("edit).") for s in note.swaps)
        assert note.outcome_label == "-" and "-" in note.labels()
    # round trip through the PRM-Clinic JSON schema
    assert [n.swaps for n in _roundtrip(result.notes)] == [n.swaps for n in result.notes]
    # same seed, same positions and types (the model's text aside)
    again = synthesize_with_llm(
        gold, 2, LLMErrorSynthesizer(ScriptedEditor(), CONFIG, LLMSynthConfig(max_attempts=2)), seed=3
    )
    assert [[(s.problem_no, s.step_no, s.error_type) for s in n.swaps] for n in again.notes] == [
        [(s.problem_no, s.step_no, s.error_type) for s in n.swaps] for n in result.notes
    ]


def _roundtrip(notes):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "e.json"
        save_notes(notes, path)
        return load_notes(path)


def test_propose_protocol_and_small_notes():
    from clinrl.prm.synth.inject import NoteTooSmallError

    synth = LLMErrorSynthesizer(ScriptedEditor(), CONFIG, LLMSynthConfig(max_attempts=1))
    gold = _gold_notes(3)
    plan = synth.propose(gold[0], random.Random(1))
    note = apply_plan(gold[0], plan, sample_no=0)
    assert check_label_consistency([note], gold[:1]).ok
    with pytest.raises(LLMRejectedError):
        synth.propose(gold[2], random.Random(1))
    tiny = make_gold([1], case_id="T", dialogue="case number 0")
    tiny.problems[0].steps.clear()
    with pytest.raises(NoteTooSmallError):
        synth.propose(tiny, random.Random(0))
    result = synthesize_with_llm([tiny, gold[0]], 2, synth)
    assert result.skipped == ["T"] and len(result.notes) == 2


def test_request_errors_are_counted():
    class Down:
        name = "down"

        def generate(self, prompts, params):
            raise ConnectionError("endpoint down")

    result = synthesize_with_llm(_gold_notes(2), 1, LLMErrorSynthesizer(Down(), CONFIG, LLMSynthConfig(max_attempts=2)))
    assert result.notes == [] and result.rejects_by_reason == {"request_error": 2}


# ------------------------------------------------------------------------------------ structuring
FREE_TEXT = """ASSESSMENT AND PLAN
Hypertension
- Blood pressure is elevated today.
- Start lisinopril 10 mg daily.
Follow up in 2 weeks."""

GOOD = {"Problems": [{"Problem": "Hypertension:", "Steps": ["Blood pressure is elevated today.",
                                                           "Start lisinopril 10 mg daily."]},
                     {"Problem": "Follow-up instructions:", "Steps": ["Follow up in 2 weeks."]}]}  # fmt: skip


def test_parse_structure_validates():
    note = parse_structure(json.dumps(GOOD), FREE_TEXT, dialogue="d")
    assert [p.header for p in note.problems] == ["Hypertension:", "Follow-up instructions:"]
    assert [s.no for s in note.problems[0].steps] == ["1", "2"] and note.dialogue == "d"
    invented = json.loads(json.dumps(GOOD))
    invented["Problems"][0]["Steps"][1] = "Start metformin 500 mg twice daily and order an echocardiogram."
    dropped = {"Problems": GOOD["Problems"][:1]}
    cases = {"not_json": "nope", "schema": '{"Problems": []}', "invented": json.dumps(invented),
             "dropped": json.dumps(dropped), "empty_text": json.dumps({"Problems": [{"Problem": "", "Steps": []}]})}  # fmt: skip
    for reason, answer in cases.items():
        with pytest.raises(Exception) as err:
            parse_structure(answer, FREE_TEXT)
        assert getattr(err.value, "reason", None) == reason, (reason, err.value)


def test_structure_notes_falls_back_with_counts():
    class Model:
        name = "m"

        def __init__(self):
            self.calls = Counter()

        def generate(self, prompts, params):
            out = []
            for p in prompts:
                text = _text(p)
                self.calls[text] += 1
                out.append([json.dumps(GOOD) if "lisinopril" in text and self.calls[text] > 1 else "not json"])
            return out

    result = structure_notes(
        [FREE_TEXT, "Asthma: use albuterol as needed."], Model(), config=StructureConfig(max_attempts=2)
    )
    assert result.sources == ["llm", "rule"]
    assert result.fallbacks == Counter({"not_json": 1}) and result.invalid_answers == Counter({"not_json": 3})
    assert result.notes[1].problems and result.requests == 4
    assert result.to_dict()["by_rule_fallback"] == 1


# ------------------------------------------------------------------------------------ loopback endpoint
def test_cli_openai_backend_against_loopback_endpoint(tmp_path, monkeypatch):
    """`clinrl prm synth-errors --backend openai` with the real HTTP client against a scripted server."""
    from clinrl.cli import main
    from tests.helpers.fake_openai import FakeOpenAI

    seen: Counter = Counter()
    gold_path, out = tmp_path / "gold.json", tmp_path / "errors.json"
    save_notes(_gold_notes(6), gold_path)
    with FakeOpenAI(lambda body: scripted_edits(_text(body["messages"]), seen)) as server:
        main(["prm", "synth-errors", "--gold", str(gold_path), "--out", str(out), "--per-note", "2",
              "--backend", "openai", "--endpoint", server.url, "--model", "editor", "--max-attempts", "2",
              "--concurrency", "2", "--seed", "1"])  # fmt: skip
        requests = server.requests
    notes = load_notes(out)
    assert {n.case_id for n in notes} == {"C_0", "C_1", "C_3", "C_4"} and len(notes) == 8
    assert check_label_consistency(notes, load_notes(gold_path)).ok
    report = json.loads((tmp_path / "errors.json.report.json").read_text())
    assert report["samples"] == 8 and report["rejected"] == 4 and report["requests"] == requests
    assert report["rejects_by_reason"] == {"not_json": 2, "wrong_error_type": 2}


def test_cli_openai_backend_needs_endpoint(tmp_path):
    from typer.testing import CliRunner

    from clinrl.cli import app

    save_notes(_gold_notes(1), tmp_path / "g.json")
    result = CliRunner().invoke(app, ["prm", "synth-errors", "--gold", str(tmp_path / "g.json"), "--out",
                                      str(tmp_path / "o.json"), "--backend", "openai"])  # fmt: skip
    assert result.exit_code != 0 and not (tmp_path / "o.json").exists()


def test_cli_structure_rule_and_openai(tmp_path):
    from clinrl.cli import main
    from tests.helpers.fake_openai import FakeOpenAI

    (tmp_path / "a.txt").write_text(FREE_TEXT, encoding="utf-8")
    (tmp_path / "b.txt").write_text("Asthma: use albuterol as needed.", encoding="utf-8")
    files = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    main(["prm", "structure", *files, "--out", str(tmp_path / "rule.json")])
    assert [n.case_id for n in load_notes(tmp_path / "rule.json")] == ["a", "b"]
    answer = lambda body: json.dumps(GOOD) if "lisinopril" in _text(body["messages"]) else "no"  # noqa: E731
    with FakeOpenAI(answer) as server:
        main(["prm", "structure", *files, "--out", str(tmp_path / "llm.json"), "--backend", "openai",
              "--endpoint", server.url, "--model", "m"])  # fmt: skip
        assert server.requests == 3  # note a once, note b twice (then the rule fallback)
    notes = load_notes(tmp_path / "llm.json")
    assert [p.header for p in notes[0].problems] == ["Hypertension:", "Follow-up instructions:"] and notes[1].problems
