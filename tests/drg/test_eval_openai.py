"""`clinrl drg eval --backend openai`: any served model evaluated through the OpenAI-compatible client,
with the same files and metrics as the local backends, resumable, constrained only on a vLLM server, and
courses cut only with a local tokenizer and a budget. The real vLLM server: tests/engines/test_vllm_server.py."""

from __future__ import annotations

import json

import pytest

from clinrl.drg.eval.constrained import answer_regex
from clinrl.drg.eval.evaluate import GENERATIONS
from clinrl.drg.prompts import CUT_MARKER
from tests.helpers.fake_openai import FakeOpenAI
from tests.helpers.tokenizers import make_tiny_tokenizer
from tests.reliability.cli import assert_clean_error, run_cli

GOLD = "HEART FAILURE AND SHOCK WITH MCC"
RIGHT = f"<think>\nfluid overload\n</think>\n<answer>{GOLD}</answer>"
COURSE = "Brief hospital course: the patient was admitted with heart failure and treated with diuretics. " * 40


@pytest.fixture()
def cases(tmp_path):
    path = tmp_path / "cases.jsonl"
    rows = [{"hadm_id": i, "text": COURSE, "solution": GOLD} for i in range(1, 6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _eval(server, cases, out, *extra):
    return [
        "drg",
        "eval",
        "--backend",
        "openai",
        "--endpoint",
        server.url,
        "--model",
        "served-model",
        "--data",
        cases,
        "--out",
        out,
        "--samples",
        "2",
        "--max-new-tokens",
        "16",
        "--batch-size",
        "2",
        "--quiet",
        *extra,
    ]


def test_eval_openai_writes_the_usual_files_and_resumes_without_asking_again(cases, tmp_path, capsys):
    out = tmp_path / "eval"
    with FakeOpenAI(lambda body: RIGHT) as server:
        code, stdout, err = run_cli(_eval(server, cases, out), capsys)
        assert code == 0, err
        assert "courses are sent whole" in err
        line = json.loads(stdout.strip().splitlines()[-1])
        assert line["n_cases"] == 5 and line["drg"]["pass@1"] == 1.0
        assert server.requests == 5 and {b["model"] for b in server.bodies} == {"served-model"}
        assert all(b["messages"][-1]["content"].count("heart failure") == 40 for b in server.bodies)  # whole
        assert all("structured_outputs" not in b for b in server.bodies)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["eval"]["backend"] == "openai" and metrics["eval"]["meta"]["endpoint"] == server.url
        assert metrics["eval"]["meta"]["model"] == "served-model" and metrics["eval"]["max_prompt_tokens"] is None
        assert len((out / GENERATIONS).read_text().splitlines()) == 5
        assert (out / "summary.md").is_file() and (out / "cc_mcc_confusion.png").is_file()
        code, stdout, err = run_cli(_eval(server, cases, out), capsys)
        assert code == 0, err
        assert server.requests == 5  # every case was already in generations.jsonl
        assert json.loads((out / "metrics.json").read_text())["eval"]["reused"] == 5


def test_eval_openai_constrained_sends_vllm_structured_outputs_regex(cases, tmp_path, capsys):
    with FakeOpenAI(lambda body: RIGHT, owned_by="vllm") as server:
        code, stdout, err = run_cli(_eval(server, cases, tmp_path / "c", "--constrained", "--limit", "2"), capsys)
        assert code == 0, err
        assert server.requests == 2
        assert all(b["structured_outputs"] == {"regex": answer_regex()} for b in server.bodies)
        assert json.loads((tmp_path / "c" / "metrics.json").read_text())["eval"]["constrained"] is True


def test_eval_openai_constrained_refuses_an_endpoint_that_is_not_vllm(cases, tmp_path, capsys):
    with FakeOpenAI(lambda body: RIGHT, owned_by="openai") as server:
        code, _, err = run_cli(_eval(server, cases, tmp_path / "c", "--constrained"), capsys)
        lines = [x for x in err.splitlines() if x.strip()]
        assert code == 2 and "Traceback" not in err, err
        assert lines[-1].startswith("error: ") and "vLLM" in lines[-1] and "/models" in lines[-1]
        assert lines[:-1] == ["courses are sent whole (no --tokenizer/--max-prompt-tokens): the server must fit them"]
        assert server.requests == 0  # nothing was sent unconstrained


def test_eval_openai_cuts_courses_with_a_local_tokenizer(cases, tmp_path, capsys):
    tok_dir = tmp_path / "tok"
    make_tiny_tokenizer().save_pretrained(tok_dir)
    with FakeOpenAI(lambda body: RIGHT) as server:
        argv = _eval(server, cases, tmp_path / "cut", "--tokenizer", tok_dir, "--max-prompt-tokens", "900")
        code, _, err = run_cli(argv, capsys)
        assert code == 0, err
        tok = make_tiny_tokenizer()
        for body in server.bodies:
            text = tok.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
            assert len(tok(text, add_special_tokens=False)["input_ids"]) <= 900
            assert CUT_MARKER in body["messages"][-1]["content"]
            assert 0 < body["messages"][-1]["content"].count("heart failure") < 40
        meta = json.loads((tmp_path / "cut" / "metrics.json").read_text())["eval"]
        assert meta["max_prompt_tokens"] == 900 and meta["meta"]["tokenizer"] == str(tok_dir)


def test_eval_openai_option_errors_are_one_clean_line(cases, tmp_path, capsys):
    base = ["drg", "eval", "--data", cases, "--out", tmp_path / "x", "--model", "m"]
    assert_clean_error([*base, "--backend", "openai"], capsys, "--endpoint")
    url = "http://127.0.0.1:9/v1"
    assert_clean_error(
        [*base, "--backend", "openai", "--endpoint", url, "--max-prompt-tokens", "100"], capsys, "--tokenizer"
    )
    assert_clean_error(
        [*base, "--backend", "openai", "--endpoint", url, "--tokenizer", tmp_path], capsys, "--max-prompt-tokens"
    )
    assert_clean_error([*base, "--endpoint", url], capsys, "--backend openai")
