"""A real OpenAI-compatible server in the loop: vLLM's own server (CPU build) on 127.0.0.1, serving the
random-init tiny DRG model, driven through the clinrl command line.

The model is random, so its answers are garbage: what is checked is the plumbing. Every case ends up
somewhere (valid or failed, counted by reason), a rerun resumes without asking again, the server itself
counted the requests the clients say they sent (its /metrics), and ``--constrained`` answers follow vLLM's
structured-output regex. One server for the module (~30-60 s to start), answers capped at 48 tokens
server-side. The fake-server unit tests of the same commands: tests/drg/test_eval_openai.py,
tests/drg/test_distill.py, tests/prm/test_llm_errors.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import clinrl
from tests.reliability.cli import run_cli

pytestmark = pytest.mark.engine

MODEL_NAME = "tiny-drg"
PRM_DATA = Path(clinrl.__file__).parent / "data" / "prm"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    pytest.importorskip("vllm")
    from clinrl.demo.workspace import build_tiny_workspace

    return build_tiny_workspace(tmp_path_factory.mktemp("vllm-server-ws"), n_notes=200, classes=6)


@pytest.fixture(scope="module")
def server(ws, tmp_path_factory):
    from tests.helpers.vllm_server import vllm_openai_server

    log = tmp_path_factory.mktemp("vllm-server-log") / "vllm.log"
    with vllm_openai_server(ws.model, name=MODEL_NAME, log=log, max_new_tokens=48) as running:
        yield running
    assert running.process.poll() is not None  # stopped by its pid, not left behind


def _ok(argv, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 0 and "Traceback" not in err, err[-2000:]
    return out, err


def test_server_lists_the_model_as_vllm(server):
    import httpx

    models = httpx.get(server.url + "/models", timeout=10).json()["data"]
    assert [(m["id"], m["owned_by"]) for m in models] == [(MODEL_NAME, "vllm")]


def test_distill_cot_counts_every_case_and_resumes(server, ws, tmp_path, capsys):
    out = tmp_path / "cot.jsonl"
    argv = [
        "drg",
        "distill-cot",
        "--endpoint",
        server.url,
        "--model",
        MODEL_NAME,
        "--data",
        ws.split / "sft.parquet",
        "--out",
        out,
        "--limit",
        "6",
        "--max-new-tokens",
        "32",
        "--max-attempts",
        "2",
        "--concurrency",
        "4",
        "--quiet",
    ]
    before = server.requests_finished()
    stdout, _ = _ok(argv, capsys)
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["attempted_now"] == 6 and report["written_now"] + report["failed_now"] == 6, report
    assert sum(report["failed_now_by_reason"].values()) == report["failed_now"]
    assert report["request_errors"] == 0
    assert server.requests_finished() - before == report["requests"] >= 6  # the server saw every request
    failures = tmp_path / "cot_failures.jsonl"
    lines = failures.read_text().splitlines() if failures.is_file() else []
    written = out.read_text().splitlines() if out.is_file() else []
    assert len(lines) == report["failed_now"] and len(written) == report["written_now"]  # nothing lost
    stdout, _ = _ok(argv, capsys)  # --limit counts new cases: the rerun takes the next 6, none twice
    again = json.loads(stdout.strip().splitlines()[-1])
    assert again["skipped_already_done"] == 6 and again["attempted_now"] == 6
    ids = [json.loads(x)["hadm_id"] for path in (out, failures) if path.is_file()
           for x in path.read_text().splitlines()]  # fmt: skip
    assert len(ids) == len(set(ids)) == 12


def test_prm_synth_errors_openai_counts_rejects_by_reason(server, tmp_path, capsys):
    from clinrl.prm.schema import load_notes, save_notes

    gold = tmp_path / "gold.json"
    save_notes(load_notes(PRM_DATA / "verification_dev_gold.json.gz")[:2], gold)
    out = tmp_path / "llm_errors.json"
    before = server.requests_finished()
    _ok(
        [
            "prm",
            "synth-errors",
            "--gold",
            gold,
            "--out",
            out,
            "--per-note",
            "1",
            "--backend",
            "openai",
            "--endpoint",
            server.url,
            "--model",
            MODEL_NAME,
            "--max-attempts",
            "1",
            "--concurrency",
            "4",
        ],
        capsys,
    )
    report = json.loads((tmp_path / "llm_errors.json.report.json").read_text())
    assert report["model"] == MODEL_NAME and report["requests"] >= 1
    assert report["samples"] + report["rejected"] == 2  # each asked sample kept or rejected, never lost
    assert sum(report["rejects_by_reason"].values()) == report["rejected"]
    assert len(load_notes(out)) == report["samples"]
    # every prompt reached the model, or the server refused it (e.g. a note longer than the tiny model's
    # 4096-token context: HTTP 400) and it was counted as a request_error
    refused = report["invalid_answers_by_reason"].get("request_error", 0)
    assert server.requests_finished() - before + refused == report["requests"], report["invalid_answers_by_reason"]


def test_prm_structure_openai_falls_back_by_reason(server, tmp_path, capsys):
    note = tmp_path / "note.txt"
    note.write_text("Hypertension\n- Blood pressure is high today.\n- Start lisinopril 10 mg daily.\n", "utf-8")
    out = tmp_path / "structured.json"
    before = server.requests_finished()
    _, err = _ok(
        [
            "prm",
            "structure",
            note,
            "--out",
            out,
            "--backend",
            "openai",
            "--endpoint",
            server.url,
            "--model",
            MODEL_NAME,
        ],
        capsys,
    )
    summary = json.loads(err.strip().splitlines()[-1].rsplit(" -> ", 1)[0])
    assert summary["notes"] == 1 and summary["by_llm"] + summary["by_rule_fallback"] == 1
    assert sum(summary["fallbacks_by_reason"].values()) == summary["by_rule_fallback"]
    assert server.requests_finished() - before == summary["requests"] >= 1
    from clinrl.prm.schema import load_notes

    assert len(load_notes(out)) == 1


def _eval_argv(server, ws, out, *extra):
    return [
        "drg",
        "eval",
        "--backend",
        "openai",
        "--endpoint",
        server.url,
        "--model",
        MODEL_NAME,
        "--data",
        ws.prepared / "test.parquet",
        "--out",
        out,
        "--samples",
        "2",
        "--temperature",
        "0.6",
        "--max-new-tokens",
        "24",
        "--batch-size",
        "4",
        "--quiet",
        *extra,
    ]


def test_drg_eval_openai_writes_metrics_and_resumes(server, ws, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = _eval_argv(server, ws, out, "--limit", "6", "--tokenizer", ws.model, "--max-prompt-tokens", "512")
    before = server.requests_finished()
    stdout, _ = _ok(argv, capsys)
    line = json.loads(stdout.strip().splitlines()[-1])
    assert line["n_cases"] == 6 and line["n_samples"] == 2
    assert server.requests_finished() - before == 12  # one request per case; vLLM counts each of its n=2 choices
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval"]["backend"] == "openai" and metrics["eval"]["max_prompt_tokens"] == 512
    records = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["completions"]) == 2 for r in records)
    assert (out / "summary.md").is_file() and (out / "cc_mcc_confusion.png").is_file()
    before = server.requests_finished()
    _ok(argv, capsys)
    assert server.requests_finished() == before
    assert json.loads((out / "metrics.json").read_text())["eval"]["reused"] == 6


def test_drg_eval_openai_constrained_follows_the_answer_regex(server, ws, tmp_path, capsys):
    import regex

    from clinrl.drg.eval.constrained import answer_regex

    pattern = regex.compile(answer_regex())
    runs = {}
    for name, extra in (("free", ()), ("constrained", ("--constrained",))):
        out = tmp_path / name
        _ok(_eval_argv(server, ws, out, "--limit", "4", *extra), capsys)
        texts = [t for x in (out / "generations.jsonl").read_text().splitlines() for t in json.loads(x)["completions"]]
        runs[name] = (texts, json.loads((out / "metrics.json").read_text()))
    texts, metrics = runs["constrained"]
    assert len(texts) == 8 and metrics["invalid_answer_rate"] == 0.0
    # every constrained answer is a prefix of a string of the regex (cut by max_new_tokens at the latest)
    assert all(pattern.fullmatch(t, partial=True) for t in texts), [t[:80] for t in texts]
    free, _ = runs["free"]
    assert not all(pattern.fullmatch(t, partial=True) for t in free)  # the random model alone does not
