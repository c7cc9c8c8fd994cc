"""CoT distillation: validity checks, failures, resume after an interruption, SFT consumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinrl.drg.ontology import load_ontology
from clinrl.drg.train.distill import (
    DistillConfig,
    build_prompt,
    check_answer,
    differential_candidates,
    distill_cot,
    sidecar_paths,
)
from clinrl.errors import ClinrlError
from tests.drg.cot_fakes import ScriptedTeacher
from tests.drg.split_data import make_prepared_frame

N = 12  # courses 0..11: 3 valid at once, 3 valid on retry, 3 malformed, 3 wrong


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    frame = make_prepared_frame().head(N).copy()
    frame["text"] = [f"Synthetic course {i}: admitted, treated, discharged home." for i in range(N)]
    path = tmp_path / "train.parquet"
    frame.to_parquet(path, index=False)
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_check_answer_reasons():
    onto = load_ontology()
    gold = onto.by_code(291)
    assert check_answer(f"<think>why</think><answer>{gold.description.lower()}</answer>", gold, onto)[0] is None
    assert check_answer("no tags", gold, onto)[0] == "format"
    assert check_answer(f"<think> </think><answer>{gold.description}</answer>", gold, onto)[0] == "empty_reasoning"
    assert check_answer("<think>x</think><answer>291 HEART FAILURE</answer>", gold, onto)[0] == "not_a_drg"
    assert (
        check_answer("<think>x</think><answer>HEART FAILURE AND SHOCK WITH CC</answer>", gold, onto)[0]
        == "wrong_answer"
    )


def test_prompts_show_gold_and_differential_candidates():
    onto = load_ontology()
    gold = onto.by_code(291)
    cands = differential_candidates(gold, onto, "42")
    assert len(set(cands)) == 3 and gold.description in cands
    assert cands == differential_candidates(gold, onto, "42")  # deterministic
    assert any(onto.find(c).principal == gold.principal for c in cands if c != gold.description)  # a sibling
    explain = build_prompt("course", gold.description)[1]["content"]
    assert gold.description in explain and "as if you did not know" in explain
    diff = build_prompt("course", gold.description, "differential", cands)[1]["content"]
    assert all(f"{chr(65 + i)}. {c}" in diff for i, c in enumerate(cands))
    with pytest.raises(ClinrlError, match="unknown variant"):
        build_prompt("c", gold.description, "nope")


def test_distill_writes_valid_rows_and_counts_failures(data: Path, tmp_path: Path):
    out = tmp_path / "cot.jsonl"
    teacher = ScriptedTeacher()
    report = distill_cot(teacher, data, out, DistillConfig(chunk_size=5, max_attempts=3, model="t"), progress=False)
    rows = _lines(out)
    assert len(rows) == 6 and all(r["valid"] and r["explanation"] and r["answer"] == r["gold"] for r in rows)
    assert {r["attempts"] for r in rows} == {1, 2}
    failures, report_path = sidecar_paths(out)
    assert report_path.name == "cot_report.json" and json.loads(report_path.read_text()) == report
    bad = _lines(failures)
    assert len(bad) == 6 and not any(r["valid"] for r in bad) and all("explanation" not in r for r in bad)
    assert report["failed_now_by_reason"] == {"format": 3, "empty_reasoning": 0, "not_a_drg": 0, "wrong_answer": 3}
    assert report["written_now"] == 6 and report["valid_total"] == 6 and report["failed_total"] == 6
    # valid at once 3x1, valid on retry 3x2, malformed and wrong 3x3 each
    assert report["requests"] == teacher.prompts == 3 + 6 + 9 + 9
    # a second run has nothing to do
    again = ScriptedTeacher()
    report2 = distill_cot(again, data, out, DistillConfig(chunk_size=5, model="t"), progress=False)
    assert again.prompts == 0 and report2["skipped_already_done"] == N and report2["missing_total"] == 0


def test_interrupted_run_resumes_only_missing_rows(data: Path, tmp_path: Path):
    out = tmp_path / "cot.jsonl"
    config = DistillConfig(chunk_size=4, max_attempts=1)
    with pytest.raises(KeyboardInterrupt):
        distill_cot(ScriptedTeacher(fail_after=1), data, out, config, progress=False)
    first = _lines(out) + _lines(sidecar_paths(out)[0])
    assert len(first) == 4  # the first chunk was settled before the interruption
    assert json.loads(sidecar_paths(out)[1].read_text())["interrupted"] is True
    with out.open("a", encoding="utf-8") as fh:  # a torn line, as from a kill mid-write
        fh.write('{"hadm_id": 1, "varia')
    teacher = ScriptedTeacher()
    report = distill_cot(teacher, data, out, config, progress=False)
    assert teacher.prompts == N - 4  # only the missing rows were sent
    assert report["torn_lines_truncated"] == 1 and report["skipped_already_done"] == 4
    ids = [r["hadm_id"] for r in _lines(out) + _lines(sidecar_paths(out)[0])]
    assert len(ids) == len(set(ids)) == N


def test_limit_retry_failures_and_variant_guard(data: Path, tmp_path: Path):
    out = tmp_path / "cot.jsonl"
    teacher = ScriptedTeacher()
    report = distill_cot(teacher, data, out, DistillConfig(limit=4, max_attempts=1), progress=False)
    assert report["attempted_now"] == 4 and report["missing_total"] == N - 4
    retry = ScriptedTeacher()
    retry.seen.update({1: 1})  # course 1 now answers validly
    with pytest.raises(ClinrlError, match="limit must be at least 1"):  # 0 is not "none": refused
        distill_cot(retry, data, out, DistillConfig(limit=0, retry_failures=True), progress=False)
    assert retry.prompts == 0
    report = distill_cot(retry, data, out, DistillConfig(limit=3, retry_failures=True, max_attempts=1), progress=False)
    assert report["attempted_now"] == 3 and report["skipped_already_done"] == 1  # course 0 valid, 1-3 redone
    with pytest.raises(ClinrlError, match="variant"):
        distill_cot(ScriptedTeacher(), data, out, DistillConfig(variant="differential"), progress=False)


def test_request_errors_are_counted_then_stop(data: Path, tmp_path: Path):
    out = tmp_path / "cot.jsonl"
    teacher = ScriptedTeacher(fail_after=1, exc=RuntimeError)
    with pytest.raises(ClinrlError, match="chunks in a row failed"):
        distill_cot(
            teacher, data, out, DistillConfig(chunk_size=2, max_attempts=1, max_failed_chunks=3), progress=False
        )
    report = json.loads(sidecar_paths(out)[1].read_text())
    assert report["request_errors"] == 6 and report["missing_total"] == N - 2


def test_differential_rows_and_sft_consumption(data: Path, tmp_path: Path):
    """The JSONL is the SFT recipe's `traces:` file as is: rows join on hadm_id and build conversations."""
    from clinrl.drg.prep.split import add_solution
    from clinrl.drg.train.sft import DRGSFTConfig, build_sft_dataset, read_traces

    out = tmp_path / "cot.jsonl"
    distill_cot(ScriptedTeacher(), data, out, DistillConfig(variant="differential"), progress=False)
    rows = _lines(out)
    assert all(len(r["candidates"]) == 3 and r["gold"] in r["candidates"] for r in rows)
    traces, counts = read_traces(out)
    assert counts == {"rows": 6, "dropped_tags": 0, "duplicates": 0}
    import pandas as pd

    split = tmp_path / "sft.parquet"
    add_solution(pd.read_parquet(data), load_ontology()).to_parquet(split, index=False)
    cfg = DRGSFTConfig(
        model="unused",
        data=str(split),
        output_dir=str(tmp_path / "run"),
        traces=str(out),
        knowledge=False,
        training={"max_length": 512},
    )
    dataset, counts = build_sft_dataset(cfg, tokenizer=None)
    assert counts["cases_with_trace"] == 6 and counts["cases_answer_only"] == N - 6
    frame = pd.read_parquet(split)
    gold_of = {r["hadm_id"]: r["gold"] for r in rows}
    for hadm_id, row in zip(frame["hadm_id"], dataset):
        assert row["prompt"][0]["role"] == "system" and row["prompt"][-1]["role"] == "user"
        content = row["completion"][0]["content"]
        if hadm_id in gold_of:
            assert content.startswith("<think>\nThe course shows") and content.endswith(
                f"<answer>{gold_of[hadm_id]}</answer>"
            )
        else:
            assert "The course shows" not in content  # answer-only target


def _expected_requests(courses, max_attempts: int) -> int:
    per_kind = {0: 1, 1: min(2, max_attempts), 2: max_attempts, 3: max_attempts}
    return sum(per_kind[c % 4] for c in courses)


def test_cli_against_loopback_endpoint_resumes(data: Path, tmp_path: Path, monkeypatch, capsys):
    """`clinrl drg distill-cot` with the real HTTP client against a scripted OpenAI-compatible server."""
    from collections import Counter

    from clinrl.cli import main
    from tests.drg.cot_fakes import prompt_text, scripted_answer
    from tests.helpers.fake_openai import FakeOpenAI

    seen: Counter = Counter()
    keys = []

    def answer(body):
        keys.append(body.get("seed"))
        return scripted_answer(prompt_text(body["messages"]), seen)

    monkeypatch.setenv("CLINRL_TEST_KEY", "secret")
    out = tmp_path / "cot.jsonl"
    with FakeOpenAI(answer) as server:
        args = ["drg", "distill-cot", "--endpoint", server.url, "--model", "teacher", "--data", str(data),
                "--out", str(out), "--concurrency", "3", "--max-attempts", "2", "--api-key-env", "CLINRL_TEST_KEY",
                "--quiet"]  # fmt: skip
        main(args + ["--limit", "5"])
        assert server.requests == _expected_requests(range(5), 2)
        first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert first["attempted_now"] == 5 and first["missing_total"] == N - 5
        with out.open("a", encoding="utf-8") as fh:
            fh.write('{"hadm_id": 7')  # torn line from a kill
        before = server.requests
        main(args)
        assert server.requests - before == _expected_requests(range(5, N), 2)  # only the missing rows
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["torn_lines_truncated"] == 1 and summary["skipped_already_done"] == 5
    assert summary["valid_total"] == 6 and summary["failed_total"] == 6 and summary["missing_total"] == 0
    assert summary["failed_now_by_reason"]["format"] + first["failed_now_by_reason"]["format"] == 3
    assert set(keys) == {0, 1}  # a retry asks with a new seed (so a response cache cannot repeat itself)
    assert len(_lines(out)) == 6


def test_cli_requires_endpoint(data: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from clinrl.cli import app

    result = CliRunner().invoke(app, ["drg", "distill-cot", "--model", "m", "--data", str(data),
                                      "--out", str(tmp_path / "c.jsonl")])  # fmt: skip
    assert result.exit_code == 2 and "endpoint" in result.output
    assert not (tmp_path / "c.jsonl").exists()


def test_distill_against_clinrl_serve_with_tiny_model(data: Path, tmp_path: Path, monkeypatch, capsys):
    """Plumbing end to end: `clinrl serve`'s app (uvicorn on loopback, tiny random model, bearer token) and
    `distill-cot` with the real client. The tiny model's answers are invalid, so every case is a counted
    failure; a second run after a partial first one only sends the missing cases."""
    import torch

    from clinrl.cli import main
    from clinrl.llm.backends import TransformersBackend
    from clinrl.serve import ServeSettings, create_app
    from tests.helpers.models import build_smallest_lm
    from tests.helpers.servers import serve_app

    torch.set_num_threads(1)
    lm = build_smallest_lm(tmp_path / "lm")

    class Counting:
        name = "counting"

        def __init__(self, inner):
            self.inner, self.model, self.tokenizer, self.prompts = inner, inner.model, inner.tokenizer, 0

        def generate(self, prompts, params):
            self.prompts += len(prompts)
            return self.inner.generate(prompts, params)

    backend = Counting(TransformersBackend.from_path(str(lm), device="cpu"))
    settings = ServeSettings(model=str(lm), model_name="tiny", device="cpu", max_new_tokens=16)
    monkeypatch.setenv("CLINRL_DISTILL_TEST_TOKEN", "tok-123")
    out = tmp_path / "cot.jsonl"
    with serve_app(create_app(settings, backend=backend, token="tok-123")) as url:
        args = ["drg", "distill-cot", "--endpoint", url, "--model", "tiny", "--data", str(data), "--out", str(out),
                "--max-new-tokens", "8", "--max-attempts", "1", "--concurrency", "2", "--quiet",
                "--api-key-env", "CLINRL_DISTILL_TEST_TOKEN"]  # fmt: skip
        main(args + ["--limit", "4"])
        assert backend.prompts == 4
        capsys.readouterr()
        main(args)
        assert backend.prompts == N  # the second run sent only the 8 missing cases
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped_already_done"] == 4 and summary["attempted_now"] == N - 4
    assert summary["failed_total"] == N and summary["valid_total"] == 0 and summary["missing_total"] == 0
    assert summary["request_errors"] == 0
    assert out.exists() and len(_lines(sidecar_paths(out)[0])) == N
