"""The judge (``--scorer judge``, :mod:`clinrl.prm.judge`) against vLLM's own OpenAI-compatible server (CPU
build) on 127.0.0.1, with both apis: ``completions`` (legacy ``logprobs``) and ``chat`` (``logprobs`` +
``top_logprobs``). The tiny LM is random-init but edited so its next token is a yes or a no
(:func:`tests.helpers.models.build_judge_lm`): what is checked is the plumbing: ``prm eval-selection --scorer
judge`` end to end, every question reaching the server once (its /metrics), a rerun from the cache, and the
served P(+) equal to the same LM read locally (same prompt, same chat template)."""

from __future__ import annotations

import json

import pytest

from clinrl.prm import judge as J
from clinrl.prm.score import slot_layout
from tests.helpers.models import build_judge_lm
from tests.prm.test_judge import write_dev_cases
from tests.reliability.cli import run_cli

pytestmark = pytest.mark.engine

SERVED = "tiny-judge"


@pytest.fixture(scope="module")
def judge_lm(tmp_path_factory):
    pytest.importorskip("vllm")
    return build_judge_lm(tmp_path_factory.mktemp("judge-lm"))


@pytest.fixture(scope="module")
def server(judge_lm, tmp_path_factory):
    from tests.helpers.vllm_server import vllm_openai_server

    log = tmp_path_factory.mktemp("vllm-judge-log") / "vllm.log"
    with vllm_openai_server(judge_lm, name=SERVED, log=log, max_new_tokens=8) as running:
        yield running
    assert running.process.poll() is not None


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    return write_dev_cases(tmp_path_factory.mktemp("judge-dev"))


def _ok(argv, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 0 and "Traceback" not in err, err[-2000:]
    return out


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_eval_selection_with_vllm_as_the_judge(api, server, judge_lm, dev, tmp_path, capsys):
    folder, cases = dev
    judge_dir = tmp_path / "judge"
    _ok(["prm", "judge-init", "--out", judge_dir, "--endpoint", server.url, "--model", SERVED, "--api", api,
         "--concurrency", "4"], capsys)  # fmt: skip
    argv = ["prm", "eval-selection", "--gold", folder / "gold.json", "--errors", folder / "errors.json", "--scorer",
            "judge", "--model", judge_dir, "--quiet"]  # fmt: skip
    before = server.requests_finished()
    _ok([*argv, "--json", tmp_path / "first.json"], capsys)
    first = json.loads((tmp_path / "first.json").read_text())
    paths = first["scoring"]["paths"]
    n_slots = sum(len(slot_layout(n)) for c in cases for n in c.candidates)
    assert paths["slots"] == n_slots and paths["no_verdict"] == 0, paths
    assert server.requests_finished() - before == paths["requests"] > 0  # every question reached vLLM once
    assert first["overall"]["total"] == 2 and first["overall"]["detection"]["n_slots"] == n_slots
    _ok([*argv, "--json", tmp_path / "second.json"], capsys)
    second = json.loads((tmp_path / "second.json").read_text())
    assert second["scoring"]["paths"].get("requests", 0) == 0 and second["overall"] == first["overall"]

    notes = cases[0].candidates
    served = [s.p_plus for n in J.load_judge(judge_dir).score_notes(notes) for s in n.slots]
    local = J.JudgeScorer(J.JudgeConfig(local_model=str(judge_lm), api=api, device="cpu"))
    here = [s.p_plus for n in local.score_notes(notes) for s in n.slots]
    assert max(abs(a - b) for a, b in zip(served, here)) < 1e-3 and len(served) == len(here)
    assert min(served) != max(served)
