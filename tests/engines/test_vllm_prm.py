"""PRM scoring through vLLM (engine venv): the reference scorer's P(+) at every label slot of the bundled dev
verification cases, within 1e-3, and the same note ranking.

The PRM is a random-init tiny Qwen2 with the PRM tokens added and its '+'/'-' LM-head rows scaled up
(:func:`tests.helpers.tiny_prm.build_tiny_prm`), so that P(+) spreads over (0, 1).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.helpers.tiny_prm import build_tiny_prm

pytestmark = pytest.mark.engine

DATA = Path(__file__).resolve().parents[2] / "src" / "clinrl" / "data" / "prm"
# the first 2 cases of each Data_source (A_Validate, Dialogue_G): 4 cases, 35 notes; CLINRL_PRM_DEV_CASES=all
# runs the comparison over all 100 dev cases (868 notes, ~20 min on 2 CPU cores).
_CASES = os.environ.get("CLINRL_PRM_DEV_CASES", "2")
CASES_PER_SOURCE = None if _CASES == "all" else int(_CASES)
TOLERANCE = 1e-3


def dev_cases(per_source: int | None = CASES_PER_SOURCE):
    """The bundled dev verification cases (gold + error samples of each dialogue), the first ``per_source`` of
    each Data_source (None: all 100)."""
    from clinrl.prm.evaluate import group_cases, limit_cases
    from clinrl.prm.schema import load_notes

    cases, _ = group_cases(load_notes(DATA / "verification_dev_gold.json.gz"),
                           load_notes(DATA / "verification_dev_error.json.gz"))  # fmt: skip
    return cases if per_source is None else limit_cases(cases, per_source)


def first_notes(k: int = 4) -> list:
    """One pseudo-case: the first ``k`` candidates of the first dev case (gold + error samples)."""
    from types import SimpleNamespace

    return [SimpleNamespace(candidates=dev_cases(None)[0].candidates[:k])]


def score_all(scorer, cases) -> tuple[list[list], float]:
    """Every case's candidates scored (one ``score_notes`` call per case, as eval-selection does), seconds."""
    start = time.perf_counter()
    scored = [scorer.score_notes(case.candidates) for case in cases]
    return scored, time.perf_counter() - start


def compare(reference: list[list], got: list[list]) -> dict:
    """Max |ΔP(+)| over every slot, max |Δ sum_log| and whether each case's notes rank identically."""
    diffs, score_diffs, same_rank = [], [], True
    for ref_case, got_case in zip(reference, got):
        for r, g in zip(ref_case, got_case):
            assert [s.kind for s in r.slots] == [s.kind for s in g.slots]
            diffs += [abs(a.p_plus - b.p_plus) for a, b in zip(r.slots, g.slots)]
            score_diffs.append(abs(r.score("sum_log") - g.score("sum_log")))
        order = lambda case: sorted(range(len(case)), key=lambda i: -case[i].score("sum_log"))  # noqa: E731
        same_rank &= order(ref_case) == order(got_case)
    return {"slots": len(diffs), "max_dp": max(diffs), "max_dsum_log": max(score_diffs), "same_rank": same_rank}


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory) -> Path:
    return build_tiny_prm(tmp_path_factory.mktemp("prm") / "model")


@pytest.fixture(scope="module")
def vllm_scorer(prm_dir):
    """One engine for the module: float32 (vLLM on CPU would run bf16), eager, a small KV-cache reservation."""
    from clinrl.prm.score import ScoreConfig
    from clinrl.prm.vllm_score import VLLMPRMScorer

    scorer = VLLMPRMScorer(prm_dir, ScoreConfig(), dtype="float32", enforce_eager=True, gpu_memory_utilization=0.05,
                           max_model_len=4096)  # fmt: skip
    yield scorer
    scorer.close()


def test_vllm_p_plus_matches_the_reference_scorer_on_dev_cases(prm_dir, vllm_scorer):
    from clinrl.prm.score import ScoreConfig, load_scorer

    cases = dev_cases()
    reference, ref_s = score_all(load_scorer(prm_dir, ScoreConfig(fast=False)), cases)
    got, vllm_s = score_all(vllm_scorer, cases)
    figures = compare(reference, got)
    print({**figures, "notes": sum(len(c.candidates) for c in cases), "reference_s": round(ref_s, 1),
           "vllm_s": round(vllm_s, 1), **dict(vllm_scorer.stats)})  # fmt: skip
    spread = [s.p_plus for case in reference for n in case for s in n.slots]
    assert min(spread) < 0.1 and max(spread) > 0.9  # the model's P(+) is not degenerate
    assert figures["max_dp"] <= TOLERANCE
    assert figures["same_rank"]
    assert vllm_scorer.stats["cached_tokens"] > vllm_scorer.stats["prompt_tokens"] / 2  # prefix caching works


@pytest.mark.parametrize(("probability", "context"), [("binary", "placeholder"), ("full", "plus"), ("full", "greedy")])
def test_vllm_matches_the_reference_under_the_other_readouts_and_contexts(prm_dir, vllm_scorer, probability, context):
    """Four notes of a dev case per option, on the module's engine: binary {+,-} readout, '+' in the slots,
    greedy labels fed."""
    from clinrl.prm.score import ScoreConfig, load_scorer

    cases = first_notes()
    config = ScoreConfig(probability, context, fast=False)
    reference, _ = score_all(load_scorer(prm_dir, config), cases)
    vllm_scorer.config = config
    try:
        got, _ = score_all(vllm_scorer, cases)
    finally:
        vllm_scorer.config = ScoreConfig()
    figures = compare(reference, got)
    assert figures["max_dp"] <= TOLERANCE and figures["same_rank"], figures
    if context == "greedy":
        assert [n.fed_labels for n in got[0]] == [n.fed_labels for n in reference[0]]


def test_transformers_fast_path_matches_the_reference_in_the_engine_venv(prm_dir):
    """The shared-prefix fast path (the benchmark's transformers side) runs on this venv's transformers: it
    once passed its KV cache under 5.2x's keyword only and failed here."""
    from clinrl.prm.score import ScoreConfig, load_scorer

    cases = first_notes()
    reference, _ = score_all(load_scorer(prm_dir, ScoreConfig(fast=False)), cases)
    fast, _ = score_all(load_scorer(prm_dir, ScoreConfig(fast=True, batch_size=4)), cases)
    assert compare(reference, fast)["max_dp"] <= 1e-4


def test_cli_best_of_n_backend_vllm_ranks_like_transformers(prm_dir, tmp_path, capsys):
    """`clinrl prm best-of-n --backend vllm` with the engine options on the command line (its own engine)."""
    import json

    from clinrl.prm.schema import save_notes
    from tests.reliability.cli import run_cli

    case = dev_cases(None)[1]
    notes, dialogue = tmp_path / "candidates.json", tmp_path / "dialogue.txt"
    save_notes(case.candidates[:4], notes)
    dialogue.write_text(case.candidates[0].dialogue, encoding="utf-8")
    common = ["prm", "best-of-n", "--model", prm_dir, "--dialogue", dialogue, "--notes", notes]
    engine = ["--backend", "vllm", "--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.05",
              "--max-model-len", "4096"]  # fmt: skip
    rankings = {}
    for name, extra in (("transformers", []), ("vllm", engine)):
        code, _, err = run_cli(common + extra + ["--json", tmp_path / f"{name}.json"], capsys)
        assert code == 0, err[-2000:]
        rankings[name] = json.loads((tmp_path / f"{name}.json").read_text())["ranking"]
    ref, got = rankings["transformers"], rankings["vllm"]
    assert [e["index"] for e in got] == [e["index"] for e in ref]
    diffs = [abs(a["p_plus"] - b["p_plus"]) for r, g in zip(ref, got) for a, b in zip(r["slots"], g["slots"])]
    assert max(diffs) <= TOLERANCE
