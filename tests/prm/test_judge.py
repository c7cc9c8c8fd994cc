"""The generative verifier (``--scorer judge``, :mod:`clinrl.prm.judge`): prompts and verdict parsing, and the
plumbing end to end against a real ``clinrl serve`` on 127.0.0.1 serving a tiny LM whose next token is a
yes or a no (:func:`tests.helpers.models.build_judge_lm`), compared with the same LM read locally."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import torch

import clinrl
from clinrl.errors import ClinrlError, DataError
from clinrl.llm.openai_client import OpenAIBackend
from clinrl.prm import judge as J
from clinrl.prm.evaluate import Case, evaluate_preference, group_cases, limit_cases
from clinrl.prm.schema import Note, Problem, Step, load_notes, note_to_dict, save_notes
from clinrl.prm.score import load_scorer, slot_layout
from tests.helpers.models import build_judge_lm
from tests.helpers.servers import free_port, serve_app
from tests.reliability.cli import assert_clean_error, run_cli

SERVED = "tiny-judge"
PRM_DATA = Path(clinrl.__file__).parent / "data" / "prm"
DIALOGUE = "Doctor: How is the cough?\nPatient: Worse at night, and I have a fever."


def _note() -> Note:
    steps = [Step("Chest x-ray.", "1"), Step("Start amoxicillin.", "2"), Step("Return if worse.", "3")]
    problems = [Problem("Pneumonia", "1", steps), Problem("Fever", "2", [Step("Paracetamol.", "1")])]
    return Note(problems=problems, dialogue=DIALOGUE)


# ------------------------------------------------------------------------------------------ pure functions
def test_one_prompt_per_slot_dialogue_first_and_only_earlier_steps():
    note = _note()
    prompts = J.slot_prompts(note)
    layout = slot_layout(note)
    assert len(prompts) == len(layout) == note.n_label_positions
    head = J.PROMPT_TEMPLATE.split("{dialogue}")[0] + DIALOGUE
    assert all(p.startswith(head) and p.endswith("\nAnswer:") for p in prompts)  # a shared prefix per case
    second_step = prompts[[i for i, s in enumerate(layout) if s["kind"] == "step"][1]]
    tail = second_step[len(head) :]
    assert "Chest x-ray." in tail and "Start amoxicillin." in tail  # the earlier step, and the step checked
    assert "Return if worse." not in tail and "Paracetamol." not in tail  # never later steps or other problems
    assert J.QUESTIONS["step"] in second_step
    end = prompts[-1][len(head) :]
    assert all(t in end for t in ("Pneumonia", "Fever", "Paracetamol.", J.QUESTIONS["end_of_note"]))
    chat = J.slot_prompts(note, chat=True, rationale=True)
    assert not any(p.endswith("Answer:") for p in chat) and J.INSTRUCTION_WHY in chat[0]


def test_verdict_probability_sums_every_spelling():
    top = [(" Yes", math.log(0.3)), ("yes", math.log(0.1)), ("NO", math.log(0.15)), (" no ", math.log(0.05)),
           ("Maybe", math.log(0.3)), ("No.", math.log(0.1))]  # fmt: skip
    assert J.verdict_probability(top) == pytest.approx(0.4 / 0.6)
    assert J.verdict_probability([("Yes", -9999.0), ("No", math.log(0.2))]) == pytest.approx(0.0, abs=1e-12)
    assert J.verdict_probability([("Maybe", -0.1), ("Perhaps", -2.0)]) is None
    assert J.verdict_probability([]) is None


def test_read_out_of_both_response_formats():
    legacy = {"text": " Yes", "logprobs": {"tokens": [" Yes"], "top_logprobs": [{" Yes": -0.2, " No": -1.9}]}}
    assert J._top_completions(legacy) == [(" Yes", -0.2), (" No", -1.9)]
    assert J._top_completions({"text": "", "logprobs": {"top_logprobs": []}}) == []
    assert J._top_completions({"text": " Yes", "logprobs": None}) is None
    chat = {"logprobs": {"content": [{"token": "No", "logprob": -0.1,
                                      "top_logprobs": [{"token": "No", "logprob": -0.1}, {"token": "Yes", "logprob": -2.4}]}]}}  # fmt: skip
    assert J._top_chat(chat) == [("No", -0.1), ("Yes", -2.4)]
    assert J._top_chat({"message": {"content": "Yes"}}) is None


def test_config_checks_and_no_key_in_the_file(tmp_path):
    with pytest.raises(ClinrlError, match="either an endpoint"):
        J.JudgeConfig()
    with pytest.raises(ClinrlError, match="served model"):
        J.JudgeConfig(endpoint="http://127.0.0.1:1/v1")
    with pytest.raises(ClinrlError, match="top_logprobs"):
        J.JudgeConfig(local_model="m", top_logprobs=50)
    (tmp_path / J.JUDGE_FILE).write_text(json.dumps({"endpoint": "http://x/v1", "served_model": "m", "api_key": "s"}))
    with pytest.raises(DataError, match="never stored") as err:
        J.load_judge(tmp_path)
    assert "'s'" not in str(err.value)
    (tmp_path / J.JUDGE_FILE).write_text(json.dumps({"local_model": "m", "temprature": 0}))
    with pytest.raises(DataError, match="temprature"):
        J.load_judge(tmp_path)


# ------------------------------------------------------------------------------------------ served end to end
@pytest.fixture(scope="module")
def judge_lm(tmp_path_factory):
    torch.set_num_threads(1)
    return build_judge_lm(tmp_path_factory.mktemp("judge_lm"))


@pytest.fixture(scope="module")
def endpoint(judge_lm):
    """``clinrl serve`` with the judge LM on a real loopback socket (its /v1/completions answers logprobs)."""
    from clinrl.serve import ServeSettings, create_app

    app = create_app(ServeSettings(model=str(judge_lm), model_name=SERVED, device="cpu", max_queue=64), token=None)
    with serve_app(app) as url:
        yield url + "/v1"


def dev_cases() -> list[Case]:
    """Two dev verification cases (the bundled copy; one per Data_source), gold + 2 error samples each,
    dialogues cut to 400 characters (the tiny LM's speed; the plumbing is the same)."""
    gold = load_notes(PRM_DATA / "verification_dev_gold.json.gz")
    errors = load_notes(PRM_DATA / "verification_dev_error.json.gz")
    cases, _ = group_cases(gold, errors)
    return [replace(c, candidates=[replace(n, dialogue=n.dialogue[:400]) for n in c.candidates[:3]])
            for c in limit_cases(cases, 1)]  # fmt: skip


def write_dev_cases(folder: Path) -> tuple[Path, list[Case]]:
    """:func:`dev_cases` saved as ``folder``/gold.json and errors.json: (folder, cases)."""
    cases = dev_cases()
    save_notes([c.candidates[0] for c in cases], folder / "gold.json")
    save_notes([n for c in cases for n in c.candidates[1:]], folder / "errors.json")
    return folder, cases


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return write_dev_cases(tmp_path_factory.mktemp("dev"))


def _judge_dir(tmp_path, capsys, *args) -> str:
    code, _, err = run_cli(["prm", "judge-init", "--out", tmp_path / "judge", *args], capsys)
    assert code == 0, err
    return str(tmp_path / "judge")


def _selection(dev, judge_dir, out, capsys) -> dict:
    folder, _ = dev
    code, printed, err = run_cli(["prm", "eval-selection", "--gold", folder / "gold.json", "--errors",
                                  folder / "errors.json", "--scorer", "judge", "--model", judge_dir, "--json", out,
                                  "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    assert "Gold selection — judge (mean)" in printed
    return json.loads(out.read_text())


def test_eval_selection_with_a_served_judge_then_from_its_cache(endpoint, dev, tmp_path, capsys):
    judge_dir = _judge_dir(tmp_path, capsys, "--endpoint", endpoint, "--model", SERVED, "--api", "completions")
    stored = json.loads((tmp_path / "judge" / J.JUDGE_FILE).read_text())
    assert stored["endpoint"] == endpoint and stored["api_key_env"] == "CLINRL_API_KEY" and "api_key" not in stored
    first = _selection(dev, judge_dir, tmp_path / "first.json", capsys)
    n_slots = sum(len(slot_layout(n)) for c in dev[1] for n in c.candidates)
    assert first["scorer"] == "judge" and first["aggregate"] == "mean" and first["overall"]["total"] == 2
    assert first["scoring"]["backend"] == "openai" and first["scoring"]["head"] == "judge"
    paths = first["scoring"]["paths"]
    assert paths["slots"] == n_slots and 0 < paths["requests"] <= n_slots and paths["no_verdict"] == 0
    detection = first["overall"]["detection"]
    assert detection["n_slots"] == n_slots and detection["n_error_slots"] > 0 and detection["auroc_all"] is not None
    second = _selection(dev, judge_dir, tmp_path / "second.json", capsys)
    assert second["scoring"]["paths"].get("requests", 0) == 0
    assert second["scoring"]["paths"]["cached"] == paths["requests"]
    assert second["overall"] == first["overall"]


def _scorer(endpoint, cache, **kw) -> J.JudgeScorer:
    return J.JudgeScorer(J.JudgeConfig(endpoint=endpoint, served_model=SERVED, api="completions",
                                       request_retries=0, cache_dir=str(cache), **kw))  # fmt: skip


def test_endpoint_and_local_model_read_the_same_verdict(endpoint, judge_lm, dev, tmp_path):
    notes = dev[1][0].candidates
    served = _scorer(endpoint, tmp_path / "a").score_notes(notes)
    local = J.JudgeScorer(J.JudgeConfig(local_model=str(judge_lm), api="completions", batch_size=4))
    here = local.score_notes(notes)
    a = [s.p_plus for n in served for s in n.slots]
    b = [s.p_plus for n in here for s in n.slots]
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4 and len(a) == len(b)
    assert local.stats["no_verdict"] == 0 and min(a) != max(a) and all(0.01 < p < 0.99 for p in a)


def test_a_local_model_with_a_chat_template_is_asked_in_chat_and_can_explain(judge_lm, tmp_path):
    judge = J.JudgeScorer(J.JudgeConfig(local_model=str(judge_lm), rationale=True, max_rationale_tokens=3,
                                        cache_dir=str(tmp_path)))  # fmt: skip
    assert judge.api == "chat" and judge.backend == "transformers"  # auto: the tokenizer has a chat template
    [scored] = judge.score_notes([_note()])
    assert judge.stats["no_verdict"] == 0 and len(scored.rationales) == len(scored.slots)
    assert all(r.strip() for r in scored.rationales)  # the greedy answer, verdict first
    again = J.JudgeScorer(replace(judge.config, rationale=False, cache_dir=str(tmp_path)))
    again.score_notes([_note()])
    assert again.stats["cached"] == 0  # another generation setting is another question


def test_an_interrupted_run_resumes_where_it_stopped(endpoint, dev, tmp_path, monkeypatch):
    notes = dev[1][1].candidates
    whole = _scorer(endpoint, tmp_path / "whole")
    reference = [n.to_dict() for n in whole.score_notes(notes)]
    post, calls = OpenAIBackend.post, []

    def interrupted(self, route, body):  # Ctrl-C after 10 answers
        calls.append(1)
        if len(calls) > 10:
            raise KeyboardInterrupt
        return post(self, route, body)

    monkeypatch.setattr(OpenAIBackend, "post", interrupted)
    first = _scorer(endpoint, tmp_path / "c", concurrency=1)
    with pytest.raises(KeyboardInterrupt):
        first.score_notes(notes)
    assert first.stats["requests"] == 10
    monkeypatch.setattr(OpenAIBackend, "post", post)
    again = _scorer(endpoint, tmp_path / "c")
    assert [n.to_dict() for n in again.score_notes(notes)] == reference
    assert again.stats["cached"] == 10 and again.stats["requests"] == whole.stats["requests"] - 10


def test_a_torn_cache_line_is_asked_again(endpoint, dev, tmp_path):
    notes = dev[1][1].candidates[:1]
    first = _scorer(endpoint, tmp_path / "c")
    scores = first.score_notes(notes)
    cache = tmp_path / "c" / J.CACHE_FILE
    lines = cache.read_text().splitlines(keepends=True)
    cache.write_text("".join(lines[:-1]) + lines[-1][:20])  # killed while writing the last answer
    again = _scorer(endpoint, tmp_path / "c")
    assert [s.to_dict() for s in again.score_notes(notes)] == [s.to_dict() for s in scores]
    assert again.stats["requests"] == 1 and again.stats["cached"] == first.stats["requests"] - 1


def test_an_unreachable_endpoint_is_one_line_without_note_text(dev, tmp_path, capsys):
    folder, cases = dev
    url = f"http://127.0.0.1:{free_port()}/v1"
    judge_dir = _judge_dir(tmp_path, capsys, "--endpoint", url, "--model", SERVED, "--request-retries", "0")
    line = assert_clean_error(["prm", "eval-selection", "--gold", folder / "gold.json", "--errors",
                               folder / "errors.json", "--scorer", "judge", "--model", judge_dir, "--json",
                               tmp_path / "r.json", "--quiet"], capsys, url, "failed after 1 attempts")  # fmt: skip
    note = cases[0].candidates[0]
    assert note.problems[0].header not in line and note.dialogue[:30] not in line
    assert_clean_error(["prm", "eval-selection", "--gold", folder / "gold.json", "--errors", folder / "errors.json",
                        "--scorer", "judge", "--model", folder, "--json", tmp_path / "r.json"], capsys,
                       "--scorer judge needs --model DIR")  # fmt: skip


# ------------------------------------------------------------------------------------------ every consumer
def test_every_prm_consumer_takes_a_judge_folder(endpoint, dev, tmp_path, capsys):
    """prm score (with rationales), best-of-n, eval-preference, clinrl serve --prm and the notes GRPO reward."""
    from clinrl.notes.dialogues import render_note
    from clinrl.notes.rewards import PRMNoteReward
    from clinrl.serve import ServeSettings, create_app

    judge_dir = _judge_dir(tmp_path, capsys, "--endpoint", endpoint, "--model", SERVED, "--rationale",
                           "--max-rationale-tokens", "4")  # fmt: skip
    case = dev[1][1]
    notes_file = tmp_path / "notes.json"
    save_notes(case.candidates, notes_file)
    code, _, err = run_cli(["prm", "score", "--model", judge_dir, "--notes", notes_file, "--out",
                            tmp_path / "s.json", "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    scored = json.loads((tmp_path / "s.json").read_text())
    assert scored["head"] == "judge" and scored["backend"] == "openai" and scored["config"]["rationale"] is True
    first = scored["notes"][0]
    assert len(first["rationales"]) == len(first["slots"]) and all(isinstance(r, str) for r in first["rationales"])

    dialogue = tmp_path / "dialogue.txt"
    dialogue.write_text(case.candidates[0].dialogue)
    code, _, err = run_cli(["prm", "best-of-n", "--model", judge_dir, "--dialogue", dialogue, "--notes", notes_file,
                            "--json", tmp_path / "b.json"], capsys)  # fmt: skip
    assert code == 0, err
    ranking = json.loads((tmp_path / "b.json").read_text())
    assert ranking["aggregate"] == "mean"

    judge = load_scorer(judge_dir)
    assert isinstance(judge, J.JudgeScorer)
    result = evaluate_preference([Case(case.case_id, "preference", case.candidates, 1)], "judge", model=judge)
    assert result["total"] == 1 and result["aggregate"] == "mean" and judge.stats["requests"] == 0

    with serve_app(create_app(ServeSettings(prm=judge_dir), token=None)) as url:
        got = httpx.post(f"{url}/v1/prm/score", json={"note": note_to_dict(case.candidates[0])}, timeout=60)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["head"] == "judge" and body["aggregate"] == "mean"
    assert [s["p_plus"] for s in body["steps"]] == [s["p_plus"] for s in scored["notes"][0]["slots"]]
    assert all("rationale" in s for s in body["steps"])

    reward = PRMNoteReward(judge_dir)
    text = render_note(case.candidates[0])
    [value] = reward([text], dialogue=[case.candidates[0].dialogue])
    assert reward.aggregate == "mean" and math.isfinite(value) and value < 0
